// deqformer: loading and validating a deployed model (docs/contract.md).
#include "deqformer_model.h"
#include "deqformer_native.h"

#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <sstream>
#include <sys/stat.h>

#include <torch/csrc/jit/runtime/graph_executor.h>
#include <torch/cuda.h>

namespace deqformer {

namespace {

const char *const REDEPLOY = "deploy the checkpoint with deqformer-deploy (deqformer.deploy.deploy)";

const char *const REQUIRED_KEYS[] = {"contract_version", "r_max", "num_types", "type_names", "energy_unit",
                                     "length_unit", "dtype", "state_dim", "solver_code", "solver_tol",
                                     "solver_max_iter", "solver_memory", "solver_beta", "solver_lam",
                                     "adjoint_tol"};

const char *const METHODS[] = {"edge_features", "inject", "step", "atomic_energy", "pair_energy", "energy_grad_z",
                               "adjoint_step", "edge_grad", "solver_init", "solver_update"};

std::string first_line(const std::string &s)
{
  auto pos = s.find('\n');
  return pos == std::string::npos ? s : s.substr(0, pos);
}

std::vector<std::string> split_words(const std::string &s)
{
  std::istringstream in(s);
  std::vector<std::string> out;
  std::string w;
  while (in >> w) out.push_back(w);
  return out;
}

// strict number parsing of a metadata value
double to_double(const std::string &path, const std::string &key, const std::string &value)
{
  try {
    size_t used = 0;
    double v = std::stod(value, &used);
    if (used == value.size() && std::isfinite(v)) return v;
  } catch (std::exception &) {
  }
  throw Error("deqformer model '" + path + "': metadata '" + key + "' = '" + value +
              "' is not a number; the file is damaged: " + REDEPLOY);
}

long to_int(const std::string &path, const std::string &key, const std::string &value)
{
  try {
    size_t used = 0;
    long v = std::stol(value, &used);
    if (used == value.size()) return v;
  } catch (std::exception &) {
  }
  throw Error("deqformer model '" + path + "': metadata '" + key + "' = '" + value +
              "' is not an integer; the file is damaged: " + REDEPLOY);
}

}    // namespace

int solver_code(const std::string &name)
{
  if (name == "anderson") return ANDERSON;
  if (name == "broyden") return BROYDEN;
  if (name == "picard") return PICARD;
  throw Error("unknown solver '" + name + "': choose anderson, broyden or picard");
}

std::string solver_name(int code)
{
  switch (code) {
    case ANDERSON: return "anderson";
    case BROYDEN: return "broyden";
    case PICARD: return "picard";
    default: return "unknown(" + std::to_string(code) + ")";
  }
}

bool keep_freed_memory()
{
  const char *env = std::getenv("DEQFORMER_MALLOC");
  if (env != nullptr && std::string(env) == "default") return false;
#if defined(__GLIBC__)
  static const bool done = mallopt(M_MMAP_MAX, 0) == 1 && mallopt(M_TRIM_THRESHOLD, INT_MAX) == 1;
  return done;
#else
  return false;
#endif
}

Model::Model(const std::string &path) : path_(path)
{
  keep_freed_memory();
  // 1. the file itself
  struct stat st;
  if (stat(path.c_str(), &st) != 0)
    throw Error("deqformer model file '" + path + "' cannot be opened: " + std::strerror(errno) +
                "; give the path of a file written by deqformer-deploy");
  if (!S_ISREG(st.st_mode))
    throw Error("deqformer model file '" + path +
                "' is not a regular file; give the path of a file written by deqformer-deploy");
  {
    std::ifstream probe(path, std::ios::binary);
    if (!probe.good())
      throw Error("deqformer model file '" + path + "' is not readable: " + std::strerror(errno) +
                  "; check its permissions");
  }
  if (st.st_size == 0)
    throw Error("deqformer model file '" + path + "' is empty; " + REDEPLOY);

  // 2. TorchScript
  const char *opt = std::getenv("DEQFORMER_JIT_OPTIMIZE");
  jit_optimize_ = opt != nullptr && std::string(opt) == "1";
  try {
    module_ = torch::jit::load(path, torch::kCPU);
  } catch (const std::exception &e) {
    throw Error("deqformer model file '" + path +
                "' is not a readable TorchScript archive (truncated or not a deployed model; LibTorch says: " +
                first_line(e.what()) + "); " + REDEPLOY);
  }
  module_.eval();

  // 3. a deqformer model?
  if (!module_.find_method("metadata"))
    throw Error("'" + path +
                "' is a TorchScript file but not a deqformer model (it has no metadata() method); " +
                REDEPLOY);
  c10::IValue md;
  try {
    torch::jit::GraphOptimizerEnabledGuard optimize(jit_optimize_);
    md = module_.run_method("metadata");
  } catch (const std::exception &e) {
    throw Error("deqformer model '" + path + "': its metadata() method failed (" + first_line(e.what()) +
                "); " + REDEPLOY);
  }
  if (!md.isGenericDict())
    throw Error("deqformer model '" + path + "': metadata() does not return Dict[str, str]; " + REDEPLOY);
  for (const auto &item : md.toGenericDict()) {
    if (!item.key().isString() || !item.value().isString())
      throw Error("deqformer model '" + path + "': metadata() does not return Dict[str, str]; " + REDEPLOY);
    meta_[item.key().toStringRef()] = item.value().toStringRef();
  }

  // 4. the metadata values
  ModelInfo info = parse_metadata(path, meta_);
  r_max_ = info.r_max;
  type_names_ = info.type_names;
  state_dim_ = info.state_dim;
  dtype_ = info.dtype;
  defaults_ = info.defaults;

  // 5. the methods and weights the metadata promises
  std::string missing_methods;
  for (const char *m : METHODS)
    if (!module_.find_method(m)) missing_methods += std::string(missing_methods.empty() ? "" : ", ") + m;
  if (!missing_methods.empty())
    throw Error("deqformer model '" + path + "' lacks the contract methods " + missing_methods + "; " +
                REDEPLOY);
  for (const auto &p : module_.parameters()) {
    if (p.scalar_type() != dtype_)
      throw Error("deqformer model '" + path + "': metadata says dtype " + meta_["dtype"] +
                  " but the weights are " + std::string(c10::toString(p.scalar_type())) + "; " + REDEPLOY);
    break;
  }
}

Model::~Model() = default;

std::string Model::native_unsupported() { return NativeModel::unsupported(*this); }

NativeModel &Model::native()
{
  if (!native_) native_ = std::make_unique<NativeModel>(*this);
  return *native_;
}

ModelInfo parse_metadata(const std::string &path, const std::map<std::string, std::string> &meta)
{
  // contract version first (a different version may legitimately use other keys)
  auto cv = meta.find("contract_version");
  if (cv == meta.end())
    throw Error("deqformer model '" + path + "': metadata has no 'contract_version'; " + REDEPLOY);
  if (cv->second != std::to_string(Model::CONTRACT_VERSION))
    throw Error("deqformer model '" + path + "' has contract version " + cv->second +
                ", but this pair style reads contract version " + std::to_string(Model::CONTRACT_VERSION) +
                " only: redeploy the checkpoint with a deqformer version that writes contract version " +
                std::to_string(Model::CONTRACT_VERSION) + ", or update pair_deqformer");
  std::string missing;
  for (const char *key : REQUIRED_KEYS)
    if (!meta.count(key)) missing += std::string(missing.empty() ? "" : ", ") + key;
  if (!missing.empty())
    throw Error("deqformer model '" + path + "': metadata lacks the keys " + missing + "; " + REDEPLOY);
  auto get = [&](const char *key) -> const std::string & { return meta.at(key); };
  auto positive = [&](const char *key, double v) {
    if (!(v > 0.0))
      throw Error("deqformer model '" + path + "': metadata '" + key + "' = " + get(key) +
                  " must be positive; " + REDEPLOY);
  };
  auto int_in = [&](const char *key, long lo, long hi) {
    long v = to_int(path, key, get(key));
    if (v < lo || v > hi)
      throw Error("deqformer model '" + path + "': metadata '" + key + "' = " + get(key) + " is not in [" +
                  std::to_string(lo) + ", " + std::to_string(hi) + "]; " + REDEPLOY);
    return static_cast<int>(v);
  };

  ModelInfo info;
  const std::string &dt = get("dtype");
  if (dt == "float64")
    info.dtype = torch::kFloat64;
  else if (dt == "float32")
    info.dtype = torch::kFloat32;
  else
    throw Error("deqformer model '" + path + "': dtype '" + dt +
                "' is not supported (float64 or float32); redeploy with dtype float64 or float32");
  info.r_max = to_double(path, "r_max", get("r_max"));
  positive("r_max", info.r_max);
  info.type_names = split_words(get("type_names"));
  long nt = to_int(path, "num_types", get("num_types"));
  if (nt <= 0 || nt != static_cast<long>(info.type_names.size()))
    throw Error("deqformer model '" + path + "': num_types = " + get("num_types") + " but type_names = '" +
                get("type_names") + "'; " + REDEPLOY);
  info.state_dim = int_in("state_dim", 1, 1 << 20);
  if (get("energy_unit") != "eV" || get("length_unit") != "Angstrom")
    throw Error("deqformer model '" + path + "' uses units " + get("energy_unit") + " / " + get("length_unit") +
                "; pair_deqformer expects eV / Angstrom; " + REDEPLOY);
  auto mode = meta.find("mode");
  if (mode != meta.end() && mode->second != "deq")
    throw Error("deqformer model '" + path + "' has mode '" + mode->second +
                "'; only 'deq' models can be driven by pair_deqformer");

  SolverSettings &d = info.defaults;
  d.kind = static_cast<int>(to_int(path, "solver_code", get("solver_code")));
  if (d.kind < 0 || d.kind > 2)
    throw Error("deqformer model '" + path + "': solver_code " + get("solver_code") +
                " is not 0 (anderson), 1 (broyden) or 2 (picard); " + REDEPLOY);
  d.tol = to_double(path, "solver_tol", get("solver_tol"));
  positive("solver_tol", d.tol);
  d.max_iter = int_in("solver_max_iter", 1, 1000000);
  d.memory = int_in("solver_memory", 1, 1000);
  d.beta = to_double(path, "solver_beta", get("solver_beta"));
  positive("solver_beta", d.beta);
  d.lam = to_double(path, "solver_lam", get("solver_lam"));
  if (d.lam < 0.0)
    throw Error("deqformer model '" + path + "': metadata 'solver_lam' = " + get("solver_lam") +
                " must not be negative; " + REDEPLOY);
  d.adjoint_tol = to_double(path, "adjoint_tol", get("adjoint_tol"));
  positive("adjoint_tol", d.adjoint_tol);
  return info;
}

torch::Device parse_device(const std::string &name, int local_rank)
{
  if (name == "cpu") return torch::Device(torch::kCPU);
  if (name != "cuda" && name.rfind("cuda:", 0) != 0)
    throw Error("unknown device '" + name + "': use cpu, cuda or cuda:N");
  if (!torch::cuda::is_available())
    throw Error("device '" + name + "' needs a LibTorch built with CUDA and a visible GPU; this LibTorch reports "
                "no usable CUDA device (link LAMMPS against a CUDA LibTorch, or use device cpu)");
  const int64_t ngpu = static_cast<int64_t>(torch::cuda::device_count());
  int64_t index = local_rank % ngpu;
  if (name != "cuda") {
    const std::string num = name.substr(5);
    try {
      size_t used = 0;
      index = std::stol(num, &used);
      if (used != num.size()) throw std::invalid_argument(num);
    } catch (std::exception &) {
      throw Error("device '" + name + "': the GPU index must be an integer (cuda:0, cuda:1, ...)");
    }
    if (index < 0 || index >= ngpu)
      throw Error("device '" + name + "': there are " + std::to_string(ngpu) + " visible GPUs");
  }
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index));
}

