/* ----------------------------------------------------------------------
   compute deqformer/solver: the solver statistics vector of pair_style deqformer
   (see pair_deqformer.rst for the meaning of each entry)
------------------------------------------------------------------------- */

#include "compute_deqformer_solver.h"
#include "deqformer_solver_stats.h"

#include "error.h"
#include "force.h"
#include "pair.h"
#include "update.h"

using namespace LAMMPS_NS;

ComputeDeqformerSolver::ComputeDeqformerSolver(LAMMPS *lmp, int narg, char **arg) :
    Compute(lmp, narg, arg), stats(nullptr), nstats(0)
{
  if (narg != 3) error->all(FLERR, "Illegal compute deqformer/solver command: expected 'compute ID group deqformer/solver'");
  vector_flag = 1;
  size_vector = deqformer::solver_stats::NSTATS;
  extvector = 0;
  vector = new double[size_vector];
  for (int i = 0; i < size_vector; i++) vector[i] = 0.0;
}

ComputeDeqformerSolver::~ComputeDeqformerSolver()
{
  delete[] vector;
}

void ComputeDeqformerSolver::init()
{
  Pair *pair = force->pair_match("deqformer", 0);
  if (!pair) error->all(FLERR, "compute deqformer/solver needs pair_style deqformer (also as a pair hybrid sub-style)");
  int dim = 0;
  stats = static_cast<double *>(pair->extract("deqformer/solver_stats", dim));
  if (!stats || dim != 1) error->all(FLERR, "compute deqformer/solver: the pair style does not provide solver statistics");
  int *n = static_cast<int *>(pair->extract("deqformer/solver_nstats", dim));
  nstats = n ? *n : 0;
  if (nstats != size_vector)
    error->all(FLERR, "compute deqformer/solver: pair_style deqformer provides {} values, expected {}", nstats, size_vector);
}

void ComputeDeqformerSolver::compute_vector()
{
  invoked_vector = update->ntimestep;
  for (int i = 0; i < size_vector; i++) vector[i] = stats ? stats[i] : 0.0;
}
