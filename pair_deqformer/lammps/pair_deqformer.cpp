/* ----------------------------------------------------------------------
   pair_style deqformer: deep-equilibrium equivariant transformer potential.

   Per force evaluation (docs/contract.md of the deqformer project, "Driving the model"):
     edges i <- j (i local, j local or ghost, |r_j - r_i| < r_max) from a full neighbor list;
     forward fixed point z* = f(z*) with one forward communication of z per iteration;
     adjoint fixed point u* = dE/dz* + J^T u* with one reverse communication per iteration;
     dE/d(edge vector) -> forces on i and j (ghost forces summed by LAMMPS, newton on);
     z*, u* stored per atom (fix DEQFORMER/STATE) as the start of the next evaluation.
   The algorithm lives in the LAMMPS-free driver (deqformer_driver.cpp); this file builds the
   graph, provides the communication and turns the result into forces, energies and virials.
------------------------------------------------------------------------- */

#include "pair_deqformer.h"

#include "deqformer_driver.h"
#include "deqformer_native.h"
#include "deqformer_lammps_version.h"
#include "fix_deqformer_state.h"

#include "atom.h"
#include "comm.h"
#include "error.h"
#include "fmt/format.h"
#include "force.h"
#include "lammps.h"
#include "memory.h"
#include "modify.h"
#include "neigh_list.h"
#include "neighbor.h"
#include "update.h"

#if DEQFORMER_LAMMPS_VERSION < 20220324
#include "neigh_request.h"
#endif

#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>

using namespace LAMMPS_NS;
using namespace deqformer::pair_rules;
using namespace deqformer::solver_stats;

namespace {

constexpr int MAX_WARNINGS = 10;

// HaloExchange over LAMMPS's ghost-atom communication: the tensor rows are LAMMPS atom indices
// (local atoms 0..nlocal-1, then ghosts), so the pair style's pack/unpack routines move them.
class LammpsHalo : public deqformer::HaloExchange {
 public:
  LammpsHalo(PairDeqformer *pair, MPI_Comm world) : pair_(pair), world_(world) {}
  void forward(torch::Tensor &z_all) override { pair_->forward_state(&z_all); }
  void reverse(torch::Tensor &v_all) override { pair_->reverse_state(&v_all); }
  double allreduce_max(double x) override
  {
    double r;
    MPI_Allreduce(&x, &r, 1, MPI_DOUBLE, MPI_MAX, world_);
    return r;
  }
  double allreduce_sum(double x) override
  {
    double r;
    MPI_Allreduce(&x, &r, 1, MPI_DOUBLE, MPI_SUM, world_);
    return r;
  }

 private:
  PairDeqformer *pair_;
  MPI_Comm world_;
};

// utils::file_is_readable (2021) became platform::file_is_readable (2022+): use neither
bool readable(const char *path)
{
  std::ifstream in(path);
  return in.good();
}

}    // namespace

/* ---------------------------------------------------------------------- */

PairDeqformer::PairDeqformer(LAMMPS *lmp) :
    Pair(lmp), comm_tensor(nullptr), type_map(nullptr), r_max(0.0), r_max_sq(0.0), energy_factor(1.0),
    state_dim(0), kind(0), max_iter(40), solver_memory(5), tol(1e-6), adjoint_tol(1e-6), beta(1.0), lam(1e-6),
    reuse(REUSE_EXTRAPOLATE), nonconv_error(0), min_dist(0.1), set_kind(0), set_max_iter(0), set_memory(0), set_tol(0), set_adjoint_tol(0),
    set_beta(0), fix_state(nullptr), run_iters(0.0), run_adj_iters(0.0), nwarn(0)
{
  single_enable = 0;
  restartinfo = 0;
  one_coeff = 1;
  manybody_flag = 1;
  for (double &s : stats) s = 0.0;
  fix_id = "DEQFORMER_STATE";
}

PairDeqformer::~PairDeqformer()
{
  if (copymode) return;
  if (fix_state && modify->find_fix(fix_id) >= 0) modify->delete_fix(fix_id);
  if (allocated) {
    memory->destroy(setflag);
    memory->destroy(cutsq);
    delete[] type_map;
  }
}

void PairDeqformer::allocate()
{
  allocated = 1;
  int n = atom->ntypes;
  memory->create(setflag, n + 1, n + 1, "pair:setflag");
  memory->create(cutsq, n + 1, n + 1, "pair:cutsq");
  for (int i = 1; i <= n; i++)
    for (int j = i; j <= n; j++) setflag[i][j] = 0;
  type_map = new int[n + 1];
  for (int i = 0; i <= n; i++) type_map[i] = -1;
}

/* ----------------------------------------------------------------------
   pair_style deqformer [model.pt] [keyword value ...]
------------------------------------------------------------------------- */