void Model::to(const torch::Device &device)
{
  if (device == device_) return;
  if (device.is_cuda() && !torch::cuda::is_available())
    throw Error("deqformer model '" + path_ + "': cannot run on " + device.str() +
                ": this LibTorch has no usable CUDA device (link against a CUDA LibTorch and check that a GPU is "
                "visible)");
  try {
    module_.to(device);
    native_.reset();
  } catch (const std::exception &e) {
    throw Error("deqformer model '" + path_ + "': moving it to " + device.str() + " failed: " + first_line(e.what()));
  }
  device_ = device;
}

const std::string &Model::meta(const std::string &key) const
{
  auto it = meta_.find(key);
  if (it == meta_.end()) throw Error("deqformer model '" + path_ + "': metadata has no '" + key + "'");
  return it->second;
}

std::string Model::lammps_units() const
{
  auto it = meta_.find("lammps_units");
  return it == meta_.end() ? std::string("metal") : it->second;
}

std::string Model::type_names_joined() const
{
  std::string s;
  for (const auto &t : type_names_) s += (s.empty() ? "" : " ") + t;
  return s;
}

int Model::type_index(const std::string &name) const
{
  for (size_t i = 0; i < type_names_.size(); ++i)
    if (type_names_[i] == name) return static_cast<int>(i);
  return -1;
}

