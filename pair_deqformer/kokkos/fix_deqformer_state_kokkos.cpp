/* ----------------------------------------------------------------------
   fix DEQFORMER/STATE/kk: per-atom z*, u* of pair_style deqformer/kk in a Kokkos DualView.
   syntax (issued by the pair style): fix ID all DEQFORMER/STATE/kk D
------------------------------------------------------------------------- */

#include "fix_deqformer_state_kokkos.h"

#include "atom.h"
#include "atom_kokkos.h"
#include "atom_masks.h"
#include "error.h"
#include "memory_kokkos.h"

#include <cstring>

using namespace LAMMPS_NS;

template <class DeviceType>
FixDeqformerStateKokkos<DeviceType>::FixDeqformerStateKokkos(LAMMPS *lmp, int narg, char **arg) :
    Fix(lmp, narg, arg), state(nullptr), state_dim(0), ncols(1)
{
  if (narg != 4)
    error->all(FLERR, "Illegal fix DEQFORMER/STATE/kk command: expected 'fix ID group DEQFORMER/STATE/kk D'");
  state_dim = utils::inumeric(FLERR, arg[3], false, lmp);
  if (state_dim <= 0) error->all(FLERR, "Illegal fix DEQFORMER/STATE/kk command: D must be positive");
  ncols = 1 + 2 * state_dim;

  kokkosable = 1;
  execution_space = ExecutionSpaceFromDevice<DeviceType>::space;
  datamask_read = EMPTY_MASK;
  datamask_modify = EMPTY_MASK;

  // the same restart record as fix DEQFORMER/STATE, under the same style name
  delete[] style;
  style = utils::strdup("DEQFORMER/STATE");

  restart_peratom = 1;
  create_attribute = 1;    // atoms created later start without a state
  maxexchange = ncols;

  grow_arrays(atom->nmax);
  atom->add_callback(Atom::GROW);
  atom->add_callback(Atom::RESTART);
  clear();
}

template <class DeviceType> FixDeqformerStateKokkos<DeviceType>::~FixDeqformerStateKokkos()
{
  if (copymode) return;
  atom->delete_callback(id, Atom::GROW);
  atom->delete_callback(id, Atom::RESTART);
  memoryKK->destroy_kokkos(k_state, state);
}

template <class DeviceType> int FixDeqformerStateKokkos<DeviceType>::setmask()
{
  return 0;
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

template <class DeviceType> void FixDeqformerStateKokkos<DeviceType>::clear()
{
  sync_host();
  for (int i = 0; i < atom->nmax; i++) state[i][0] = 0.0;
  modified_host();
}

template <class DeviceType> void FixDeqformerStateKokkos<DeviceType>::grow_arrays(int nmax)
{
  sync_host();    // the resize keeps the host copy's values
  memoryKK->grow_kokkos(k_state, state, nmax, ncols, "deqformer/state/kk:state");
  modified_host();
}

template <class DeviceType> void FixDeqformerStateKokkos<DeviceType>::copy_arrays(int i, int j, int /*delflag*/)
{
  sync_host();
  std::memcpy(state[j], state[i], sizeof(double) * ncols);
  modified_host();
}

template <class DeviceType> void FixDeqformerStateKokkos<DeviceType>::set_arrays(int i)
{
  sync_host();
  state[i][0] = 0.0;
  modified_host();
}

template <class DeviceType> int FixDeqformerStateKokkos<DeviceType>::pack_exchange(int i, double *buf)
{
  sync_host();
  std::memcpy(buf, state[i], sizeof(double) * ncols);
  return ncols;
}

template <class DeviceType> int FixDeqformerStateKokkos<DeviceType>::unpack_exchange(int nlocal, double *buf)
{
  sync_host();
  std::memcpy(state[nlocal], buf, sizeof(double) * ncols);
  modified_host();
  return ncols;
}

template <class DeviceType> int FixDeqformerStateKokkos<DeviceType>::pack_restart(int i, double *buf)
{
  sync_host();
  buf[0] = ncols + 1;    // number of values including this one, as every fix's restart record
  std::memcpy(buf + 1, state[i], sizeof(double) * ncols);
  return ncols + 1;
}

template <class DeviceType> void FixDeqformerStateKokkos<DeviceType>::unpack_restart(int nlocal, int nth)
{
  sync_host();
  double **extra = atom->extra;
  int m = 0;
  for (int i = 0; i < nth; i++) m += static_cast<int>(extra[nlocal][m]);
  const int n = static_cast<int>(extra[nlocal][m]) - 1;
  m++;
  if (n != ncols)    // written for a model with another state size: start from zero
    state[nlocal][0] = 0.0;
  else
    std::memcpy(state[nlocal], &extra[nlocal][m], sizeof(double) * ncols);
  modified_host();
}

template <class DeviceType> int FixDeqformerStateKokkos<DeviceType>::size_restart(int /*i*/)
{
  return ncols + 1;
}

template <class DeviceType> int FixDeqformerStateKokkos<DeviceType>::maxsize_restart()
{
  return ncols + 1;
}

template <class DeviceType> double FixDeqformerStateKokkos<DeviceType>::memory_usage()
{
  // host and device copies (one allocation when they share a memory space)
  const double one = static_cast<double>(atom->nmax) * ncols * sizeof(double);
  return std::is_same<typename DeviceType::memory_space, LMPHostType::memory_space>::value ? one : 2.0 * one;
}

namespace LAMMPS_NS {
template class FixDeqformerStateKokkos<LMPDeviceType>;
#ifdef LMP_KOKKOS_GPU
template class FixDeqformerStateKokkos<LMPHostType>;
#endif
}    // namespace LAMMPS_NS