void PairDeqformer::settings(int narg, char **arg)
{
  static const char *keywords[] = {"tol",  "adjoint_tol", "max_iter",       "reuse", "solver",
                                   "memory", "beta",      "nonconvergence", "device",
                                   "min_dist", "backend", "edge_cache", "threads"};
  auto is_keyword = [&](const char *s) {
    for (const char *k : keywords)
      if (strcmp(s, k) == 0) return true;
    return false;
  };
  int iarg = 0;
  model_file.clear();
  if (narg > 0 && !is_keyword(arg[0])) model_file = arg[iarg++];
  set_kind = set_max_iter = set_memory = set_tol = set_adjoint_tol = set_beta = 0;
  reuse = REUSE_EXTRAPOLATE;
  nonconv_error = 0;
  device_name = "cpu";
  backend_name = "auto";
  min_dist = 0.1;
  num_threads = 0;
  edge_cache_mb = deqformer::NativeModel::DEFAULT_EDGE_CACHE_BYTES / double(1 << 20);
  while (iarg < narg) {
    if (!is_keyword(arg[iarg]))
      error->all(FLERR,
                 "Illegal pair_style deqformer command: unknown keyword '{}' (use tol, adjoint_tol, max_iter, "
                 "reuse, solver, memory, beta, nonconvergence, device, min_dist, backend, edge_cache or threads)",
                 arg[iarg]);
    if (iarg + 1 >= narg)
      error->all(FLERR, "Illegal pair_style deqformer command: keyword '{}' needs a value", arg[iarg]);
    std::string key = arg[iarg], val = arg[iarg + 1];
    if (key == "tol") {
      tol = utils::numeric(FLERR, arg[iarg + 1], false, lmp);
      if (tol <= 0.0) error->all(FLERR, "Illegal pair_style deqformer command: tol must be > 0");
      set_tol = 1;
    } else if (key == "adjoint_tol") {
      adjoint_tol = utils::numeric(FLERR, arg[iarg + 1], false, lmp);
      if (adjoint_tol <= 0.0) error->all(FLERR, "Illegal pair_style deqformer command: adjoint_tol must be > 0");
      set_adjoint_tol = 1;
    } else if (key == "max_iter") {
      max_iter = utils::inumeric(FLERR, arg[iarg + 1], false, lmp);
      if (max_iter < 1) error->all(FLERR, "Illegal pair_style deqformer command: max_iter must be >= 1");
      set_max_iter = 1;
    } else if (key == "memory") {
      solver_memory = utils::inumeric(FLERR, arg[iarg + 1], false, lmp);
      if (solver_memory < 1) error->all(FLERR, "Illegal pair_style deqformer command: memory must be >= 1");
      set_memory = 1;
    } else if (key == "beta") {
      beta = utils::numeric(FLERR, arg[iarg + 1], false, lmp);
      if (beta <= 0.0 || beta > 1.0)
        error->all(FLERR, "Illegal pair_style deqformer command: beta must be in (0, 1]");
      set_beta = 1;
    } else if (key == "reuse") {
      if (val == "yes" || val == "extrapolate")
        reuse = REUSE_EXTRAPOLATE;
      else if (val == "last")
        reuse = REUSE_LAST;
      else if (val == "no")
        reuse = REUSE_NO;
      else
        error->all(FLERR,
                   "Illegal pair_style deqformer command: reuse must be yes (= extrapolate), last or no, not '{}'",
                   val);
    } else if (key == "solver") {
      try {
        kind = deqformer::solver_code(val);
      } catch (deqformer::Error &e) {
        error->all(FLERR, "Illegal pair_style deqformer command: {}", e.what());
      }
      set_kind = 1;
    } else if (key == "nonconvergence") {
      if (val == "warn")
        nonconv_error = 0;
      else if (val == "error")
        nonconv_error = 1;
      else
        error->all(FLERR, "Illegal pair_style deqformer command: nonconvergence must be warn or error, not '{}'",
                   val);
    } else if (key == "device") {
      if (val != "cpu" && val != "cuda" && val.rfind("cuda:", 0) != 0)
        error->all(FLERR, "Illegal pair_style deqformer command: device must be cpu, cuda or cuda:N, not '{}'", val);
      device_name = val;
    } else if (key == "backend") {
      if (val != "native" && val != "torchscript")
        error->all(FLERR, "Illegal pair_style deqformer command: backend must be native or torchscript, not '{}'",
                   val);
      backend_name = val;
    } else if (key == "min_dist") {
      min_dist = utils::numeric(FLERR, arg[iarg + 1], false, lmp);
      if (min_dist < 0.0) error->all(FLERR, "Illegal pair_style deqformer command: min_dist must be >= 0");
    } else if (key == "edge_cache") {
      edge_cache_mb = utils::numeric(FLERR, arg[iarg + 1], false, lmp);
      if (edge_cache_mb < 0.0)
        error->all(FLERR, "Illegal pair_style deqformer command: edge_cache must be >= 0 (MB per process)");
    } else if (key == "threads") {
      num_threads = utils::inumeric(FLERR, arg[iarg + 1], false, lmp);
      if (num_threads < 1) error->all(FLERR, "Illegal pair_style deqformer command: threads must be >= 1");
    }
    iarg += 2;
  }
  // load the model now when it is named here: errors show at the pair_style command, and the
  // communication sizes are known before pair hybrid collects them from its sub-styles
  model.reset();
  if (!model_file.empty()) load_model(model_file);
}