c10::IValue Model::call(const char *method, std::vector<c10::IValue> args)
{
  try {
    torch::jit::GraphOptimizerEnabledGuard optimize(jit_optimize_);
    return module_.get_method(method)(std::move(args));
  } catch (const Error &) {
    throw;
  } catch (const std::exception &e) {
    throw Error("deqformer model '" + path_ + "': method " + method + "() failed: " + e.what());
  }
}

torch::Tensor Model::call_tensor(const char *method, std::vector<c10::IValue> args)
{
  return call(method, std::move(args)).toTensor();
}

torch::Tensor Model::edge_features(const torch::Tensor &edge_vec, const torch::Tensor &types,
                                   const torch::Tensor &edge_index)
{
  return call_tensor("edge_features", {edge_vec, types, edge_index});
}

torch::Tensor Model::inject(const torch::Tensor &types, const torch::Tensor &edge_index,
                            const torch::Tensor &attr, int64_t n_local)
{
  return call_tensor("inject", {types, edge_index, attr, n_local});
}

torch::Tensor Model::step(const torch::Tensor &z_all, const torch::Tensor &x, const torch::Tensor &edge_index,
                          const torch::Tensor &attr, int64_t n_local)
{
  return call_tensor("step", {z_all, x, edge_index, attr, n_local});
}

