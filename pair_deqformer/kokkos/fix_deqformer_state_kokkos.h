/* -*- c++ -*- ----------------------------------------------------------
   fix DEQFORMER/STATE/kk: the per-atom store of pair_style deqformer/kk (fixed point z*, adjoint u*)
   in a Kokkos DualView, so that the pair style reads and writes it in the execution space's memory
   (on a GPU: device memory) without a host copy per step.

   It is fix DEQFORMER/STATE (same row layout, same exchange and restart records) with the rows in a
   DualView: `state` holds the host copy's row pointers, and the host-side routines of the base class
   (exchange between processes, sorting, restart files) sync the DualView to the host before they
   touch it and mark it modified there after; the pair style syncs it back before it reads. LAMMPS
   29Sep2021's Kokkos exchange has no device path for fixes with per-atom arrays, so exchange steps
   use the classic (host) exchange (LAMMPS prints a warning once); communication of the states
   during the solves is on the device (see pair_deqformer_kokkos.h).

   LAMMPS hands a restart file's per-atom record only to a fix of the same ID and style, so a restart
   file of one pair style is continued by the other through PairDeqformer::state_store, which moves
   the rows from a store of the file's style into the new one.
------------------------------------------------------------------------- */

#ifdef FIX_CLASS
// clang-format off
FixStyle(DEQFORMER/STATE/kk,FixDeqformerStateKokkos<LMPDeviceType>);
FixStyle(DEQFORMER/STATE/kk/device,FixDeqformerStateKokkos<LMPDeviceType>);
FixStyle(DEQFORMER/STATE/kk/host,FixDeqformerStateKokkos<LMPHostType>);
// clang-format on
#else

#ifndef LMP_FIX_DEQFORMER_STATE_KOKKOS_H
#define LMP_FIX_DEQFORMER_STATE_KOKKOS_H

#include "fix_deqformer_state.h"
#include "kokkos_type.h"

namespace LAMMPS_NS {

template <class DeviceType> class FixDeqformerStateKokkos : public FixDeqformerState {
 public:
  typedef ArrayTypes<DeviceType> AT;

  FixDeqformerStateKokkos(class LAMMPS *, int, char **);
  ~FixDeqformerStateKokkos() override;

  void grow_arrays(int) override;
  double memory_usage() override;

  // the store in DeviceType's memory, synced there; call modified() after writing it
  typename AT::t_double_2d view();
  void modified();

 protected:
  void sync_host() override;
  void modified_host() override;

 private:
  DAT::tdual_double_2d k_state;    // [nmax][columns()], host copy's rows in `state`
};

}    // namespace LAMMPS_NS

#endif
#endif
