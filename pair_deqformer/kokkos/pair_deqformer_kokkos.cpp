/* ----------------------------------------------------------------------
   pair_style deqformer/kk: KOKKOS variant of pair_style deqformer.

   PairDeqformer provides the keywords, the model, the driver call (run_driver), the statistics and
   the host communication; this file provides the Kokkos data path: graph construction from the
   Kokkos neighbor list into views handed to LibTorch with torch::from_blob, the per-atom state in a
   DualView, the halo exchange of states and adjoints on the execution space, and forces, energies
   and virials computed in Kokkos kernels that read the result tensors in place.
------------------------------------------------------------------------- */

#include "pair_deqformer_kokkos.h"
#include "deqformer_lammps_version.h"

#include "deqformer_driver.h"
#include "fix_deqformer_state_kokkos.h"

#include "atom_kokkos.h"
#include "atom_masks.h"
#include "comm_kokkos.h"
#include "error.h"
#include "force.h"
#include "kokkos.h"
#include "memory_kokkos.h"
#include "modify.h"
#include "neigh_list_kokkos.h"
#include "neigh_request.h"
#include "neighbor.h"
#include "update.h"

#include <ATen/Parallel.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include <string>

using namespace LAMMPS_NS;
using namespace deqformer::pair_rules;

namespace {

template <class DeviceType, class T>
using Unmanaged = Kokkos::View<T *, DeviceType, Kokkos::MemoryTraits<Kokkos::Unmanaged>>;

// ---------------------------------------------------------------- CommKokkos's swap plan
// LAMMPS 29Sep2021 has a device path for forward pair communication only (and uses it only when the
// execution space is a device), so the pair style runs the swap loop itself, in both directions and on
// every backend, with the plan CommKokkos built in borders(): for swap s, sendnum[s] atoms
// sendlist(s, .) go to sendproc[s] and recvnum[s] ghosts arrive from recvproc[s] into rows
// firstrecv[s] ... The plan is protected in CommBrick / CommKokkos; it is read (never changed)
// through pointers to members formed in this derived class, which the access rules allow.
// Later LAMMPS versions reverse-communicate pair data on the device themselves (reverse_comm_device),
// but they also changed the KOKKOS pair API this style is written against; this file is built for
// LAMMPS before that change only (patch_lammps.sh and the plugin's CMakeLists.txt check the version).
#if DEQFORMER_LAMMPS_VERSION >= 20220324
#error "pair_style deqformer/kk is written against the KOKKOS API of LAMMPS 29Sep2021: use pair_style deqformer"
#endif
struct SwapPlan {
  int nswap = 0;
  const int *sendnum = nullptr, *recvnum = nullptr, *sendproc = nullptr, *recvproc = nullptr,
            *firstrecv = nullptr;
  DAT::tdual_int_2d *sendlist = nullptr;
};

struct SwapPlanReader : CommKokkos {
  static SwapPlan read(CommKokkos &c)
  {
    SwapPlan p;
    p.nswap = c.*(&SwapPlanReader::nswap);
    p.sendnum = c.*(&SwapPlanReader::sendnum);
    p.recvnum = c.*(&SwapPlanReader::recvnum);
    p.sendproc = c.*(&SwapPlanReader::sendproc);
    p.recvproc = c.*(&SwapPlanReader::recvproc);
    p.firstrecv = c.*(&SwapPlanReader::firstrecv);
    p.sendlist = &(c.*(&SwapPlanReader::k_sendlist));
    return p;
  }
};

// ---------------------------------------------------------------- graph kernels
// the edge rule of deqformer_pair_rules.h on the Kokkos neighbor list
template <class DeviceType> struct EdgeRule {
  typedef ArrayTypes<DeviceType> AT;
  typename AT::t_x_array x;
  typename AT::t_int_1d type;
  Kokkos::View<int *, DeviceType> type_map;
  typename AT::t_int_1d ilist, numneigh;
  typename AT::t_neighbors_2d neighbors;
  double rsq_max;

  KOKKOS_INLINE_FUNCTION int model_type(int i) const { return type_map(type(i)); }
  KOKKOS_INLINE_FUNCTION bool centre(int i) const { return is_model_atom(model_type(i)); }
  KOKKOS_INLINE_FUNCTION bool edge(int i, int jj, int &j, double d[3]) const
  {
    j = neighbors(i, jj) & NEIGHMASK;
    return is_edge(model_type(j), separation(x, i, j, d), rsq_max);
  }
};

// local centres with a non-finite position, and overlapping model pairs: counted here, named on the host
// by PairDeqformer::scan_geometry when there are any
template <class DeviceType> struct CountBadGeometry {
  EdgeRule<DeviceType> rule;
  double min_sq;
  typedef int64_t value_type;
  KOKKOS_INLINE_FUNCTION void operator()(const int ii, int64_t &nbad) const
  {
    const int i = rule.ilist(ii);
    if (!is_finite_position(rule.x(i, 0), rule.x(i, 1), rule.x(i, 2))) ++nbad;
    if (!rule.centre(i)) return;
    double d[3];
    const int nn = rule.numneigh(i);
    for (int jj = 0; jj < nn; jj++) {
      const int j = rule.neighbors(i, jj) & NEIGHMASK;
      if (is_model_atom(rule.model_type(j)) && is_overlap(separation(rule.x, i, j, d), min_sq)) ++nbad;
    }
  }
};

template <class DeviceType> struct CountEdges {
  EdgeRule<DeviceType> rule;
  Kokkos::View<int64_t *, DeviceType> offsets;
  KOKKOS_INLINE_FUNCTION void operator()(const int ii) const
  {
    const int i = rule.ilist(ii);
    int64_t n = 0;
    if (rule.centre(i)) {
      int j;
      double d[3];
      const int nn = rule.numneigh(i);
      for (int jj = 0; jj < nn; jj++)
        if (rule.edge(i, jj, j, d)) ++n;
    }
    offsets(ii) = n;
  }
};

// in place: counts -> first edge of each centre (exclusive prefix sum)
template <class DeviceType> struct ScanEdges {
  typedef int64_t value_type;
  Kokkos::View<int64_t *, DeviceType> offsets;
  KOKKOS_INLINE_FUNCTION void operator()(const int ii, int64_t &update, const bool final) const
  {
    const int64_t count = offsets(ii);
    if (final) offsets(ii) = update;
    update += count;
  }
};

// the same edges in the order of the list (deterministic, independent of the thread count)
template <class DeviceType> struct FillEdges {
  EdgeRule<DeviceType> rule;
  Kokkos::View<int64_t *, DeviceType> offsets, edge_index;
  Kokkos::View<double *, DeviceType> edge_vec;
  int64_t nedges;
  KOKKOS_INLINE_FUNCTION void operator()(const int ii) const
  {
    const int i = rule.ilist(ii);
    if (!rule.centre(i)) return;
    int64_t k = offsets(ii);
    int j;
    double d[3];
    const int nn = rule.numneigh(i);
    for (int jj = 0; jj < nn; jj++)
      if (rule.edge(i, jj, j, d)) {
        edge_index(k) = i;
        edge_index(nedges + k) = j;
        for (int c = 0; c < 3; c++) edge_vec(3 * k + c) = d[c];
        ++k;
      }
  }
};

template <class DeviceType> struct ModelTypes {
  typename ArrayTypes<DeviceType>::t_int_1d type;
  Kokkos::View<int *, DeviceType> type_map;
  Kokkos::View<int64_t *, DeviceType> types;
  KOKKOS_INLINE_FUNCTION void operator()(const int i) const { types(i) = graph_type(type_map(type(i))); }
};

// ---------------------------------------------------------------- results -> LAMMPS
template <class DeviceType> struct AtomEnergies {
  typedef double value_type;
  Unmanaged<DeviceType, const double> e;
  typename ArrayTypes<DeviceType>::t_int_1d type;
  Kokkos::View<int *, DeviceType> type_map;
  typename ArrayTypes<DeviceType>::t_efloat_1d eatom;
  double factor;
  int per_atom;
  KOKKOS_INLINE_FUNCTION void operator()(const int i, double &sum) const
  {
    if (!is_model_atom(type_map(type(i)))) return;
    const double v = factor * e(i);
    sum += v;
    if (per_atom) eatom(i) += v;
  }
};

// F_i += g_e, F_j -= g_e for e = (i <- j), g = dE/d(r_j - r_i); the virial W_e of edge_virial
template <class DeviceType> struct EdgeForces {
  typedef EV_FLOAT value_type;
  Unmanaged<DeviceType, const int64_t> edge_index;
  Unmanaged<DeviceType, const double> grad;
  Kokkos::View<double *, DeviceType> edge_vec;
  typename ArrayTypes<DeviceType>::t_f_array f;
  typename ArrayTypes<DeviceType>::t_virial_array vatom;
  int64_t nedges;
  double factor;
  int virial_global, virial_atom;
  KOKKOS_INLINE_FUNCTION void operator()(const int e, EV_FLOAT &ev) const
  {
    const int i = static_cast<int>(edge_index(e));
    const int j = static_cast<int>(edge_index(nedges + e));
    const double g[3] = {factor * grad(3 * e), factor * grad(3 * e + 1), factor * grad(3 * e + 2)};
    for (int d = 0; d < 3; d++) {
      Kokkos::atomic_add(&f(i, d), g[d]);
      Kokkos::atomic_add(&f(j, d), -g[d]);
    }
    if (virial_global || virial_atom) {
      const double r[3] = {edge_vec(3 * e), edge_vec(3 * e + 1), edge_vec(3 * e + 2)};
      double w[6];
      edge_virial(r, g, w);
      if (virial_global)
        for (int m = 0; m < 6; m++) ev.v[m] += w[m];
      if (virial_atom)
        for (int m = 0; m < 6; m++) {
          Kokkos::atomic_add(&vatom(i, m), 0.5 * w[m]);
          Kokkos::atomic_add(&vatom(j, m), 0.5 * w[m]);
        }
    }
  }
};

// ---------------------------------------------------------------- per-atom state (deqformer_pair_rules.h)
// start values of value idx = i * dim + c of the [nlocal, D] z0 and u0 (model dtype T) from the stored rows
template <class DeviceType, class T> struct StartValues {
  typename ArrayTypes<DeviceType>::t_double_2d state;
  Unmanaged<DeviceType, T> z0, u0;
  int dim;
  bool extrapolate;
  KOKKOS_INLINE_FUNCTION void operator()(const int idx) const
  {
    const int i = idx / dim, c = idx - i * dim;
    const double flag = state(i, state_layout::FLAG);
    z0(idx) = static_cast<T>(state_layout::start_value(flag, extrapolate, state(i, state_layout::Z + c),
                                                       state(i, state_layout::z_prev(dim) + c)));
    u0(idx) = static_cast<T>(state_layout::start_value(flag, extrapolate, state(i, state_layout::u(dim) + c),
                                                       state(i, state_layout::u_prev(dim) + c)));
  }
};

// the new fixed point and adjoint (model dtype T) of atom i into its row (one thread per atom: the flag
// changes last)
template <class DeviceType, class T> struct StoreValues {
  typename ArrayTypes<DeviceType>::t_double_2d state;
  Unmanaged<DeviceType, const T> z, u;
  int dim;
  bool new_step;
  KOKKOS_INLINE_FUNCTION void operator()(const int i) const
  {
    const double flag = state(i, state_layout::FLAG);
    for (int c = 0; c < dim; c++) {
      const int64_t k = static_cast<int64_t>(i) * dim + c;
      state_layout::store_value(flag, new_step, z(k), state(i, state_layout::Z + c),
                                state(i, state_layout::z_prev(dim) + c));
      state_layout::store_value(flag, new_step, u(k), state(i, state_layout::u(dim) + c),
                                state(i, state_layout::u_prev(dim) + c));
    }
    state(i, state_layout::FLAG) = state_layout::stored_flag(flag, new_step);
  }
};

// ---------------------------------------------------------------- communication kernel
// buffer value idx = a * dim + k <-> value k of row list(iswap, a) (with a list) or first + a (without)
// of the [N_all, D] tensor being communicated (model dtype T), moved by op (deqformer_pair_rules.h).
// A send list has no repeated atom, so ROW_ADD needs no atomics.
template <class DeviceType, class T> struct CommRows {
  Unmanaged<DeviceType, T> rows;
  typename ArrayTypes<DeviceType>::t_int_2d list;
  typename ArrayTypes<DeviceType>::t_xfloat_1d buf;
  int use_list, iswap, first, dim, op;
  KOKKOS_INLINE_FUNCTION void operator()(const int idx) const
  {
    const int a = idx / dim, k = idx - a * dim;
    const int64_t row = use_list ? list(iswap, a) : first + a;
    row_op(op, rows(row * dim + k), buf(idx));
  }
};

// the LibTorch device of a Kokkos execution space: host backends -> CPU, CUDA -> the GPU Kokkos
// uses (LAMMPS picks it from the node-local MPI rank, -k on g N)
template <class DeviceType> torch::Device torch_device_of()
{
#ifdef KOKKOS_ENABLE_CUDA
  if (std::is_same<typename DeviceType::execution_space, Kokkos::Cuda>::value)
    return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(Kokkos::Cuda().cuda_device()));
#endif
  if (Kokkos::SpaceAccessibility<Kokkos::HostSpace, typename DeviceType::memory_space>::accessible)
    return torch::Device(torch::kCPU);
  throw deqformer::Error(std::string("no LibTorch device for the Kokkos execution space ") +
                         DeviceType::execution_space::name() +
                         " (pair_style deqformer/kk supports the Serial, OpenMP and CUDA backends)");
}

