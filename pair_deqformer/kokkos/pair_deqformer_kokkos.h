/* -*- c++ -*- ----------------------------------------------------------
   pair_style deqformer/kk: the KOKKOS variant of pair_style deqformer (same syntax, keywords and
   physics; the fixed-point / adjoint algorithm is the LAMMPS-free driver in deqformer_driver.cpp).

   Data path per force evaluation, all in the memory of the execution space (on a GPU: device
   memory, no host round trip):
     Kokkos neighbor list (d_neighbors, d_numneigh, d_ilist) + positions + types
       -> edges i <- j (count, exclusive scan, fill: deterministic order) in Kokkos views
       -> LibTorch tensors by torch::from_blob on those views (device and strides of the views)
     per-atom state z*, u*: fix DEQFORMER/STATE/kk (a Kokkos DualView) -> strided tensors
     halo exchange of states (forward) and adjoints (reverse) every solver iteration:
       pack_forward_comm_kokkos / unpack_forward_comm_kokkos and their reverse counterparts, run
       over CommKokkos's swap plan with device buffers (host staging only for MPI without GPU-aware
       support, as CommKokkos does)
     energies, dE/d(edge vector) (tensors on the device) -> Kokkos views over the tensor memory ->
       forces (atomics), per-atom energies, virials.

   Requirements: newton pair on (-pk kokkos newton on). Any Kokkos neighbor setting (neigh full,
   half or half/thread): the style always requests its own full list. comm_style brick for the
   device communication (otherwise the host path of pair_style deqformer is used).
------------------------------------------------------------------------- */

#ifdef PAIR_CLASS
// clang-format off
PairStyle(deqformer/kk,PairDeqformerKokkos<LMPDeviceType>);
PairStyle(deqformer/kk/device,PairDeqformerKokkos<LMPDeviceType>);
PairStyle(deqformer/kk/host,PairDeqformerKokkos<LMPHostType>);
// clang-format on
#else

#ifndef LMP_PAIR_DEQFORMER_KOKKOS_H
#define LMP_PAIR_DEQFORMER_KOKKOS_H

#include "kokkos_base.h"
#include "kokkos_type.h"
#include "pair_deqformer.h"
#include "pair_kokkos.h"

#include <torch/types.h>

namespace LAMMPS_NS {

template <class DeviceType> class FixDeqformerStateKokkos;

template <class DeviceType> class PairDeqformerKokkos : public PairDeqformer, public KokkosBase {
 public:
  typedef DeviceType device_type;
  typedef ArrayTypes<DeviceType> AT;
  typedef EV_FLOAT value_type;

  PairDeqformerKokkos(class LAMMPS *);
  ~PairDeqformerKokkos() override;
  void compute(int, int) override;
  void init_style() override;
  double memory_usage() override;

  // halo exchange of the tensor in comm_tensor (rows = LAMMPS atom indices), on DeviceType
  void forward_state(void *tensor) override;
  void reverse_state(void *tensor) override;

  // KokkosBase: forward communication of states (also usable by CommKokkos::forward_comm_pair)
  int pack_forward_comm_kokkos(int, DAT::tdual_int_2d, int, DAT::tdual_xfloat_1d &, int, int *) override;
  void unpack_forward_comm_kokkos(int, int, DAT::tdual_xfloat_1d &) override;
  // the reverse counterparts (LAMMPS 29Sep2021's KokkosBase has none for pair styles)
  int pack_reverse_comm_kokkos(int n, int first, DAT::tdual_xfloat_1d &buf);
  void unpack_reverse_comm_kokkos(int n, DAT::tdual_int_2d list, int iswap, DAT::tdual_xfloat_1d &buf);

  // read by pair_virial_fdotr_compute
  typename AT::t_x_array x;
  typename AT::t_f_array f;

 protected:
  void select_device() override;
  void ensure_state_fix() override;
  const char *newton_hint() const override
  {
    return "run with '-pk kokkos newton on' (the KOKKOS package turns newton off by default on GPUs) and do not "
           "use 'newton off'";
  }

  // whether the states travel by the device swap loop (else: PairDeqformer's host path)
  bool device_comm();
  void swap_loop(bool reverse);
  void exchange_buffers(int send_vals, int dest, int recv_vals, int source);
  void grow_comm_buffers(int nvals);
  // the four pack/unpack routines: rows of the send list (list given) or first.. of comm_tensor and buf,
  // moved by op (deqformer::pair_rules::RowOp) in one Kokkos kernel named label
  int comm_rows_kokkos(const char *label, int n, DAT::tdual_int_2d *list, int iswap, int first,
                       DAT::tdual_xfloat_1d &buf, int op);
  // LibTorch work is ordered against Kokkos work (a no-op on host backends)
  void sync_torch();

  int neighflag, eflag, vflag;
  torch::Device torch_device;
  FixDeqformerStateKokkos<DeviceType> *fix_state_kk;

  typename AT::t_int_1d type;
  Kokkos::View<int *, DeviceType> d_type_map;    // LAMMPS type -> model type, -1 for NULL

  // graph buffers: capacities only grow, so that steady MD reuses the same allocations
  Kokkos::View<int64_t *, DeviceType> d_types;         // [>= nall]
  Kokkos::View<int64_t *, DeviceType> d_offsets;       // [>= inum + 1] first edge of each centre
  Kokkos::View<int64_t *, DeviceType> d_edge_index;    // [2 * cap]: row 0 at [0, E), row 1 at [E, 2E)
  Kokkos::View<double *, DeviceType> d_edge_vec;       // [3 * cap]: [E, 3] row-major
  int64_t edge_capacity;

  // communication buffers of the states / adjoints
  DAT::tdual_xfloat_1d k_cbuf_send, k_cbuf_recv;

  DAT::tdual_efloat_1d k_eatom;
  DAT::tdual_virial_array k_vatom;
  typename AT::t_efloat_1d d_eatom;
  typename AT::t_virial_array d_vatom;

  friend void pair_virial_fdotr_compute<PairDeqformerKokkos>(PairDeqformerKokkos *);
};

}    // namespace LAMMPS_NS

#endif
#endif
