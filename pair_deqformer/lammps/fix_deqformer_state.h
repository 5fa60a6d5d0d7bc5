/* -*- c++ -*- ----------------------------------------------------------
   fix DEQFORMER/STATE: per-atom storage of pair_style deqformer's fixed point z* and adjoint u*
   (created by the pair style; not meant to be used in an input script). The values move with
   their atoms (exchange between processes, sorting) and are written to restart files.

   per atom: [flag, z*, u*, z*_prev, u*_prev] (deqformer::pair_rules::state_layout in
   deqformer_pair_rules.h); globally the MD steps at which the last two fixed points were computed, so
   that the pair style extrapolates from them only when they are the two steps before the current one
   (also after a restart).

   The Kokkos variant (fix DEQFORMER/STATE/kk) derives from this class: it keeps the rows in a
   DualView whose host copy is `state`, and overrides sync_host() / modified_host(), which the
   host-side routines here call around every access.
------------------------------------------------------------------------- */

#ifdef FIX_CLASS
// clang-format off
FixStyle(DEQFORMER/STATE,FixDeqformerState);
// clang-format on
#else

#ifndef LMP_FIX_DEQFORMER_STATE_H
#define LMP_FIX_DEQFORMER_STATE_H

#include "fix.h"

#include <vector>

namespace LAMMPS_NS {

class FixDeqformerState : public Fix {
 public:
  FixDeqformerState(class LAMMPS *, int, char **);
  ~FixDeqformerState() override;
  int setmask() override;
  void post_constructor() override;

  void grow_arrays(int) override;
  void copy_arrays(int, int, int) override;
  void set_arrays(int) override;
  int pack_exchange(int, double *) override;
  int unpack_exchange(int, double *) override;
  void write_restart(FILE *) override;
  void restart(char *) override;
  int pack_restart(int, double *) override;
  void unpack_restart(int, int) override;
  int size_restart(int) override;
  int maxsize_restart() override;
  double memory_usage() override;

  int dim() const { return state_dim; }
  int columns() const { return ncols; }
  // forget every stored state (e.g. after the model changed)
  void clear();
  // the rows of the local atoms, to carry them into another store, and back
  std::vector<double> local_rows();
  void set_local_rows(const std::vector<double> &rows);

  // whether the stored fixed points were computed at the two steps before `step`
  bool consecutive_before(bigint step) const { return last_step == step - 1 && previous_step == step - 2; }
  // record that fixed points of `step` are being stored; true when `step` is a new step (the last
  // ones become the previous ones), false when it is the last step again (they are replaced)
  bool begin_store(bigint step);
  // the steps of the last and the previous stored fixed points, to carry them into another store
  void history(bigint steps[2]) const
  {
    steps[0] = last_step;
    steps[1] = previous_step;
  }
  void set_history(const bigint steps[2])
  {
    last_step = steps[0];
    previous_step = steps[1];
  }

  double **state;    // host rows [nmax][columns()]

 protected:
  int state_dim, ncols;
  bigint last_step, previous_step;    // -1: none
  // before reading or writing `state` on the host, and after writing it (no-ops here)
  virtual void sync_host() {}
  virtual void modified_host() {}
};

}    // namespace LAMMPS_NS

#endif
#endif
