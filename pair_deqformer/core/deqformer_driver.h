// deqformer: the fixed-point / adjoint algorithm of docs/contract.md ("Driving the model"), steps 1-5,
// call for call as deqformer.driver.solve_and_differentiate does it in Python, with a HaloExchange
// between the calls so that it runs unchanged under domain decomposition. Step 6 (storing z*, u*
// per atom) is the caller's: the result carries them.
#pragma once

#include "deqformer_halo.h"
#include "deqformer_model.h"

#include <string>

namespace deqformer {

// What to do when a solve reaches max_iter without reaching its tolerance.
enum class NonConvergence { WARN, ERROR };

// Who evaluates the model's methods: the TorchScript methods of the file (the reference), or their
// hand-written C++ twins (deqformer_native.h; CPU, cg messages, mlp attention).
enum class Backend { TORCHSCRIPT, NATIVE };

struct DriverSettings : SolverSettings {
  bool reuse = true;    // start from the given z0 / u0 (false: from zero)
  NonConvergence nonconvergence = NonConvergence::WARN;
  bool compute_forces = true;    // false: stop after the energy (no adjoint, no edge_grad)
  Backend backend = Backend::TORCHSCRIPT;

  DriverSettings() = default;
  explicit DriverSettings(const SolverSettings &s) : SolverSettings(s) {}
};

// The atoms of this process: N_all = n_local + ghosts, local atoms first.
struct Graph {
  torch::Tensor types;         // int64 [N_all], indices into the model's type_names
  torch::Tensor edge_index;    // int64 [2, E]: row 0 centre i < n_local, row 1 neighbour j < N_all
  torch::Tensor edge_vec;      // [E, 3] r_j - r_i in Angstrom (any float dtype; converted)
  int64_t n_local = 0;
  int64_t n_all = 0;
};

struct SolveStats {
  int iters = 0;            // iterations performed (step or adjoint_step evaluations)
  double residual = 0.0;    // global max relative residual of the returned (best) iterate
  bool converged = true;
};

struct Timings {    // wall seconds on this process
  double edge_features = 0.0;    // edge_features + inject
  double forward = 0.0;          // forward solve incl. its communication
  double energy = 0.0;           // atomic_energy + pair_energy + energy_grad_z
  double adjoint = 0.0;          // adjoint solve incl. its communication
  double edge_grad = 0.0;
  double comm = 0.0;             // all HaloExchange calls (part of forward / adjoint)
  double total = 0.0;
};

// The result tensors are on the model's device (Model::device()).
struct Result {
  torch::Tensor atomic_energy;    // double [n_local] (eV): readout of z* + core repulsion (pair_energy)
  torch::Tensor edge_grad;        // double [E, 3]: dE/d(edge_vec) (eV/Angstrom); undefined without forces
  torch::Tensor z;                // model dtype [n_local, D]: z*
  torch::Tensor u;                // model dtype [n_local, D]: u* (undefined without forces)
  double energy = 0.0;            // sum of atomic_energy over all processes
  SolveStats forward, adjoint;
  Timings time;
};

// Thrown (on every process alike: convergence is decided on global residuals) when a solve does not
// converge and the policy is NonConvergence::ERROR.
class NotConverged : public Error {
 public:
  explicit NotConverged(const std::string &msg) : Error(msg) {}
};

// Runs contract steps 1-5 on this process. z0 / u0: double or model dtype [n_local, D] start values
// (undefined tensor: zeros). Graph tensors and start values may live on any device: they are moved
// to the model's device (a no-op when they are already there, e.g. tensors made with torch::from_blob
// on Kokkos device memory). Collective over the processes of `halo`; the tensors handed to the halo
// are on the model's device.
Result solve_and_differentiate(Model &model, const Graph &graph, const DriverSettings &settings,
                               HaloExchange &halo, const torch::Tensor &z0 = torch::Tensor(),
                               const torch::Tensor &u0 = torch::Tensor());

// Human-readable one-line account of a non-converged result ("" if both solves converged).
std::string nonconvergence_message(const Result &r, const DriverSettings &s);

}    // namespace deqformer