/* ----------------------------------------------------------------------
   pair_coeff * * [model.pt] element_1 ... element_ntypes
------------------------------------------------------------------------- */

void PairDeqformer::coeff(int narg, char **arg)
{
  if (!allocated) allocate();
  const int ntypes = atom->ntypes;
  if (narg < 2 || strcmp(arg[0], "*") != 0 || strcmp(arg[1], "*") != 0)
    error->all(FLERR, "Incorrect args for pair coefficients: pair_style deqformer needs 'pair_coeff * * {}element "
                      "for each of the {} atom types'",
               model_file.empty() ? "model.pt " : "", ntypes);
  int iarg = 2;
  if (model_file.empty()) {
    // 'pair_coeff * * H C O' without a model anywhere
    if (narg < 3 || (narg == 2 + ntypes && !readable(arg[2])))
      error->all(FLERR, "Incorrect args for pair coefficients: no model file; give it in 'pair_style deqformer "
                        "model.pt' or as 'pair_coeff * * model.pt' followed by one element for each of the {} "
                        "atom types", ntypes);
    load_model(arg[iarg++]);
    // pair hybrid sized its communication before this sub-style knew its state size
    if (force->pair && force->pair != this) {
      force->pair->comm_forward = std::max(force->pair->comm_forward, comm_forward);
      force->pair->comm_reverse = std::max(force->pair->comm_reverse, comm_reverse);
    }
  }

  const int nelem = narg - iarg;
  if (nelem != ntypes) {
    std::string given;
    for (int i = iarg; i < narg; i++) given += std::string(" ") + arg[i];
    error->all(FLERR,
               "Incorrect args for pair coefficients: pair_coeff * * needs one element per atom type ({} types), "
               "got {}:{}; the model's elements are: {}",
               ntypes, nelem, given, model->type_names_joined());
  }
  const bool hybrid_sub = force->pair != this;
  for (int t = 1; t <= ntypes; t++) {
    const std::string e = arg[iarg + t - 1];
    if (e == "NULL") {
      if (!hybrid_sub)
        error->all(FLERR, "pair_coeff deqformer: element NULL (atom type {}) is only allowed when deqformer is a "
                          "pair_style hybrid sub-style", t);
      type_map[t] = -1;
      continue;
    }
    int idx = model->type_index(e);
    if (idx < 0)
      error->all(FLERR, "pair_coeff deqformer: element '{}' (atom type {}) is not in model '{}'; the model's "
                        "elements are: {}",
                 e, t, model->path(), model->type_names_joined());
    type_map[t] = idx;
  }
  int count = 0;
  for (int i = 1; i <= ntypes; i++)
    for (int j = i; j <= ntypes; j++) {
      setflag[i][j] = (type_map[i] >= 0 && type_map[j] >= 0) ? 1 : 0;
      if (setflag[i][j]) count++;
    }
  if (count == 0) error->all(FLERR, "Incorrect args for pair coefficients: no atom type maps to a model element");
}

void PairDeqformer::load_model(const std::string &file)
{
  try {
    model = std::make_unique<deqformer::Model>(file);
  } catch (deqformer::Error &e) {
    error->all(FLERR, "pair_style deqformer: {}", e.what());
  }
  select_device();
  select_backend();
  r_max = model->r_max();
  r_max_sq = r_max * r_max;
  state_dim = model->state_dim();
  comm_forward = state_dim;
  comm_reverse = state_dim;
  apply_settings();
  if (comm->me == 0)
    utils::logmesg(lmp,
                   "pair_style deqformer: model {} (contract {}, {} elements: {}, r_max {} A, state dim {}, {}), "
                   "solver {} tol {} adjoint_tol {} max_iter {} memory {} beta {}, reuse {}, device {}, backend {}, "
                   "LibTorch threads {}\n",
                   file, model->meta("contract_version"), model->num_types(), model->type_names_joined(), r_max,
                   state_dim, model->dtype_name(), deqformer::solver_name(kind), tol, adjoint_tol, max_iter, solver_memory,
                   beta, reuse_name(reuse), model->device().str(), backend_note, at::get_num_threads());
}