// a tensor's rows as a flat Kokkos view (the tensor must be contiguous, on the view's device)
template <class DeviceType, class T> Unmanaged<DeviceType, T> flat(const torch::Tensor &t)
{
  return Unmanaged<DeviceType, T>(t.data_ptr<typename std::remove_const<T>::type>(), static_cast<size_t>(t.numel()));
}

}    // namespace

/* ---------------------------------------------------------------------- */

template <class DeviceType>
PairDeqformerKokkos<DeviceType>::PairDeqformerKokkos(LAMMPS *lmp) :
    PairDeqformer(lmp), neighflag(FULL), torch_device(torch::kCPU), fix_state_kk(nullptr), edge_capacity(0)
{
  respa_enable = 0;
  kokkosable = 1;
  atomKK = (AtomKokkos *) atom;
  execution_space = ExecutionSpaceFromDevice<DeviceType>::space;
  datamask_read = X_MASK | F_MASK | TYPE_MASK | ENERGY_MASK | VIRIAL_MASK;
  datamask_modify = F_MASK | ENERGY_MASK | VIRIAL_MASK;
}

template <class DeviceType> PairDeqformerKokkos<DeviceType>::~PairDeqformerKokkos()
{
  if (copymode) return;
  memoryKK->destroy_kokkos(k_eatom, eatom);
  memoryKK->destroy_kokkos(k_vatom, vatom);
  eatom = nullptr;
  vatom = nullptr;
  fix_state_kk = nullptr;    // PairDeqformer's destructor deletes the store
}

