// The native backend (deqformer_native.h) against the TorchScript methods of the same file, method by
// method, on local + ghost graphs of the test structures: float64 to 1e-12 relative, float32 to its
// rounding level. The driver-level tests (test_driver.cpp) run with both backends.
#include "deqformer_native.h"
#include "deqformer_solver.h"
#include "test_common.h"

#include <ATen/Parallel.h>
#include <gmock/gmock.h>

using deqformer::Model;
using deqformer::NativeModel;
using deqtest::RankGraph;
using deqtest::Structure;

namespace {

double g_worst = 0.0;    // largest difference seen by rel() in the running test

// max |a - b| / max |b| over all entries
double rel(const torch::Tensor &a, const torch::Tensor &b)
{
  EXPECT_EQ(a.sizes(), b.sizes());
  if (a.sizes() != b.sizes()) return 1.0;
  const double den = b.abs().max().item<double>();
  const double num = (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
  const double r = den > 0 ? num / den : num;
  g_worst = std::max(g_worst, r);
  return r;
}

struct Case {
  std::string name;
  RankGraph rank;
};

// the aspirin molecule and the periodic boxes split over 2 ranks: local rows plus ghost rows that belong
// to the other rank (and, in the boxes, to periodic images)
std::vector<Case> cases(double r_max)
{
  std::vector<Case> out;
  Structure mol = deqtest::read_xyz(deqtest::data_path("aspirin.xyz"));
  out.push_back({"molecule rank 0 of 2", deqtest::build_rank_graphs(mol, r_max, deqtest::owners_by_x(mol, 2), 2)[0]});
  Structure box = deqtest::read_lammps_data(deqtest::data_path("aspirin_box2.data"));
  out.push_back({"box2 rank 0 of 2", deqtest::build_rank_graphs(box, r_max, deqtest::owners_by_x(box, 2), 2)[0]});
  Structure tri = deqtest::read_lammps_data(deqtest::data_path("aspirin_tri2.data"));
  out.push_back({"tri2 rank 1 of 2", deqtest::build_rank_graphs(tri, r_max, deqtest::owners_by_x(tri, 2), 2)[1]});
  return out;
}

// every contract method, native against TorchScript, at random states and adjoints of typical size
void compare_methods(const std::string &file, double tol)
{
  Model m(file);
  g_worst = 0.0;
  ASSERT_EQ(m.native_unsupported(), "");
  NativeModel &nat = m.native();
  const auto dt = m.dtype();
  const int64_t d = m.state_dim();
  torch::manual_seed(7);
  int repulsive = 0;    // cases where the core repulsion acts
  for (const Case &c : cases(m.r_max())) {
    const auto &g = c.rank.graph;
    const int64_t n = g.n_local, n_all = g.n_all;
    const torch::Tensor vec = g.edge_vec.to(dt), types = g.types, ei = g.edge_index;
    ASSERT_GT(n_all, n) << c.name << ": the case needs ghost rows";
    const std::string what = c.name + " (" + file + ")";

    const torch::Tensor attr = m.edge_features(vec, types, ei);
    const torch::Tensor attr_n = nat.edge_features(vec, types, ei);
    EXPECT_LE(rel(attr_n, attr), tol) << what << ": edge_features";
    const torch::Tensor x = m.inject(types, ei, attr, n);
    EXPECT_LE(rel(nat.inject(types, ei, attr, n), x), tol) << what << ": inject";
    const torch::Tensor z = torch::randn({n_all, d}, torch::kFloat64).to(dt);
    const torch::Tensor u = torch::randn({n, d}, torch::kFloat64).to(dt);
    const torch::Tensor f = m.step(z, x, ei, attr, n);
    EXPECT_LE(rel(nat.step(z, x, ei, attr, n), f), tol) << what << ": step";
    const torch::Tensor tl = types.narrow(0, 0, n);
    EXPECT_LE(rel(nat.atomic_energy(z.narrow(0, 0, n), tl), m.atomic_energy(z.narrow(0, 0, n), tl)), tol)
        << what << ": atomic_energy";
    EXPECT_LE(rel(nat.energy_grad_z(z.narrow(0, 0, n), tl), m.energy_grad_z(z.narrow(0, 0, n), tl)), tol)
        << what << ": energy_grad_z";
    const torch::Tensor pe = m.pair_energy(vec, types, ei, n);
    repulsive += pe.abs().max().item<double>() > 0.0;
    EXPECT_LE(rel(nat.pair_energy(vec, types, ei, n), pe), tol) << what << ": pair_energy";
    EXPECT_LE(rel(nat.adjoint_step(z, x, ei, attr, u, n), m.adjoint_step(z, x, ei, attr, u, n)), tol)
        << what << ": adjoint_step";
    EXPECT_LE(rel(nat.edge_grad(z, u, types, ei, vec, n), m.edge_grad(z, u, types, ei, vec, n)), tol)
        << what << ": edge_grad";

    // the stateful path the driver uses gives the same numbers, with the per-edge work of the
    // linearization kept for none, some and all of the centres
    const torch::Tensor vjp_ref = m.adjoint_step(z, x, ei, attr, u, n);
    const torch::Tensor eg_ref = m.edge_grad(z, u, types, ei, vec, n);
    std::vector<size_t> held;
    for (const char *cache : {"none", "all", "half"}) {
      const std::string how = what + ", edge cache " + cache;
      const size_t half = held.size() == 2 ? (held[1] - held[0]) / 2 : 0;
      nat.set_edge_cache_bytes(cache == std::string("none") ? 0 : cache == std::string("all") ? SIZE_MAX : half);
      nat.prepare(vec, types, ei, n);
      EXPECT_LE(rel(nat.x(), x), tol) << how << ": prepare";
      EXPECT_LE(rel(nat.step(z), f), tol) << how << ": step (prepared)";
      nat.linearize(z);
      held.push_back(nat.bytes());
      EXPECT_LE(rel(nat.vjp(u), vjp_ref), tol) << how << ": vjp";
      EXPECT_LE(rel(nat.vjp(u), vjp_ref), tol) << how << ": vjp, again";
      EXPECT_LE(rel(nat.edge_grad(u), eg_ref), tol) << how << ": edge_grad (prepared)";
      nat.release();
    }
    EXPECT_LT(held[0], held[2]) << what << ": half the edge cache holds nothing";
    EXPECT_LT(held[2], held[1]) << what << ": half the edge cache holds everything";
  }
  nat.set_edge_cache_bytes(NativeModel::DEFAULT_EDGE_CACHE_BYTES);
  EXPECT_GT(repulsive, 0) << "no case reaches the core repulsion";
  std::printf("[ info ] %s: largest relative difference native vs TorchScript over all methods %.2e\n",
              file.c_str(), g_worst);
}

}    // namespace

class Native : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { at::set_num_threads(1); }
};