// keyword backend: native (hand-written C++ kernels, deqformer_native.h) where it supports the model and
// device, else the model file's TorchScript methods; the log says which and why
void PairDeqformer::select_backend()
{
  const std::string why = model->native_unsupported();
  if (backend_name == "native" && !why.empty())
    error->all(FLERR, "pair_style deqformer: backend native cannot run model '{}': {}; use backend torchscript",
               model->path(), why);
  if (backend_name == "torchscript" || !why.empty()) {
    use_native = 0;
    backend_note = backend_name == "torchscript" ? "torchscript" : "torchscript (native backend: " + why + ")";
    return;
  }
  try {
    model->native().set_edge_cache_bytes(static_cast<size_t>(edge_cache_mb * double(1 << 20)));
  } catch (deqformer::Error &e) {
    error->all(FLERR, "pair_style deqformer: {}; use backend torchscript", e.what());
  }
  use_native = 1;
  backend_note = fmt::format("native, edge cache {} MB", edge_cache_mb);
}

// keyword device: the model runs there; the graph is built on the host and moved, results come back
// to the host, and the states/adjoints are staged through host memory for every communication
void PairDeqformer::select_device()
{
  try {
    model->to(deqformer::parse_device(device_name, node_local_rank()));
  } catch (deqformer::Error &e) {
    error->all(FLERR, "pair_style deqformer: {}", e.what());
  }
  set_torch_threads(num_threads);
}

// keyword threads: LibTorch's intra-op threads of this process (0: leave LibTorch's own count, which
// follows OMP_NUM_THREADS)
void PairDeqformer::set_torch_threads(int n)
{
  if (n > 0 && at::get_num_threads() != n) at::set_num_threads(n);
}

int PairDeqformer::node_local_rank()
{
  MPI_Comm node;
  MPI_Comm_split_type(world, MPI_COMM_TYPE_SHARED, comm->me, MPI_INFO_NULL, &node);
  int rank = 0;
  MPI_Comm_rank(node, &rank);
  MPI_Comm_free(&node);
  return rank;
}

// model defaults, overridden by the keywords given to pair_style
void PairDeqformer::apply_settings()
{
  const deqformer::SolverSettings &d = model->default_settings();
  if (!set_kind) kind = d.kind;
  if (!set_tol) tol = d.tol;
  if (!set_adjoint_tol) adjoint_tol = set_tol ? tol : d.adjoint_tol;
  if (!set_max_iter) max_iter = d.max_iter;
  if (!set_memory) solver_memory = d.memory;
  if (!set_beta) beta = d.beta;
  lam = d.lam;
}

/* ---------------------------------------------------------------------- */

void PairDeqformer::init_style()
{
  if (!model) error->all(FLERR, "pair_style deqformer: no model loaded (pair_coeff * * [model.pt] elements...)");
  if (force->newton_pair == 0)
    error->all(FLERR, "pair_style {} requires newton pair on (the forces on ghost atoms are summed into their owners): {}",
               force->pair_style, newton_hint());
  const std::string units = update->unit_style;
  if (units == "metal")
    energy_factor = 1.0;
  else if (units == "real")    // LAMMPS's own eV -> kcal/mol, as for potential files converted to real units
    energy_factor = utils::get_conversion_factor(utils::ENERGY, utils::METAL2REAL);
  else
    error->all(FLERR, "pair_style deqformer: model '{}' uses eV and Angstrom; LAMMPS 'units {}' is not supported: "
                      "use units metal (or real, converted to kcal/mol)",
               model->path(), units);

#if DEQFORMER_LAMMPS_VERSION >= 20220324
  neighbor->add_request(this, NeighConst::REQ_FULL);
#else
  int irequest = neighbor->request(this, instance_me);
  neighbor->requests[irequest]->half = 0;
  neighbor->requests[irequest]->full = 1;
#endif
  comm_forward = state_dim;
  comm_reverse = state_dim;
  ensure_state_fix();
}

// the per-atom state store: created at the first init, reused by later runs while the state size
// matches; deleted with the pair style (a new pair_style command starts from zero states)
std::string PairDeqformer::state_fix_id()
{
  // a fixed ID (restart files find the fix by it); the 2nd, 3rd ... deqformer sub-style of a pair
  // hybrid gets a suffix
  std::string id = "DEQFORMER_STATE";
  if (force->pair != this) {
    std::vector<Pair *> subs;    // the deqformer sub-styles in order (pair_match repeats a single match)
    for (int k = 1;; k++) {
      Pair *p = force->pair_match("^deqformer", 0, k);
      if (!p || std::find(subs.begin(), subs.end(), p) != subs.end()) break;
      subs.push_back(p);
    }
    auto pos = std::find(subs.begin(), subs.end(), static_cast<Pair *>(this)) - subs.begin();
    if (pos > 0) id += "_" + std::to_string(pos + 1);
  }
  return id;
}