/* ----------------------------------------------------------------------
   the model runs where Kokkos runs; LibTorch's CPU threads follow Kokkos's host threads unless the
   keyword threads says otherwise
------------------------------------------------------------------------- */

template <class DeviceType> void PairDeqformerKokkos<DeviceType>::select_device()
{
  if (device_name != "cpu" && comm->me == 0)
    error->warning(FLERR, "pair_style deqformer/kk: keyword 'device {}' ignored: the model runs in the memory of "
                          "the Kokkos execution space",
                   device_name);
  try {
    torch_device = torch_device_of<DeviceType>();
    model->to(torch_device);
  } catch (deqformer::Error &e) {
    error->all(FLERR, "pair_style deqformer/kk: {}", e.what());
  }
  int threads = 0;
  if (torch_device.is_cpu()) {
    threads = num_threads > 0 ? num_threads : typename DeviceType::execution_space().concurrency();
    set_torch_threads(threads);
  }
  if (comm->me == 0)
    utils::logmesg(lmp, "pair_style deqformer/kk: Kokkos {} ({} threads) -> LibTorch device {}{}\n",
                   DeviceType::execution_space::name(), typename DeviceType::execution_space().concurrency(),
                   torch_device.str(),
                   threads > 0 ? ", LibTorch intra-op threads " + std::to_string(threads) : std::string());
}