TEST_F(Native, EveryMethodMatchesTorchScriptFloat64) { compare_methods(deqtest::model_path("model_f64.pt"), 1e-12); }

TEST_F(Native, EveryMethodMatchesTorchScriptFloat32) { compare_methods(deqtest::model_path("model_f32.pt"), 2e-5); }

// The vector-Jacobian product is the transpose of the Jacobian: u . (J dz) = (J^T u) . dz, with J dz by
// central differences of step() (float64).
TEST_F(Native, VjpIsTheTransposedJacobian)
{
  Model m(deqtest::model_path("model_f64.pt"));
  NativeModel &nat = m.native();
  Structure box = deqtest::read_lammps_data(deqtest::data_path("aspirin_box2.data"));
  const auto g = deqtest::build_rank_graphs(box, m.r_max(), deqtest::owners_by_x(box, 2), 2)[0].graph;
  torch::manual_seed(11);
  nat.prepare(g.edge_vec, g.types, g.edge_index, g.n_local);
  const torch::Tensor z = torch::randn({g.n_all, m.state_dim()}, torch::kFloat64);
  const torch::Tensor u = torch::randn({g.n_local, m.state_dim()}, torch::kFloat64);
  const torch::Tensor dz = torch::randn_like(z);
  const double h = 1e-5;
  const torch::Tensor jdz = (nat.step(z + h * dz) - nat.step(z - h * dz)) / (2 * h);
  nat.linearize(z);
  const double lhs = (u * jdz).sum().item<double>();
  const double rhs = (nat.vjp(u) * dz).sum().item<double>();
  EXPECT_NEAR(lhs, rhs, 1e-7 * std::abs(rhs));
}