void PairDeqformer::ensure_state_fix()
{
  // no suffix: with -sf kk this host style still wants the host store; a restart file written by
  // deqformer/kk (in a LAMMPS running KOKKOS) has its states in a store of the Kokkos fix style
  std::vector<std::string> others;
  if (lmp->kokkos) others = {"DEQFORMER/STATE/kk/device", "DEQFORMER/STATE/kk/host"};
  fix_state = state_store("DEQFORMER/STATE", others);
}

FixDeqformerState *PairDeqformer::state_store(const std::string &style, const std::vector<std::string> &other_styles)
{
  fix_id = state_fix_id();
  auto command = [&](const std::string &fix_style) {
    return fix_id + " all " + fix_style + " " + std::to_string(state_dim);
  };
  int ifix = modify->find_fix(fix_id);
  if (ifix >= 0) {
    auto *f = dynamic_cast<FixDeqformerState *>(modify->fix[ifix]);
    if (f && style == f->style && f->dim() == state_dim) return f;
    modify->delete_fix(fix_id);    // another store (the other pair style, another state size): start from zero
  }
  // LAMMPS hands a restart file's per-atom record to a new fix of the same ID and style only: a store
  // of each other style receives the record if the file has one, and its rows move into the new store
  std::vector<double> rows;
  bigint steps[2] = {-1, -1};
  if (modify->nfix_restart_peratom > 0)
    for (const std::string &other : other_styles) {
      if (modify->fix_map->find(other) == modify->fix_map->end()) continue;
      auto *f = dynamic_cast<FixDeqformerState *>(modify->add_fix(command(other), 0));
      if (f && f->restart_reset) {
        rows = f->local_rows();
        f->history(steps);
      }
      modify->delete_fix(fix_id);
      if (!rows.empty()) break;
    }
  auto *f = dynamic_cast<FixDeqformerState *>(modify->add_fix(command(style), 0));
  if (!f) error->all(FLERR, "pair_style deqformer: could not create fix {} for its per-atom states", style);
  if (!rows.empty()) {
    f->set_local_rows(rows);
    f->set_history(steps);
  }
  return f;
}

double PairDeqformer::init_one(int i, int j)
{
  if (setflag[i][j] == 0) return 0.0;
  return r_max;
}

// called at the start of every run / minimization: reset the per-run statistics
void PairDeqformer::setup()
{
  stats[STAT_EVALS] = stats[STAT_NOT_CONVERGED] = 0.0;
  stats[STAT_MEAN_ITERS] = stats[STAT_MEAN_ADJ_ITERS] = 0.0;
  stats[STAT_TIME_FORWARD] = stats[STAT_TIME_ADJOINT] = stats[STAT_TIME_COMM] = 0.0;
  stats[STAT_TIME_EDGES] = stats[STAT_TIME_TOTAL] = 0.0;
  run_iters = run_adj_iters = 0.0;
}

/* ---------------------------------------------------------------------- */

