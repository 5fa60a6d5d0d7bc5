/* -*- c++ -*- ----------------------------------------------------------
   compute ID group deqformer/solver: solver statistics of pair_style deqformer as a global vector
   (iterations and residuals of the last force evaluation, means over the current run, ...).
------------------------------------------------------------------------- */

#ifdef COMPUTE_CLASS
// clang-format off
ComputeStyle(deqformer/solver,ComputeDeqformerSolver);
// clang-format on
#else

#ifndef LMP_COMPUTE_DEQFORMER_SOLVER_H
#define LMP_COMPUTE_DEQFORMER_SOLVER_H

#include "compute.h"

namespace LAMMPS_NS {

class ComputeDeqformerSolver : public Compute {
 public:
  ComputeDeqformerSolver(class LAMMPS *, int, char **);
  ~ComputeDeqformerSolver() override;
  void init() override;
  void compute_vector() override;

 private:
  double *stats;    // owned by the pair style
  int nstats;
};

}    // namespace LAMMPS_NS

#endif
#endif