torch::Tensor Model::atomic_energy(const torch::Tensor &z, const torch::Tensor &types)
{
  return call_tensor("atomic_energy", {z, types});
}

torch::Tensor Model::pair_energy(const torch::Tensor &edge_vec, const torch::Tensor &types,
                                 const torch::Tensor &edge_index, int64_t n_local)
{
  return call_tensor("pair_energy", {edge_vec, types, edge_index, n_local});
}

torch::Tensor Model::energy_grad_z(const torch::Tensor &z, const torch::Tensor &types)
{
  return call_tensor("energy_grad_z", {z, types});
}

torch::Tensor Model::adjoint_step(const torch::Tensor &z_all, const torch::Tensor &x,
                                  const torch::Tensor &edge_index, const torch::Tensor &attr,
                                  const torch::Tensor &u, int64_t n_local)
{
  return call_tensor("adjoint_step", {z_all, x, edge_index, attr, u, n_local});
}

torch::Tensor Model::edge_grad(const torch::Tensor &z_all, const torch::Tensor &u, const torch::Tensor &types,
                               const torch::Tensor &edge_index, const torch::Tensor &edge_vec, int64_t n_local)
{
  return call_tensor("edge_grad", {z_all, u, types, edge_index, edge_vec, n_local});
}

c10::IValue Model::solver_init(const torch::Tensor &z, int kind, int memory)
{
  return call("solver_init", {z, static_cast<int64_t>(kind), static_cast<int64_t>(memory)});
}

torch::Tensor Model::solver_update(int kind, const torch::Tensor &z, const torch::Tensor &fz,
                                   c10::IValue &state, int64_t k, double beta, double lam)
{
  auto out = call("solver_update", {static_cast<int64_t>(kind), z, fz, state, k, beta, lam});
  auto tuple = out.toTuple();
  state = tuple->elements()[1];
  return tuple->elements()[0].toTensor();
}

}    // namespace deqformer
