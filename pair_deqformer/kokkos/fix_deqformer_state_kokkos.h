/* -*- c++ -*- ----------------------------------------------------------
   fix DEQFORMER/STATE/kk: the per-atom store of pair_style deqformer/kk (fixed point z*, adjoint u*)
   in a Kokkos DualView, so that the pair style reads and writes it in the execution space's memory
   (on a GPU: device memory) without a host copy per step.

   Layout per atom, as fix DEQFORMER/STATE: [0] 1 if a state is stored, [1..D] z*, [D+1..2D] u*,
   a LayoutRight row of 1 + 2D doubles (the pair style wraps the rows as strided LibTorch tensors).

   The values move with their atoms: exchange between processes, sorting and restart files go
   through LAMMPS's host-side per-atom callbacks (grow/copy/pack/unpack), which sync the DualView to
   the host and mark it modified there; the pair style syncs it back before it reads. LAMMPS
   29Sep2021's Kokkos exchange has no device path for fixes with per-atom arrays, so exchange steps
   use the classic (host) exchange (LAMMPS prints a warning once); communication of the states
   during the solves is on the device (see pair_deqformer_kokkos.h).

   The fix reports its style as DEQFORMER/STATE and writes the same restart record as fix
   DEQFORMER/STATE, so deqformer/kk continues from a restart file of deqformer with its states (and
   vice versa inside a LAMMPS started with -k on, which a KOKKOS restart file needs anyway).
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

#include "fix.h"
#include "kokkos_type.h"

namespace LAMMPS_NS {

template <class DeviceType> class FixDeqformerStateKokkos : public Fix {
 public:
  typedef ArrayTypes<DeviceType> AT;

  FixDeqformerStateKokkos(class LAMMPS *, int, char **);
  ~FixDeqformerStateKokkos() override;
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
  int columns() const { return ncols; }
  // forget every stored state
  void clear();

  // the store in DeviceType's memory, synced there; call modified() after writing it
  typename AT::t_double_2d view();
  void modified();

 private:
  DAT::tdual_double_2d k_state;    // [nmax][1 + 2*state_dim]
  double **state;                  // host row pointers into k_state (LAMMPS memory convention)
  int state_dim, ncols;

  void sync_host();
  void modified_host();
};

}    // namespace LAMMPS_NS

#endif
#endif
