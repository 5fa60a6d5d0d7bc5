/* ----------------------------------------------------------------------
   fix DEQFORMER/STATE/kk: per-atom z*, u* of pair_style deqformer/kk in a Kokkos DualView.
   syntax (issued by the pair style): fix ID all DEQFORMER/STATE/kk D
------------------------------------------------------------------------- */

#include "fix_deqformer_state_kokkos.h"

#include "atom.h"
#include "atom_masks.h"
#include "memory_kokkos.h"

#include <type_traits>

using namespace LAMMPS_NS;

template <class DeviceType>
FixDeqformerStateKokkos<DeviceType>::FixDeqformerStateKokkos(LAMMPS *lmp, int narg, char **arg) :
    FixDeqformerState(lmp, narg, arg)
{
  kokkosable = 1;
  execution_space = ExecutionSpaceFromDevice<DeviceType>::space;
  datamask_read = EMPTY_MASK;
  datamask_modify = EMPTY_MASK;
}

template <class DeviceType> FixDeqformerStateKokkos<DeviceType>::~FixDeqformerStateKokkos()
{
  memoryKK->destroy_kokkos(k_state, state);    // leaves state null for the base destructor
}

template <class DeviceType> void FixDeqformerStateKokkos<DeviceType>::sync_host()
{
  k_state.template sync<LMPHostType>();
}

template <class DeviceType> void FixDeqformerStateKokkos<DeviceType>::modified_host()
{
  k_state.template modify<LMPHostType>();
}

template <class DeviceType> typename ArrayTypes<DeviceType>::t_double_2d FixDeqformerStateKokkos<DeviceType>::view()
{
  k_state.template sync<DeviceType>();
  return k_state.template view<DeviceType>();
}

template <class DeviceType> void FixDeqformerStateKokkos<DeviceType>::modified()
{
  k_state.template modify<DeviceType>();
}

template <class DeviceType> void FixDeqformerStateKokkos<DeviceType>::grow_arrays(int nmax)
{
  sync_host();    // the resize keeps the host copy's values
  memoryKK->grow_kokkos(k_state, state, nmax, ncols, "deqformer/state/kk:state");
  modified_host();
}

template <class DeviceType> double FixDeqformerStateKokkos<DeviceType>::memory_usage()
{
  // host and device copies (one allocation when they share a memory space)
  const double one = FixDeqformerState::memory_usage();
  return std::is_same<typename DeviceType::memory_space, LMPHostType::memory_space>::value ? one : 2.0 * one;
}

namespace LAMMPS_NS {
template class FixDeqformerStateKokkos<LMPDeviceType>;
#ifdef LMP_KOKKOS_GPU
template class FixDeqformerStateKokkos<LMPHostType>;
#endif
}    // namespace LAMMPS_NS
