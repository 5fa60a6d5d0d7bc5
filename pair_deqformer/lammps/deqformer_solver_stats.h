// deqformer: the entries of pair_style deqformer's solver statistics vector, one list shared by the pair
// styles (extract "deqformer/solver_stats"), compute deqformer/solver (c_ID[k] is entry k - 1) and the
// tests. What each entry means: doc/pair_deqformer.rst, "compute deqformer/solver".
#pragma once

namespace deqformer {
namespace solver_stats {

  enum Entry : int {
    STAT_ITERS,                  // forward iterations of the last evaluation
    STAT_ADJ_ITERS,              // adjoint iterations of the last evaluation
    STAT_RESIDUAL,               // its forward residual (global max relative)
    STAT_ADJ_RESIDUAL,           // its adjoint residual
    STAT_MEAN_ITERS,             // mean forward iterations over the current run
    STAT_MEAN_ADJ_ITERS,         // mean adjoint iterations over the current run
    STAT_EVALS,                  // evaluations in the current run
    STAT_NOT_CONVERGED,          // evaluations in the current run that did not converge
    STAT_NOT_CONVERGED_TOTAL,    // ... since the pair style was defined
    STAT_TIME_FORWARD,           // wall seconds of this process in the current run: forward solves,
    STAT_TIME_ADJOINT,           //   adjoint solves,
    STAT_TIME_COMM,              //   the halo exchanges inside them,
    STAT_TIME_EDGES,             //   edge features and edge gradients,
    STAT_TIME_TOTAL,             //   whole force evaluations
    NSTATS
  };

}    // namespace solver_stats
}    // namespace deqformer
