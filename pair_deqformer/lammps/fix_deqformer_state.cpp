/* ----------------------------------------------------------------------
   fix DEQFORMER/STATE: per-atom z*, u* of pair_style deqformer, moving with the atoms.
   syntax (issued by the pair style): fix ID all DEQFORMER/STATE D
------------------------------------------------------------------------- */

#include "fix_deqformer_state.h"

#include "atom.h"
#include "error.h"
#include "memory.h"

#include <cstring>

using namespace LAMMPS_NS;

FixDeqformerState::FixDeqformerState(LAMMPS *lmp, int narg, char **arg) :
    Fix(lmp, narg, arg), state(nullptr), state_dim(0), ncols(1)
{
  if (narg != 4) error->all(FLERR, "Illegal fix DEQFORMER/STATE command: expected 'fix ID group DEQFORMER/STATE D'");
  state_dim = utils::inumeric(FLERR, arg[3], false, lmp);
  if (state_dim <= 0) error->all(FLERR, "Illegal fix DEQFORMER/STATE command: D must be positive");
  ncols = 1 + 2 * state_dim;

  restart_peratom = 1;
  create_attribute = 1;    // atoms created later start without a state
  maxexchange = ncols;

  grow_arrays(atom->nmax);
  atom->add_callback(Atom::GROW);
  atom->add_callback(Atom::RESTART);
  clear();
}

FixDeqformerState::~FixDeqformerState()
{
  atom->delete_callback(id, Atom::GROW);
  atom->delete_callback(id, Atom::RESTART);
  memory->destroy(state);
}

int FixDeqformerState::setmask()
{
  return 0;
}

void FixDeqformerState::clear()
{
  for (int i = 0; i < atom->nmax; i++) state[i][0] = 0.0;
}

void FixDeqformerState::grow_arrays(int nmax)
{
  memory->grow(state, nmax, ncols, "deqformer/state:state");
}

void FixDeqformerState::copy_arrays(int i, int j, int /*delflag*/)
{
  std::memcpy(state[j], state[i], sizeof(double) * ncols);
}

void FixDeqformerState::set_arrays(int i)
{
  state[i][0] = 0.0;
}

int FixDeqformerState::pack_exchange(int i, double *buf)
{
  std::memcpy(buf, state[i], sizeof(double) * ncols);
  return ncols;
}

int FixDeqformerState::unpack_exchange(int nlocal, double *buf)
{
  std::memcpy(state[nlocal], buf, sizeof(double) * ncols);
  return ncols;
}

int FixDeqformerState::pack_restart(int i, double *buf)
{
  // buf[0] = number of values including itself, as every fix's restart data
  buf[0] = ncols + 1;
  std::memcpy(buf + 1, state[i], sizeof(double) * ncols);
  return ncols + 1;
}

void FixDeqformerState::unpack_restart(int nlocal, int nth)
{
  double **extra = atom->extra;
  int m = 0;
  for (int i = 0; i < nth; i++) m += static_cast<int>(extra[nlocal][m]);
  int n = static_cast<int>(extra[nlocal][m]) - 1;
  m++;
  if (n != ncols) {    // written for a model with another state size: start from zero
    state[nlocal][0] = 0.0;
    return;
  }
  std::memcpy(state[nlocal], &extra[nlocal][m], sizeof(double) * ncols);
}

int FixDeqformerState::size_restart(int /*i*/)
{
  return ncols + 1;
}

int FixDeqformerState::maxsize_restart()
{
  return ncols + 1;
}

double FixDeqformerState::memory_usage()
{
  return static_cast<double>(atom->nmax) * ncols * sizeof(double);
}