void PairDeqformer::compute(int eflag, int vflag)
{
  ev_init(eflag, vflag);

  double **x = atom->x;
  double **f = atom->f;
  int *type = atom->type;
  const int nlocal = atom->nlocal;
  const int nall = nlocal + atom->nghost;
  const int D = state_dim;

  // ---- graph: full list, centres local, neighbours local or ghost, 0 < r < r_max
  std::vector<int64_t> types(nall);
  for (int i = 0; i < nall; i++) types[i] = graph_type(type_map[type[i]]);
  std::vector<int64_t> ei, ej;
  std::vector<double> vec;
  const int inum = list->inum;
  int *ilist = list->ilist;
  int *numneigh = list->numneigh;
  int **firstneigh = list->firstneigh;
  auto xs = [x](int a, int k) { return x[a][k]; };
  double d[3];
  for (int ii = 0; ii < inum; ii++) {
    const int i = ilist[ii];
    if (!is_model_atom(type_map[type[i]])) continue;
    const int *jlist = firstneigh[i];
    for (int jj = 0; jj < numneigh[i]; jj++) {
      const int j = jlist[jj] & NEIGHMASK;
      const double rsq = separation(xs, i, j, d);
      if (!is_edge(type_map[type[j]], rsq, r_max_sq)) continue;
      ei.push_back(i);
      ej.push_back(j);
      vec.insert(vec.end(), d, d + 3);
    }
  }
  const int64_t nedges = static_cast<int64_t>(ei.size());
  {
    BadGeometry bad;
    scan_geometry(xs, nlocal, inum, ilist, numneigh, [firstneigh](int a, int b) { return firstneigh[a][b]; }, bad);
    check_geometry(bad);
  }

  deqformer::Graph graph;
  graph.n_local = nlocal;
  graph.n_all = nall;
  graph.types = torch::from_blob(types.data(), {nall}, torch::kInt64).clone();
  auto eidx = torch::empty({2, nedges}, torch::kInt64);
  if (nedges > 0) {
    std::memcpy(eidx.data_ptr<int64_t>(), ei.data(), sizeof(int64_t) * nedges);
    std::memcpy(eidx.data_ptr<int64_t>() + nedges, ej.data(), sizeof(int64_t) * nedges);
  }
  graph.edge_index = eidx;
  graph.edge_vec = torch::from_blob(vec.data(), {nedges, 3}, torch::kFloat64).clone();

  // ---- start values from the per-atom store, in the model's dtype (undefined: the solve starts from zero)
  torch::Tensor z0, u0;
  double **st = fix_state->state;
  const int col_u = state_layout::u(D), col_zp = state_layout::z_prev(D), col_up = state_layout::u_prev(D);
  const bool float64 = model->dtype() == torch::kFloat64;
  if (reuse) {
    const bool extrapolate = extrapolate_now();
    z0 = torch::empty({nlocal, D}, torch::TensorOptions().dtype(model->dtype()));
    u0 = torch::empty_like(z0);
    with_float_type(float64, [&](auto zero) {
      using T = decltype(zero);
      T *zp = z0.data_ptr<T>(), *up = u0.data_ptr<T>();
      for (int i = 0; i < nlocal; i++) {
        const double flag = st[i][state_layout::FLAG];
        const int64_t row = static_cast<int64_t>(i) * D;
        for (int c = 0; c < D; c++) {
          zp[row + c] = static_cast<T>(
              state_layout::start_value(flag, extrapolate, st[i][state_layout::Z + c], st[i][col_zp + c]));
          up[row + c] = static_cast<T>(
              state_layout::start_value(flag, extrapolate, st[i][col_u + c], st[i][col_up + c]));
        }
      }
    });
  }

  const deqformer::DriverSettings ds = driver_settings();
  deqformer::Result res;
  run_driver(graph, z0, u0, ds, res);
  if (!model->device().is_cpu()) {    // device cuda: results to the host
    res.atomic_energy = res.atomic_energy.cpu();
    res.edge_grad = res.edge_grad.cpu();
    res.z = res.z.cpu();
    res.u = res.u.cpu();
  }

  // ---- energies, forces, virial
  const double *e_atom = res.atomic_energy.data_ptr<double>();
  for (int i = 0; i < nlocal; i++) {
    if (!is_model_atom(type_map[type[i]])) continue;
    const double e = energy_factor * e_atom[i];
    if (eflag_global) eng_vdwl += e;
    if (eflag_atom) eatom[i] += e;
  }
  const double *g = res.edge_grad.data_ptr<double>();
  for (int64_t k = 0; k < nedges; k++) {
    const int i = static_cast<int>(ei[k]), j = static_cast<int>(ej[k]);
    const double gk[3] = {energy_factor * g[3 * k], energy_factor * g[3 * k + 1], energy_factor * g[3 * k + 2]};
    for (int c = 0; c < 3; c++) {
      f[i][c] += gk[c];
      f[j][c] -= gk[c];
    }
    if ((vflag_global && !vflag_fdotr) || vflag_atom) {
      double w[6];
      edge_virial(&vec[3 * k], gk, w);
      if (vflag_global && !vflag_fdotr)
        for (int m = 0; m < 6; m++) virial[m] += w[m];
      if (vflag_atom)
        for (int m = 0; m < 6; m++) {
          vatom[i][m] += 0.5 * w[m];
          vatom[j][m] += 0.5 * w[m];
        }
    }
  }
  if (vflag_fdotr) virial_fdotr_compute();

  // ---- state for the next evaluation
  const bool new_step = fix_state->begin_store(update->ntimestep);
  with_float_type(float64, [&](auto zero) {
    using T = decltype(zero);
    const T *zs = res.z.data_ptr<T>();
    const T *us = res.u.data_ptr<T>();
    for (int i = 0; i < nlocal; i++) {
      const double flag = st[i][state_layout::FLAG];
      const int64_t row = static_cast<int64_t>(i) * D;
      for (int c = 0; c < D; c++) {
        state_layout::store_value(flag, new_step, zs[row + c], st[i][state_layout::Z + c], st[i][col_zp + c]);
        state_layout::store_value(flag, new_step, us[row + c], st[i][col_u + c], st[i][col_up + c]);
      }
      st[i][state_layout::FLAG] = state_layout::stored_flag(flag, new_step);
    }
  });

  record_stats(res, ds);
}

const char *PairDeqformer::reuse_name(int mode)
{
  return mode == REUSE_EXTRAPOLATE ? "extrapolate" : (mode == REUSE_LAST ? "last" : "no");
}