// the store in a DualView (fix DEQFORMER/STATE/kk/device or /host, after DeviceType); a restart file of
// pair_style deqformer has its states in a store of fix DEQFORMER/STATE
template <class DeviceType> void PairDeqformerKokkos<DeviceType>::ensure_state_fix()
{
  const bool host = std::is_same<DeviceType, LMPHostType>::value && !std::is_same<DeviceType, LMPDeviceType>::value;
  fix_state = state_store(host ? "DEQFORMER/STATE/kk/host" : "DEQFORMER/STATE/kk/device", {"DEQFORMER/STATE"});
  fix_state_kk = dynamic_cast<FixDeqformerStateKokkos<DeviceType> *>(fix_state);
  if (!fix_state_kk) error->all(FLERR, "pair_style deqformer/kk: fix {} is not a Kokkos store", fix_state->style);
}

/* ---------------------------------------------------------------------- */

template <class DeviceType> void PairDeqformerKokkos<DeviceType>::init_style()
{
  PairDeqformer::init_style();    // checks (newton pair on), full neighbor request, communication sizes, state store

  neighflag = lmp->kokkos->neighflag;
  if (neighflag != FULL && neighflag != HALF && neighflag != HALFTHREAD)
    error->all(FLERR, "pair_style deqformer/kk: unsupported KOKKOS neighbor setting; use '-pk kokkos neigh full' "
                      "(or half)");
  // whatever the package setting, this style gets its own full list (local centres, no ghost centres)
  const int irequest = neighbor->nrequest - 1;
  neighbor->requests[irequest]->kokkos_host =
      std::is_same<DeviceType, LMPHostType>::value && !std::is_same<DeviceType, LMPDeviceType>::value;
  neighbor->requests[irequest]->kokkos_device = std::is_same<DeviceType, LMPDeviceType>::value;
  neighbor->requests[irequest]->full = 1;
  neighbor->requests[irequest]->half = 0;
  neighbor->requests[irequest]->ghost = 0;

  if (comm->me == 0)
    utils::logmesg(lmp, "pair_style deqformer/kk: states and adjoints communicated {}\n",
                   device_comm() ? "by Kokkos pack/unpack kernels on the execution space"
                                 : "by LAMMPS's host communication (-pk kokkos comm no/host, or comm_style tiled)");

  const int ntypes = atom->ntypes;
  d_type_map = Kokkos::View<int *, DeviceType>("deqformer/kk:type_map", ntypes + 1);
  auto h_type_map = Kokkos::create_mirror_view(d_type_map);
  for (int t = 0; t <= ntypes; t++) h_type_map(t) = type_map[t];
  Kokkos::deep_copy(d_type_map, h_type_map);
}

