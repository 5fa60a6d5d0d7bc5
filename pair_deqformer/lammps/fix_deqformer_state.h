/* -*- c++ -*- ----------------------------------------------------------
   fix DEQFORMER/STATE: per-atom storage of pair_style deqformer's fixed point z* and adjoint u*
   (created by the pair style; not meant to be used in an input script). The values move with
   their atoms (exchange between processes, sorting) and are written to restart files.

   per atom: [0] 1 if a state is stored, [1..D] z*, [D+1..2D] u*
------------------------------------------------------------------------- */

#ifdef FIX_CLASS
// clang-format off
FixStyle(DEQFORMER/STATE,FixDeqformerState);
// clang-format on
#else

#ifndef LMP_FIX_DEQFORMER_STATE_H
#define LMP_FIX_DEQFORMER_STATE_H

#include "fix.h"

namespace LAMMPS_NS {

class FixDeqformerState : public Fix {
 public:
  FixDeqformerState(class LAMMPS *, int, char **);
  ~FixDeqformerState() override;
  int setmask() override;

  void grow_arrays(int) override;
  void copy_arrays(int, int, int) override;
  void set_arrays(int) override;
  int pack_exchange(int, double *) override;
  int unpack_exchange(int, double *) override;
  int pack_restart(int, double *) override;
  void unpack_restart(int, int) override;
  int size_restart(int) override;
  int maxsize_restart() override;
  double memory_usage() override;

  int dim() const { return state_dim; }
  // forget every stored state (e.g. after the model changed)
  void clear();

  double **state;    // [nmax][1 + 2*state_dim]

 private:
  int state_dim, ncols;
};

}    // namespace LAMMPS_NS

#endif
#endif