// Extrapolate from the stored fixed points when they come from the two steps just before this one of
// a dynamics run (not in a minimisation, whose steps are not equally spaced in anything).
bool PairDeqformer::extrapolate_now() const
{
  return reuse == REUSE_EXTRAPOLATE && update->whichflag == 1 && fix_state->consecutive_before(update->ntimestep);
}

deqformer::DriverSettings PairDeqformer::driver_settings() const
{
  deqformer::DriverSettings ds;
  ds.kind = kind;
  ds.tol = tol;
  ds.adjoint_tol = adjoint_tol;
  ds.max_iter = max_iter;
  ds.memory = solver_memory;
  ds.beta = beta;
  ds.lam = lam;
  ds.reuse = reuse != 0;
  ds.nonconvergence = nonconv_error ? deqformer::NonConvergence::ERROR : deqformer::NonConvergence::WARN;
  ds.backend = use_native ? deqformer::Backend::NATIVE : deqformer::Backend::TORCHSCRIPT;
  return ds;
}

void PairDeqformer::BadGeometry::pair(tagint ti, tagint tj, double rsq)
{
  ++close;
  const double r = std::sqrt(rsq);
  if (!(r >= close_r)) {    // also takes a NaN distance (a non-finite neighbour)
    close_r = r;
    close_i = std::min(ti, tj);
    close_j = std::max(ti, tj);
  }
}

void PairDeqformer::check_geometry(const BadGeometry &bad)
{
  bigint counts[2] = {bad.nonfinite, bad.close}, total[2] = {0, 0};
  MPI_Allreduce(counts, total, 2, MPI_LMP_BIGINT, MPI_SUM, world);
  if (total[0] == 0 && total[1] == 0) return;
  // the rank with the first non-finite atom / the closest pair tells the others which atoms they are
  struct {
    double value;
    int rank;
  } mine, best;
  mine.value = bad.nonfinite ? static_cast<double>(bad.nonfinite_tag) : 1e300;
  mine.rank = comm->me;
  MPI_Allreduce(&mine, &best, 1, MPI_DOUBLE_INT, MPI_MINLOC, world);
  tagint nonfinite_tag = bad.nonfinite_tag;
  MPI_Bcast(&nonfinite_tag, 1, MPI_LMP_TAGINT, best.rank, world);
  mine.value = std::isfinite(bad.close_r) ? bad.close_r : (bad.close ? -1.0 : 1e300);
  MPI_Allreduce(&mine, &best, 1, MPI_DOUBLE_INT, MPI_MINLOC, world);
  tagint pair_tags[2] = {bad.close_i, bad.close_j};
  double close_r = bad.close_r;
  MPI_Bcast(pair_tags, 2, MPI_LMP_TAGINT, best.rank, world);
  MPI_Bcast(&close_r, 1, MPI_DOUBLE, best.rank, world);
  if (total[0] > 0)
    error->all(FLERR, fmt::format("pair_style deqformer: {} atom(s) have a non-finite position (NaN or inf), "
                                  "first atom ID {}: the run has blown up or the input is broken; check the "
                                  "structure, the timestep and the thermostat",
                                  total[0], nonfinite_tag));
  error->all(FLERR, fmt::format("pair_style deqformer: atoms {} and {} are {:.4g} A apart ({} pair(s) closer "
                                "than min_dist = {} A, or on top of each other): overlapping atoms, for which the "
                                "model is not defined. Check the input for duplicated atoms; in a running "
                                "simulation this means it has blown up",
                                pair_tags[0], pair_tags[1], close_r, total[1] / 2, min_dist));
}

void PairDeqformer::run_driver(const deqformer::Graph &graph, const torch::Tensor &z0, const torch::Tensor &u0,
                               const deqformer::DriverSettings &ds, deqformer::Result &res)
{
  LammpsHalo halo(this, world);
  try {
    res = deqformer::solve_and_differentiate(*model, graph, ds, halo, z0, u0);
  } catch (deqformer::NotConverged &e) {
    // convergence is decided on global residuals: every process throws
    error->all(FLERR, "pair_style deqformer: {} (nonconvergence error; raise max_iter, loosen tol, or use "
                      "'nonconvergence warn')",
               e.what());
  } catch (std::exception &e) {
    error->one(FLERR, "pair_style deqformer: {}", e.what());
  }
  comm_tensor = nullptr;
}