/* ---------------------------------------------------------------------- */

template <class DeviceType> void PairDeqformerKokkos<DeviceType>::sync_torch()
{
  if (torch_device.is_cuda()) torch::cuda::synchronize(torch_device.index());
}

template <class DeviceType> void PairDeqformerKokkos<DeviceType>::compute(int eflag_in, int vflag_in)
{
  eflag = eflag_in;
  vflag = vflag_in;
  ev_init(eflag, vflag, 0);

  // per-atom energy / virial arrays: reallocated only when the atom arrays grew
  if (eflag_atom) {
    if ((int) k_eatom.extent(0) < maxeatom) {
      memoryKK->destroy_kokkos(k_eatom, eatom);
      memoryKK->create_kokkos(k_eatom, eatom, maxeatom, "pair:eatom");
    }
    d_eatom = k_eatom.template view<DeviceType>();
    Kokkos::deep_copy(d_eatom, 0.0);
  }
  if (vflag_atom) {
    if ((int) k_vatom.extent(0) < maxvatom) {
      memoryKK->destroy_kokkos(k_vatom, vatom);
      memoryKK->create_kokkos(k_vatom, vatom, maxvatom, "pair:vatom");
    }
    d_vatom = k_vatom.template view<DeviceType>();
    Kokkos::deep_copy(d_vatom, 0.0);
  }

  atomKK->sync(execution_space, datamask_read);
  if (eflag || vflag)
    atomKK->modified(execution_space, datamask_modify);
  else
    atomKK->modified(execution_space, F_MASK);
  x = atomKK->k_x.template view<DeviceType>();
  f = atomKK->k_f.template view<DeviceType>();
  type = atomKK->k_type.template view<DeviceType>();

  const int nlocal = atom->nlocal;
  const int nall = nlocal + atom->nghost;
  const int D = state_dim;
  const int inum = list->inum;
  auto *k_list = static_cast<NeighListKokkos<DeviceType> *>(list);

  // ---- graph in Kokkos views (capacities grow only)
  if ((int64_t) d_types.extent(0) < nall)
    d_types = Kokkos::View<int64_t *, DeviceType>("deqformer/kk:types", std::max(atom->nmax, nall));
  if ((int64_t) d_offsets.extent(0) < inum + 1)
    d_offsets = Kokkos::View<int64_t *, DeviceType>("deqformer/kk:offsets", std::max(atom->nmax, inum) + 1);
  Kokkos::parallel_for("deqformer/kk:types", Kokkos::RangePolicy<DeviceType>(0, nall),
                       ModelTypes<DeviceType>{type, d_type_map, d_types});

  EdgeRule<DeviceType> rule{x, type, d_type_map, k_list->d_ilist, k_list->d_numneigh, k_list->d_neighbors, r_max_sq};
  {
    int64_t nbad = 0;
    Kokkos::parallel_reduce("deqformer/kk:geometry", Kokkos::RangePolicy<DeviceType>(0, inum),
                            CountBadGeometry<DeviceType>{rule, min_dist * min_dist}, nbad);
    BadGeometry bad;
    if (nbad > 0) {    // rare: name the atoms from host copies of the positions and the list
      atomKK->sync(Host, X_MASK | TYPE_MASK | TAG_MASK);
      auto h_x = atomKK->k_x.h_view;
      auto h_ilist = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), k_list->d_ilist);
      auto h_numneigh = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), k_list->d_numneigh);
      auto h_neighbors = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), k_list->d_neighbors);
      scan_geometry([h_x](int a, int d) { return h_x(a, d); }, nlocal, inum, h_ilist.data(), h_numneigh.data(),
                    [h_neighbors](int a, int b) { return h_neighbors(a, b); }, bad);
    }
    check_geometry(bad);
  }
  Kokkos::parallel_for("deqformer/kk:count_edges", Kokkos::RangePolicy<DeviceType>(0, inum),
                       CountEdges<DeviceType>{rule, d_offsets});
  int64_t nedges = 0;
  Kokkos::parallel_scan("deqformer/kk:scan_edges", Kokkos::RangePolicy<DeviceType>(0, inum),
                        ScanEdges<DeviceType>{d_offsets}, nedges);
  if (nedges > edge_capacity || edge_capacity == 0) {
    edge_capacity = std::max<int64_t>(16, nedges + nedges / 4);    // headroom for the next steps
    d_edge_index = Kokkos::View<int64_t *, DeviceType>("deqformer/kk:edge_index", 2 * edge_capacity);
    d_edge_vec = Kokkos::View<double *, DeviceType>("deqformer/kk:edge_vec", 3 * edge_capacity);
  }
  Kokkos::parallel_for("deqformer/kk:fill_edges", Kokkos::RangePolicy<DeviceType>(0, inum),
                       FillEdges<DeviceType>{rule, d_offsets, d_edge_index, d_edge_vec, nedges});
  DeviceType().fence();

  // ---- the views as LibTorch tensors (no copy: same memory, device and strides)
  const auto iopt = torch::TensorOptions().dtype(torch::kInt64).device(torch_device);
  const auto dopt = torch::TensorOptions().dtype(torch::kFloat64).device(torch_device);
  deqformer::Graph graph;
  graph.n_local = nlocal;
  graph.n_all = nall;
  graph.types = torch::from_blob(d_types.data(), {nall}, iopt);
  graph.edge_index = torch::from_blob(d_edge_index.data(), {2, nedges}, iopt);
  graph.edge_vec = torch::from_blob(d_edge_vec.data(), {nedges, 3}, dopt);

  // ---- start values from the rows of the state store (zero where no state is stored)
  auto d_state = fix_state_kk->view();
  const bool float64 = model->dtype() == torch::kFloat64;
  torch::Tensor z0, u0;
  if (reuse && nlocal > 0) {
    z0 = torch::empty({nlocal, D}, torch::TensorOptions().dtype(model->dtype()).device(torch_device));
    u0 = torch::empty_like(z0);
    const bool extrapolate = extrapolate_now();
    with_float_type(float64, [&](auto zero) {
      using T = decltype(zero);
      Kokkos::parallel_for("deqformer/kk:start_values", Kokkos::RangePolicy<DeviceType>(0, nlocal * D),
                           StartValues<DeviceType, T>{d_state, flat<DeviceType, T>(z0), flat<DeviceType, T>(u0), D,
                                                      extrapolate});
    });
    DeviceType().fence();
  }

  const deqformer::DriverSettings ds = driver_settings();
  deqformer::Result res;
  run_driver(graph, z0, u0, ds, res);
  sync_torch();

  // ---- energies, forces, virials from the result tensors, in place
  const torch::Tensor e_atom = res.atomic_energy.contiguous();
  const torch::Tensor grad = res.edge_grad.contiguous();
  if (e_atom.device() != torch_device || grad.device() != torch_device)
    error->one(FLERR, "pair_style deqformer/kk: the model returned tensors on {} instead of {}",
               e_atom.device().str(), torch_device.str());

  double energy = 0.0;
  Kokkos::parallel_reduce("deqformer/kk:energies", Kokkos::RangePolicy<DeviceType>(0, nlocal),
                          AtomEnergies<DeviceType>{flat<DeviceType, const double>(e_atom), type, d_type_map,
                                                   d_eatom, energy_factor, eflag_atom},
                          energy);
  if (eflag_global) eng_vdwl += energy;

  EV_FLOAT ev;
  const int virial_global = vflag_global && !vflag_fdotr;
  Kokkos::parallel_reduce("deqformer/kk:forces", Kokkos::RangePolicy<DeviceType>(0, static_cast<int>(nedges)),
                          EdgeForces<DeviceType>{Unmanaged<DeviceType, const int64_t>(d_edge_index.data(), 2 * nedges),
                                                 flat<DeviceType, const double>(grad), d_edge_vec, f, d_vatom,
                                                 nedges, energy_factor, virial_global, vflag_atom},
                          ev);
  if (virial_global)
    for (int m = 0; m < 6; m++) virial[m] += ev.v[m];
  if (vflag_fdotr) pair_virial_fdotr_compute(this);

  if (eflag_atom) {
    k_eatom.template modify<DeviceType>();
    k_eatom.template sync<LMPHostType>();
  }
  if (vflag_atom) {
    k_vatom.template modify<DeviceType>();
    k_vatom.template sync<LMPHostType>();
  }

  // ---- z*, u* into the store for the next evaluation
  const bool new_step = fix_state->begin_store(update->ntimestep);
  if (nlocal > 0) {
    const torch::Tensor zs = res.z.contiguous(), us = res.u.contiguous();
    with_float_type(float64, [&](auto zero) {
      using T = decltype(zero);
      Kokkos::parallel_for("deqformer/kk:store_values", Kokkos::RangePolicy<DeviceType>(0, nlocal),
                           StoreValues<DeviceType, T>{d_state, flat<DeviceType, const T>(zs),
                                                      flat<DeviceType, const T>(us), D, new_step});
    });
    DeviceType().fence();
  }
  sync_torch();
  fix_state_kk->modified();

  record_stats(res, ds);
}