TEST_F(Native, UnsupportedModelsAreNamed)
{
  Model m(deqtest::model_path("model_dot.pt"));
  EXPECT_THAT(m.native_unsupported(), ::testing::HasSubstr("so2"));
  try {
    m.native();
    ADD_FAILURE() << "native() of an so2 / dot-attention model did not throw";
  } catch (const deqformer::Error &e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr("model_dot.pt"));
    EXPECT_THAT(e.what(), ::testing::HasSubstr("cannot run natively"));
  }
  // the driver refuses the native backend for it, and runs it through TorchScript
  Structure mol = deqtest::read_xyz(deqtest::data_path("aspirin.xyz"));
  auto rg = deqtest::build_rank_graphs(mol, m.r_max(), std::vector<int>(mol.size(), 0), 1)[0];
  deqformer::SerialHalo halo(std::vector<int64_t>(rg.ghost_atom.begin(), rg.ghost_atom.end()));
  deqformer::DriverSettings ds(m.default_settings());
  ds.backend = deqformer::Backend::NATIVE;
  EXPECT_THROW(deqformer::solve_and_differentiate(m, rg.graph, ds, halo), deqformer::Error);
  ds.backend = deqformer::Backend::TORCHSCRIPT;
  EXPECT_TRUE(std::isfinite(deqformer::solve_and_differentiate(m, rg.graph, ds, halo).energy));
}

// The native Anderson and Picard updates against the model's TorchScript solver_update, iteration by
// iteration on a contracting map (float64: 1e-12; the ridge keeps the Gram systems well posed).
TEST_F(Native, SolverUpdatesMatchTorchScript)
{
  Model m(deqtest::model_path("model_f64.pt"));
  torch::manual_seed(5);
  const int64_t n = 13, d = m.state_dim();
  const torch::Tensor a = 0.5 * torch::randn({n, d, d}, torch::kFloat64) / std::sqrt(double(d));
  const torch::Tensor c = torch::randn({n, d}, torch::kFloat64);
  auto f = [&](const torch::Tensor &z) { return torch::tanh(torch::bmm(a, z.unsqueeze(2)).squeeze(2) + c); };
  for (int kind : {deqformer::ANDERSON, deqformer::PICARD}) {
    for (int memory : {1, 3, 5}) {
      torch::Tensor zt = torch::zeros({n, d}, torch::kFloat64), zn = zt.clone();
      c10::IValue state = m.solver_init(zt, kind, memory);
      deqformer::NativeSolver ns(kind, n, d, memory);
      for (int k = 0; k < 12; ++k) {
        zt = m.solver_update(kind, zt, f(zt), state, k, 0.8, 1e-6);
        zn = ns.update(zn, f(zn), k, 0.8, 1e-6);
        ASSERT_LE(rel(zn, zt), 1e-12) << deqformer::solver_name(kind) << " memory " << memory << " k " << k;
      }
      EXPECT_LE(deqformer::max_relative_residual(zn, f(zn)), 1e-3) << "the map contracts";
      const torch::Tensor r = (f(zt) - zt).norm(2, {1}) / (f(zt).norm(2, {1}) + 1e-12);
      EXPECT_NEAR(deqformer::max_relative_residual(zt, f(zt)), r.max().item<double>(), 1e-14);
    }
  }
  EXPECT_FALSE(deqformer::NativeSolver::supports(deqformer::BROYDEN, 5));
  EXPECT_FALSE(deqformer::NativeSolver::supports(deqformer::ANDERSON, 40));
}
