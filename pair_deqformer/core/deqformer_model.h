// deqformer: a deployed deep-equilibrium model (docs/contract.md), loaded with LibTorch.
//
// LAMMPS-free C++17. `Model` loads the TorchScript file, validates its metadata against the contract
// (Model::CONTRACT_VERSION) with error messages that name the file and the fix, and wraps the contract
// methods with typed C++ calls. It also owns the native (hand-written C++) implementation of the same
// methods, built from the file's weights on first use (deqformer_native.h). No solver mathematics lives
// here: the solver update rule is the model's own `solver_init` / `solver_update`.
#pragma once

#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <torch/script.h>

namespace deqformer {

class NativeModel;

// Every error of the C++ side; the message is meant for the end user.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string &msg) : std::runtime_error(msg) {}
};

// Solver codes used by the contract (metadata `solver_code`, argument `kind`).
enum SolverKind : int { ANDERSON = 0, BROYDEN = 1, PICARD = 2 };
// "anderson" -> 0 ...; throws Error listing the choices for an unknown name.
int solver_code(const std::string &name);
std::string solver_name(int code);

// Keeps freed heap memory in the process (glibc: no mmap for large blocks, no trimming). LibTorch allocates
// and frees tensors of tens to hundreds of MB per solver iteration for a few thousand atoms; glibc serves
// blocks over 32 MB with mmap and returns them with munmap, so every such tensor is faulted in page by page
// again (measured: 2,268 aspirin atoms, one evaluation 153 s -> 31 s). Called when a model is loaded;
// DEQFORMER_MALLOC=default in the environment leaves the allocator alone. Returns true if it changed it.
bool keep_freed_memory();

struct SolverSettings {
  int kind = ANDERSON;
  double tol = 1e-6;         // forward: max over atoms of |f(z)-z|/(|f(z)|+1e-12)
  int max_iter = 40;
  int memory = 5;
  double beta = 1.0;
  double lam = 1e-6;
  double adjoint_tol = 1e-6;
};

// What a deployed file's metadata says, validated (docs/contract.md, "Metadata").
struct ModelInfo {
  double r_max = 0.0;
  std::vector<std::string> type_names;
  int state_dim = 0;
  torch::Dtype dtype = torch::kFloat64;
  SolverSettings defaults;
};

// Validates the metadata of the model file `path` (used in messages only): contract version, required
// keys, numbers that parse completely and lie in range, units, dtype, mode. Throws Error naming the file,
// the key and the fix; never anything else (the fuzz test in tests/cpp/test_contract.cpp holds it to that).
ModelInfo parse_metadata(const std::string &path, const std::map<std::string, std::string> &meta);

class Model {
 public:
  static constexpr int CONTRACT_VERSION = 2;

  // Loads and validates `path`; throws deqformer::Error with a message naming the file.
  explicit Model(const std::string &path);
  ~Model();
  Model(const Model &) = delete;
  Model &operator=(const Model &) = delete;

  // Whether the model's methods run with LibTorch's graph-executor optimisation. Off by default: on
  // the CPU it only adds profiling runs and re-specialisation whenever the number of atoms or edges
  // changes (every MD step). The environment variable DEQFORMER_JIT_OPTIMIZE=1 turns it on. The
  // setting is applied (thread-locally, restored afterwards) around every method call.
  bool jit_optimize() const { return jit_optimize_; }

  const std::string &path() const { return path_; }
  const std::map<std::string, std::string> &metadata() const { return meta_; }
  // metadata value; throws Error naming the key if absent
  const std::string &meta(const std::string &key) const;