/* ----------------------------------------------------------------------
   halo exchange of states (forward) and adjoints (reverse)
------------------------------------------------------------------------- */

template <class DeviceType> bool PairDeqformerKokkos<DeviceType>::device_comm()
{
  return dynamic_cast<CommKokkos *>(comm) != nullptr && !lmp->kokkos->forward_pair_comm_classic;
}

template <class DeviceType> void PairDeqformerKokkos<DeviceType>::forward_state(void *tensor)
{
  auto *t = static_cast<torch::Tensor *>(tensor);
  if (!device_comm() || t->device() != torch_device || !t->is_contiguous()) {
    PairDeqformer::forward_state(tensor);    // LAMMPS's host communication (staged if on a GPU)
    return;
  }
  sync_torch();
  comm_tensor = tensor;
  swap_loop(false);
  comm_tensor = nullptr;
}

template <class DeviceType> void PairDeqformerKokkos<DeviceType>::reverse_state(void *tensor)
{
  auto *t = static_cast<torch::Tensor *>(tensor);
  if (!device_comm() || t->device() != torch_device || !t->is_contiguous()) {
    PairDeqformer::reverse_state(tensor);
    return;
  }
  sync_torch();
  comm_tensor = tensor;
  swap_loop(true);
  comm_tensor = nullptr;
}

