// deqformer: the per-atom fixed-point solver updates of models/deqformer/solvers.py written in C++, for
// the native backend (no TorchScript call per iteration). Same rule, same per-atom independence: the
// iterates of an atom never depend on how atoms are split between MPI ranks. Anderson and damped Picard;
// the driver uses the model's TorchScript `solver_update` for Broyden.
#pragma once

#include <torch/torch.h>


namespace deqformer {

class NativeSolver {
 public:
  // whether this class implements solver `kind` (SolverKind) with this memory
  static bool supports(int kind, int memory);
  // a solve of n atoms with states of size d
  NativeSolver(int kind, int64_t n, int64_t d, int memory);
  // the next iterate from z and f(z) [n, d] (CPU, contiguous, float or double); k counts from 0
  torch::Tensor update(const torch::Tensor &z, const torch::Tensor &fz, int k, double beta, double lam);

 private:
  template <typename T> torch::Tensor anderson(const torch::Tensor &z, const torch::Tensor &fz, int k, double beta,
                                               double lam);
  int kind_;
  int64_t n_, d_;
  int memory_;
  // Anderson history in the dtype of the iterates: iterates, their images, residuals [n][memory][d], and
  // the Gram matrices of the residuals [n][memory][memory]
  torch::Tensor hx_, hf_, hg_, gram_;
};

// max over atoms of |fz_i - z_i| / (|fz_i| + 1e-12), +inf if fz has a non-finite entry (CPU tensors)
double max_relative_residual(const torch::Tensor &z, const torch::Tensor &fz);

}    // namespace deqformer