  double r_max() const { return r_max_; }
  int num_types() const { return static_cast<int>(type_names_.size()); }
  const std::vector<std::string> &type_names() const { return type_names_; }
  std::string type_names_joined() const;
  // index of an element name in type_names(), or -1
  int type_index(const std::string &name) const;
  int state_dim() const { return state_dim_; }
  torch::Dtype dtype() const { return dtype_; }
  const std::string &dtype_name() const { return meta(std::string("dtype")); }
  const std::string &energy_unit() const { return meta(std::string("energy_unit")); }
  const std::string &length_unit() const { return meta(std::string("length_unit")); }
  std::string lammps_units() const;
  // solver settings written into the file at deployment
  const SolverSettings &default_settings() const { return defaults_; }

  // ---- the contract methods (tensors must already have the model dtype / int64)
  torch::Tensor edge_features(const torch::Tensor &edge_vec, const torch::Tensor &types,
                              const torch::Tensor &edge_index);
  torch::Tensor inject(const torch::Tensor &types, const torch::Tensor &edge_index,
                       const torch::Tensor &attr, int64_t n_local);
  torch::Tensor step(const torch::Tensor &z_all, const torch::Tensor &x, const torch::Tensor &edge_index,
                     const torch::Tensor &attr, int64_t n_local);
  torch::Tensor atomic_energy(const torch::Tensor &z, const torch::Tensor &types);
  torch::Tensor pair_energy(const torch::Tensor &edge_vec, const torch::Tensor &types,
                            const torch::Tensor &edge_index, int64_t n_local);
  torch::Tensor energy_grad_z(const torch::Tensor &z, const torch::Tensor &types);
  torch::Tensor adjoint_step(const torch::Tensor &z_all, const torch::Tensor &x,
                             const torch::Tensor &edge_index, const torch::Tensor &attr,
                             const torch::Tensor &u, int64_t n_local);
  torch::Tensor edge_grad(const torch::Tensor &z_all, const torch::Tensor &u, const torch::Tensor &types,
                          const torch::Tensor &edge_index, const torch::Tensor &edge_vec, int64_t n_local);
  // per-atom solver state (opaque: a TorchScript List[Tensor])
  c10::IValue solver_init(const torch::Tensor &z, int kind, int memory);
  // one solver iteration; replaces `state`, returns the next iterate
  torch::Tensor solver_update(int kind, const torch::Tensor &z, const torch::Tensor &fz, c10::IValue &state,
                              int64_t k, double beta, double lam);

  // Where the model's methods run. Loading always reads the file onto the CPU; to() moves the weights
  // (the same file serves CPU, OpenMP and CUDA runs). Every tensor passed in must then be on device();
  // the driver creates its tensors there. Throws Error (naming the device and the fix) if LibTorch
  // cannot use it, e.g. a CUDA device with a CPU-only LibTorch or without a visible GPU.
  void to(const torch::Device &device);
  const torch::Device &device() const { return device_; }

  torch::jit::Module &module() { return module_; }

  // Why this model cannot run on the native backend ("" if it can: then native() works).
  std::string native_unsupported();
  // The native implementation of the contract methods (built on first use from the loaded weights);
  // throws Error naming the reason when native_unsupported() != "".
  NativeModel &native();

 private:
  c10::IValue call(const char *method, std::vector<c10::IValue> args);
  torch::Tensor call_tensor(const char *method, std::vector<c10::IValue> args);

  std::string path_;
  torch::jit::Module module_;
  std::map<std::string, std::string> meta_;
  double r_max_ = 0.0;
  std::vector<std::string> type_names_;
  int state_dim_ = 0;
  torch::Dtype dtype_ = torch::kFloat64;
  SolverSettings defaults_;
  bool jit_optimize_ = false;
  torch::Device device_ = torch::Device(torch::kCPU);
  std::unique_ptr<NativeModel> native_;
};

// The device named by `name`: "cpu", "cuda" (GPU `local_rank` modulo the number of visible GPUs, so
// that the ranks of a node spread over its GPUs) or "cuda:N". Throws Error for other names and for
// CUDA when LibTorch has no usable GPU.
torch::Device parse_device(const std::string &name, int local_rank = 0);

}    // namespace deqformer