void PairDeqformer::record_stats(const deqformer::Result &res, const deqformer::DriverSettings &ds)
{
  stats[STAT_ITERS] = res.forward.iters;
  stats[STAT_ADJ_ITERS] = res.adjoint.iters;
  stats[STAT_RESIDUAL] = res.forward.residual;
  stats[STAT_ADJ_RESIDUAL] = res.adjoint.residual;
  stats[STAT_EVALS] += 1.0;
  run_iters += res.forward.iters;
  run_adj_iters += res.adjoint.iters;
  stats[STAT_MEAN_ITERS] = run_iters / stats[STAT_EVALS];
  stats[STAT_MEAN_ADJ_ITERS] = run_adj_iters / stats[STAT_EVALS];
  stats[STAT_TIME_FORWARD] += res.time.forward;
  stats[STAT_TIME_ADJOINT] += res.time.adjoint;
  stats[STAT_TIME_COMM] += res.time.comm;
  stats[STAT_TIME_EDGES] += res.time.edge_features + res.time.edge_grad;
  stats[STAT_TIME_TOTAL] += res.time.total;
  if (!res.forward.converged || !res.adjoint.converged) {
    stats[STAT_NOT_CONVERGED] += 1.0;
    stats[STAT_NOT_CONVERGED_TOTAL] += 1.0;
    if (comm->me == 0 && nwarn < MAX_WARNINGS) {
      ++nwarn;
      error->warning(FLERR, "pair_style deqformer, step {}: {}; continuing with the best iterate{}",
                     update->ntimestep, deqformer::nonconvergence_message(res, ds),
                     nwarn == MAX_WARNINGS ? " (further warnings suppressed; see compute deqformer/solver)" : "");
    }
  }
}

/* ---------------------------------------------------------------------- */

void PairDeqformer::forward_state(void *tensor)
{
  auto *t = static_cast<torch::Tensor *>(tensor);
  torch::Tensor host;
  if (!t->is_cpu()) host = t->to(torch::kCPU);    // LAMMPS's host buffers pack host rows
  comm_tensor = host.defined() ? static_cast<void *>(&host) : tensor;
#if DEQFORMER_LAMMPS_VERSION >= 20220324
  comm->forward_comm(this);
#else
  comm->forward_comm_pair(this);
#endif
  if (host.defined()) t->copy_(host);
  comm_tensor = nullptr;
}

void PairDeqformer::reverse_state(void *tensor)
{
  auto *t = static_cast<torch::Tensor *>(tensor);
  torch::Tensor host;
  if (!t->is_cpu()) host = t->to(torch::kCPU);
  comm_tensor = host.defined() ? static_cast<void *>(&host) : tensor;
#if DEQFORMER_LAMMPS_VERSION >= 20220324
  comm->reverse_comm(this);
#else
  comm->reverse_comm_pair(this);
#endif
  if (host.defined()) t->copy_(host);
  comm_tensor = nullptr;
}

// rows list[0..n) (list given) or first..first+n-1 of comm_tensor <-> buf, by op (deqformer_pair_rules.h)
int PairDeqformer::comm_rows(int n, const int *list, int first, double *buf, int op)
{
  auto *t = static_cast<torch::Tensor *>(comm_tensor);
  const int D = state_dim;
  with_float_type(t->scalar_type() == torch::kFloat64, [&](auto zero) {
    using T = decltype(zero);
    T *rows = t->data_ptr<T>();
    int m = 0;
    for (int a = 0; a < n; a++) {
      T *r = rows + static_cast<int64_t>(list ? list[a] : first + a) * D;
      for (int k = 0; k < D; k++) row_op(op, r[k], buf[m++]);
    }
  });
  return n * D;
}

int PairDeqformer::pack_forward_comm(int n, int *list, double *buf, int /*pbc_flag*/, int * /*pbc*/)
{
  return comm_rows(n, list, 0, buf, ROW_PACK);
}

void PairDeqformer::unpack_forward_comm(int n, int first, double *buf)
{
  comm_rows(n, nullptr, first, buf, ROW_UNPACK);
}

int PairDeqformer::pack_reverse_comm(int n, int first, double *buf)
{
  return comm_rows(n, nullptr, first, buf, ROW_PACK);
}

void PairDeqformer::unpack_reverse_comm(int n, int *list, double *buf)
{
  comm_rows(n, list, 0, buf, ROW_ADD);
}

/* ---------------------------------------------------------------------- */

void *PairDeqformer::extract(const char *str, int &dim)
{
  static int nstats = NSTATS;
  dim = 0;
  if (strcmp(str, "deqformer/solver_stats") == 0) {
    dim = 1;
    return static_cast<void *>(stats);
  }
  if (strcmp(str, "deqformer/solver_nstats") == 0) return static_cast<void *>(&nstats);
  if (strcmp(str, "deqformer/r_max") == 0) return static_cast<void *>(&r_max);
  if (strcmp(str, "deqformer/tol") == 0) return static_cast<void *>(&tol);
  return nullptr;
}

double PairDeqformer::memory_usage()
{
  double bytes = Pair::memory_usage();
  bytes += static_cast<double>(atom->nmax) * state_dim * 2 * sizeof(double);    // z_all, v_all
  return bytes;
}
