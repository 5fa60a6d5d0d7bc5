/* ----------------------------------------------------------------------
   fix DEQFORMER/STATE: per-atom z*, u* of pair_style deqformer, moving with the atoms.
   syntax (issued by the pair style): fix ID all DEQFORMER/STATE D
------------------------------------------------------------------------- */

#include "fix_deqformer_state.h"

#include "atom.h"
#include "comm.h"
#include "deqformer_pair_rules.h"
#include "error.h"
#include "memory.h"

#include <algorithm>
#include <cstring>

using namespace LAMMPS_NS;
using deqformer::pair_rules::state_layout::FLAG;

FixDeqformerState::FixDeqformerState(LAMMPS *lmp, int narg, char **arg) :
    Fix(lmp, narg, arg), state(nullptr), state_dim(0), ncols(1), last_step(-1), previous_step(-1)
{
  if (narg != 4) error->all(FLERR, "Illegal fix {} command: expected 'fix ID group {} D'", style, style);
  state_dim = utils::inumeric(FLERR, arg[3], false, lmp);
  if (state_dim <= 0) error->all(FLERR, "Illegal fix {} command: D must be positive", style);
  ncols = deqformer::pair_rules::state_layout::columns(state_dim);

  restart_global = 1;
  restart_peratom = 1;
  create_attribute = 1;    // atoms created later start without a state
  maxexchange = ncols;

  // here and not later: Atom::add_callback finds the new fix as the empty slot of Modify's list
  atom->add_callback(Atom::GROW);
  atom->add_callback(Atom::RESTART);
}

// after the constructor, so that the Kokkos variant's grow_arrays allocates its DualView; before
// LAMMPS hands the fix its restart record
void FixDeqformerState::post_constructor()
{
  grow_arrays(atom->nmax);
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
  last_step = previous_step = -1;
  sync_host();
  for (int i = 0; i < atom->nmax; i++) state[i][FLAG] = 0.0;
  modified_host();
}

std::vector<double> FixDeqformerState::local_rows()
{
  sync_host();
  std::vector<double> rows(static_cast<size_t>(atom->nlocal) * ncols);
  for (int i = 0; i < atom->nlocal; i++)
    std::memcpy(&rows[static_cast<size_t>(i) * ncols], state[i], sizeof(double) * ncols);
  return rows;
}

void FixDeqformerState::set_local_rows(const std::vector<double> &rows)
{
  sync_host();
  const int n = std::min(atom->nlocal, static_cast<int>(rows.size() / ncols));
  for (int i = 0; i < n; i++)
    std::memcpy(state[i], &rows[static_cast<size_t>(i) * ncols], sizeof(double) * ncols);
  modified_host();
}

bool FixDeqformerState::begin_store(bigint step)
{
  if (step == last_step) return false;
  previous_step = last_step;
  last_step = step;
  return true;
}

void FixDeqformerState::write_restart(FILE *fp)
{
  if (comm->me != 0) return;
  const double list[3] = {2.0, static_cast<double>(last_step), static_cast<double>(previous_step)};
  const int size = sizeof(list);
  fwrite(&size, sizeof(int), 1, fp);
  fwrite(list, sizeof(double), 3, fp);
}

void FixDeqformerState::restart(char *buf)
{
  const auto *list = reinterpret_cast<const double *>(buf);
  if (static_cast<int>(list[0]) != 2) return;
  last_step = static_cast<bigint>(list[1]);
  previous_step = static_cast<bigint>(list[2]);
}

void FixDeqformerState::grow_arrays(int nmax)
{
  memory->grow(state, nmax, ncols, "deqformer/state:state");
}

void FixDeqformerState::copy_arrays(int i, int j, int /*delflag*/)
{
  sync_host();
  std::memcpy(state[j], state[i], sizeof(double) * ncols);
  modified_host();
}

void FixDeqformerState::set_arrays(int i)
{
  sync_host();
  state[i][FLAG] = 0.0;
  modified_host();
}

int FixDeqformerState::pack_exchange(int i, double *buf)
{
  sync_host();
  std::memcpy(buf, state[i], sizeof(double) * ncols);
  return ncols;
}

int FixDeqformerState::unpack_exchange(int nlocal, double *buf)
{
  sync_host();
  std::memcpy(state[nlocal], buf, sizeof(double) * ncols);
  modified_host();
  return ncols;
}

int FixDeqformerState::pack_restart(int i, double *buf)
{
  sync_host();
  // buf[0] = number of values including itself, as every fix's restart data
  buf[0] = ncols + 1;
  std::memcpy(buf + 1, state[i], sizeof(double) * ncols);
  return ncols + 1;
}

void FixDeqformerState::unpack_restart(int nlocal, int nth)
{
  sync_host();
  double **extra = atom->extra;
  int m = 0;
  for (int i = 0; i < nth; i++) m += static_cast<int>(extra[nlocal][m]);
  const int n = static_cast<int>(extra[nlocal][m]) - 1;
  m++;
  if (n == ncols) {
    std::memcpy(state[nlocal], &extra[nlocal][m], sizeof(double) * ncols);
  } else if (n == 1 + 2 * state_dim) {
    // a file of the layout [flag, z*, u*]: the last fixed point only
    std::memcpy(state[nlocal], &extra[nlocal][m], sizeof(double) * n);
    state[nlocal][FLAG] = std::min(state[nlocal][FLAG], 1.0);
  } else {    // written for a model with another state size: start from zero
    state[nlocal][FLAG] = 0.0;
  }
  modified_host();
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