template <class DeviceType> void PairDeqformerKokkos<DeviceType>::grow_comm_buffers(int nvals)
{
  if ((int) k_cbuf_send.extent(0) >= nvals && k_cbuf_send.extent(0) > 0) return;
  const int n = std::max(16, nvals + nvals / 4);
  k_cbuf_send = DAT::tdual_xfloat_1d("deqformer/kk:comm_send", n);
  k_cbuf_recv = DAT::tdual_xfloat_1d("deqformer/kk:comm_recv", n);
}

// one MPI exchange of the buffers: device pointers where MPI may use them (host memory, or GPU-aware
// MPI), else staged through the host copies of the DualViews
template <class DeviceType>
void PairDeqformerKokkos<DeviceType>::exchange_buffers(int send_vals, int dest, int recv_vals, int source)
{
  const bool direct = Kokkos::SpaceAccessibility<Kokkos::HostSpace, typename DeviceType::memory_space>::accessible ||
      lmp->kokkos->gpu_aware_flag;
  double *sbuf, *rbuf;
  if (direct) {
    sbuf = k_cbuf_send.template view<DeviceType>().data();
    rbuf = k_cbuf_recv.template view<DeviceType>().data();
  } else {
    k_cbuf_send.template modify<DeviceType>();
    k_cbuf_send.template sync<LMPHostType>();
    sbuf = k_cbuf_send.h_view.data();
    rbuf = k_cbuf_recv.h_view.data();
  }
  MPI_Request request;
  if (recv_vals) MPI_Irecv(rbuf, recv_vals, MPI_DOUBLE, source, 0, world, &request);
  if (send_vals) MPI_Send(sbuf, send_vals, MPI_DOUBLE, dest, 0, world);
  if (recv_vals) MPI_Wait(&request, MPI_STATUS_IGNORE);
  if (!direct) {
    k_cbuf_recv.template modify<LMPHostType>();
    k_cbuf_recv.template sync<DeviceType>();
  }
}

template <class DeviceType> void PairDeqformerKokkos<DeviceType>::swap_loop(bool reverse)
{
  SwapPlan plan = SwapPlanReader::read(*static_cast<CommKokkos *>(comm));
  plan.sendlist->template sync<DeviceType>();
  const int D = state_dim;
  int most = 0;
  for (int s = 0; s < plan.nswap; s++) most = std::max(most, std::max(plan.sendnum[s], plan.recvnum[s]));
  grow_comm_buffers(most * D);

  if (!reverse) {
    for (int s = 0; s < plan.nswap; s++) {
      const int n = pack_forward_comm_kokkos(plan.sendnum[s], *plan.sendlist, s, k_cbuf_send, 0, nullptr);
      DeviceType().fence();
      DAT::tdual_xfloat_1d *src = &k_cbuf_send;    // a swap with itself: periodic images
      if (plan.sendproc[s] != comm->me) {
        exchange_buffers(n, plan.sendproc[s], D * plan.recvnum[s], plan.recvproc[s]);
        src = &k_cbuf_recv;
      }
      unpack_forward_comm_kokkos(plan.recvnum[s], plan.firstrecv[s], *src);
      DeviceType().fence();
    }
  } else {
    for (int s = plan.nswap - 1; s >= 0; s--) {
      const int n = pack_reverse_comm_kokkos(plan.recvnum[s], plan.firstrecv[s], k_cbuf_send);
      DeviceType().fence();
      DAT::tdual_xfloat_1d *src = &k_cbuf_send;
      if (plan.sendproc[s] != comm->me) {
        exchange_buffers(n, plan.recvproc[s], D * plan.sendnum[s], plan.sendproc[s]);
        src = &k_cbuf_recv;
      }
      unpack_reverse_comm_kokkos(plan.sendnum[s], *plan.sendlist, s, *src);
      DeviceType().fence();
    }
  }
}

template <class DeviceType>
int PairDeqformerKokkos<DeviceType>::comm_rows_kokkos(const char *label, int n, DAT::tdual_int_2d *list, int iswap,
                                                      int first, DAT::tdual_xfloat_1d &buf, int op)
{
  const torch::Tensor &t = *static_cast<torch::Tensor *>(comm_tensor);
  const int D = state_dim;
  typename AT::t_int_2d l;
  if (list) l = list->template view<DeviceType>();
  auto b = buf.template view<DeviceType>();
  with_float_type(t.scalar_type() == torch::kFloat64, [&](auto zero) {
    using T = decltype(zero);
    Kokkos::parallel_for(label, Kokkos::RangePolicy<DeviceType>(0, n * D),
                         CommRows<DeviceType, T>{flat<DeviceType, T>(t), l, b, list != nullptr, iswap, first, D, op});
  });
  return n * D;
}

template <class DeviceType>
int PairDeqformerKokkos<DeviceType>::pack_forward_comm_kokkos(int n, DAT::tdual_int_2d list, int iswap,
                                                              DAT::tdual_xfloat_1d &buf, int /*pbc_flag*/,
                                                              int * /*pbc*/)
{
  return comm_rows_kokkos("deqformer/kk:pack_forward", n, &list, iswap, 0, buf, ROW_PACK);
}

template <class DeviceType>
void PairDeqformerKokkos<DeviceType>::unpack_forward_comm_kokkos(int n, int first, DAT::tdual_xfloat_1d &buf)
{
  comm_rows_kokkos("deqformer/kk:unpack_forward", n, nullptr, 0, first, buf, ROW_UNPACK);
}

template <class DeviceType>
int PairDeqformerKokkos<DeviceType>::pack_reverse_comm_kokkos(int n, int first, DAT::tdual_xfloat_1d &buf)
{
  return comm_rows_kokkos("deqformer/kk:pack_reverse", n, nullptr, 0, first, buf, ROW_PACK);
}

template <class DeviceType>
void PairDeqformerKokkos<DeviceType>::unpack_reverse_comm_kokkos(int n, DAT::tdual_int_2d list, int iswap,
                                                                 DAT::tdual_xfloat_1d &buf)
{
  comm_rows_kokkos("deqformer/kk:unpack_reverse", n, &list, iswap, 0, buf, ROW_ADD);
}

/* ---------------------------------------------------------------------- */

template <class DeviceType> double PairDeqformerKokkos<DeviceType>::memory_usage()
{
  double bytes = PairDeqformer::memory_usage();
  bytes += static_cast<double>(d_types.extent(0) + d_offsets.extent(0)) * sizeof(int64_t);
  bytes += static_cast<double>(edge_capacity) * (2 * sizeof(int64_t) + 3 * sizeof(double));
  bytes += static_cast<double>(k_cbuf_send.extent(0) + k_cbuf_recv.extent(0)) * sizeof(double);
  return bytes;
}

namespace LAMMPS_NS {
template class PairDeqformerKokkos<LMPDeviceType>;
#ifdef LMP_KOKKOS_GPU
template class PairDeqformerKokkos<LMPHostType>;
#endif
}    // namespace LAMMPS_NS
