// The C++ driver against the Python reference (deqformer.driver.solve_and_differentiate), and against
// itself split between fake "ranks" that run in lock-step threads with an exchange that copies rows
// between their tensors. Every test runs twice: with the TorchScript backend and with the native one.
#include "test_common.h"

#include <gmock/gmock.h>

#include <ATen/Parallel.h>
#include <condition_variable>
#include <cstdio>
#include <memory>
#include <mutex>
#include <thread>

using deqformer::DriverSettings;
using deqformer::Model;
using deqformer::Result;
using deqtest::RankGraph;
using deqtest::Ref;
using deqtest::Structure;
using deqtest::Totals;
using deqtest::rel_diff;

namespace {

const double TIGHT = 1e-12;

// the backend of the test being run (the suite's parameter)
deqformer::Backend g_backend = deqformer::Backend::TORCHSCRIPT;

DriverSettings tight_settings(const Model &m)
{
  DriverSettings s(m.default_settings());
  s.backend = g_backend;
  s.tol = TIGHT;
  s.adjoint_tol = TIGHT;
  s.max_iter = 100;
  return s;
}

// ----------------------------------------------------------------- fake multi-rank exchange
class Barrier {
 public:
  explicit Barrier(int n) : n_(n) {}
  void wait()
  {
    std::unique_lock<std::mutex> lock(m_);
    long gen = gen_;
    if (++count_ == n_) {
      count_ = 0;
      ++gen_;
      cv_.notify_all();
    } else {
      cv_.wait(lock, [&] { return gen != gen_; });
    }
  }

 private:
  std::mutex m_;
  std::condition_variable cv_;
  int n_, count_ = 0;
  long gen_ = 0;
};

// Shared by the ranks: where every rank's tensor of the current exchange is, and the copy plans.
struct FakeWorld {
  explicit FakeWorld(const std::vector<RankGraph> &ranks) :
      nranks(static_cast<int>(ranks.size())), barrier(nranks), bufs(nranks, nullptr), vals(nranks, 0.0)
  {
    // owner (rank, row) of every global atom
    std::map<int64_t, std::pair<int, int64_t>> where;
    for (int r = 0; r < nranks; ++r)
      for (size_t i = 0; i < ranks[r].local.size(); ++i) where[ranks[r].local[i]] = {r, static_cast<int64_t>(i)};
    // forward plan: rank r's ghost rows from rank q's local rows; reverse plan: the transpose
    fwd_dst.assign(nranks, std::vector<std::vector<int64_t>>(nranks));
    fwd_src = rev_dst = rev_src = fwd_dst;
    for (int r = 0; r < nranks; ++r) {
      const int64_t nl = static_cast<int64_t>(ranks[r].local.size());
      for (size_t g = 0; g < ranks[r].ghost_atom.size(); ++g) {
        auto w = where.at(ranks[r].ghost_atom[g]);
        fwd_dst[r][w.first].push_back(nl + static_cast<int64_t>(g));
        fwd_src[r][w.first].push_back(w.second);
        rev_dst[w.first][r].push_back(w.second);                   // owner's local row
        rev_src[w.first][r].push_back(nl + static_cast<int64_t>(g));    // ghost row on rank r
      }
    }
  }
  int nranks;
  Barrier barrier;
  std::vector<torch::Tensor *> bufs;
  std::vector<double> vals;
  // [receiver][sender] -> row lists
  std::vector<std::vector<std::vector<int64_t>>> fwd_dst, fwd_src, rev_dst, rev_src;
};

class FakeHalo : public deqformer::HaloExchange {
 public:
  FakeHalo(FakeWorld &w, int rank) : w_(w), rank_(rank) {}
  int forward_calls = 0, reverse_calls = 0;

  void forward(torch::Tensor &z) override
  {
    ++forward_calls;
    w_.bufs[rank_] = &z;
    w_.barrier.wait();
    for (int q = 0; q < w_.nranks; ++q) {
      const auto &dst = w_.fwd_dst[rank_][q];
      if (dst.empty()) continue;
      auto src = w_.bufs[q]->index_select(0, torch::tensor(w_.fwd_src[rank_][q], torch::kInt64));
      z.index_copy_(0, torch::tensor(dst, torch::kInt64), src);
    }
    w_.barrier.wait();
  }

  void reverse(torch::Tensor &v) override
  {
    ++reverse_calls;
    w_.bufs[rank_] = &v;
    w_.barrier.wait();
    for (int q = 0; q < w_.nranks; ++q) {
      const auto &dst = w_.rev_dst[rank_][q];
      if (dst.empty()) continue;
      auto src = w_.bufs[q]->index_select(0, torch::tensor(w_.rev_src[rank_][q], torch::kInt64));
      v.index_add_(0, torch::tensor(dst, torch::kInt64), src);
    }
    w_.barrier.wait();
  }

  double allreduce_max(double x) override
  {
    return reduce(x, [](double a, double b) { return std::max(a, b); });
  }
  double allreduce_sum(double x) override
  {
    return reduce(x, [](double a, double b) { return a + b; });
  }

 private:
  template <class Op> double reduce(double x, Op op)
  {
    w_.vals[rank_] = x;
    w_.barrier.wait();
    double r = w_.vals[0];
    for (int q = 1; q < w_.nranks; ++q) r = op(r, w_.vals[q]);
    w_.barrier.wait();
    return r;
  }
  FakeWorld &w_;
  int rank_;
};

// Runs the driver on every rank in its own thread (each with its own Model), returns global totals.
Totals run_ranks(const std::string &model_file, const Structure &s, const std::vector<int> &owner, int nranks,
                 const std::function<void(DriverSettings &)> &tweak = nullptr,
                 std::vector<Result> *results = nullptr)
{
  std::vector<std::unique_ptr<Model>> models;
  for (int r = 0; r < nranks; ++r) models.emplace_back(new Model(model_file));
  auto ranks = deqtest::build_rank_graphs(s, models[0]->r_max(), owner, nranks);
  FakeWorld world(ranks);
  std::vector<Result> res(nranks);
  std::vector<std::string> errors(nranks);
  std::vector<std::thread> threads;
  for (int r = 0; r < nranks; ++r)
    threads.emplace_back([&, r] {
      try {
        FakeHalo halo(world, r);
        DriverSettings ds = tight_settings(*models[r]);
        if (tweak) tweak(ds);
        res[r] = deqformer::solve_and_differentiate(*models[r], ranks[r].graph, ds, halo);
      } catch (const std::exception &e) {
        errors[r] = e.what();
      }
    });
  for (auto &t : threads) t.join();
  for (int r = 0; r < nranks; ++r) EXPECT_EQ(errors[r], "") << "rank " << r;
  Totals t;
  t.atomic_energy.assign(s.size(), 0.0);
  t.forces.assign(3 * s.size(), 0.0);
  for (int r = 0; r < nranks; ++r) {
    if (!errors[r].empty()) continue;
    deqtest::accumulate(ranks[r], res[r], t);
    EXPECT_EQ(res[r].forward.iters, res[0].forward.iters) << "ranks iterate in lock-step";
  }
  if (results) *results = res;
  return t;
}

// One process with periodic images as ghosts (SerialHalo).
Totals run_serial(Model &m, const Structure &s, const DriverSettings &ds, Result *out = nullptr,
                  const torch::Tensor &z0 = torch::Tensor(), const torch::Tensor &u0 = torch::Tensor())
{
  auto ranks = deqtest::build_rank_graphs(s, m.r_max(), std::vector<int>(s.size(), 0), 1);
  std::vector<int64_t> ghost_owner(ranks[0].ghost_atom.begin(), ranks[0].ghost_atom.end());
  deqformer::SerialHalo halo(ghost_owner);
  Result r = deqformer::solve_and_differentiate(m, ranks[0].graph, ds, halo, z0, u0);
  Totals t;
  t.atomic_energy.assign(s.size(), 0.0);
  t.forces.assign(3 * s.size(), 0.0);
  deqtest::accumulate(ranks[0], r, t);
  if (out) *out = r;
  return t;
}

void expect_matches_ref(const Totals &t, const Ref &ref, double tol, const std::string &what)
{
  EXPECT_LE(rel_diff({t.energy}, ref.at("energy")), tol) << what << " energy " << t.energy;
  EXPECT_LE(rel_diff(t.atomic_energy, ref.at("atomic_energy")), tol) << what << " atomic energies";
  EXPECT_LE(rel_diff(t.forces, ref.at("forces")), tol) << what << " forces";
  EXPECT_LE(rel_diff(t.virial, ref.at("virial")), tol) << what << " virial";
  std::printf("[ info ] %s: rel. diff. to Python: energy %.2e forces %.2e virial %.2e; iterations %d/%d "
              "(Python %g/%g)\n",
              what.c_str(), rel_diff({t.energy}, ref.at("energy")), rel_diff(t.forces, ref.at("forces")),
              rel_diff(t.virial, ref.at("virial")), t.iters, t.adjoint_iters, ref.at("solver_iters")[0],
              ref.at("adjoint_iters")[0]);
}

void expect_same(const Totals &a, const Totals &b, double tol, const std::string &what)
{
  EXPECT_LE(rel_diff({a.energy}, {b.energy}), tol) << what;
  EXPECT_LE(rel_diff(a.atomic_energy, b.atomic_energy), tol) << what;
  EXPECT_LE(rel_diff(a.forces, b.forces), tol) << what;
  EXPECT_LE(rel_diff(a.virial, b.virial), tol) << what;
  std::printf("[ info ] %s: rel. diff. energy %.2e forces %.2e\n", what.c_str(), rel_diff({a.energy}, {b.energy}),
              rel_diff(a.forces, b.forces));
}

}    // namespace

class Driver : public ::testing::TestWithParam<deqformer::Backend> {
 protected:
  static void SetUpTestSuite() { at::set_num_threads(1); }
  void SetUp() override { g_backend = GetParam(); }
};

INSTANTIATE_TEST_SUITE_P(Backend, Driver,
                         ::testing::Values(deqformer::Backend::TORCHSCRIPT, deqformer::Backend::NATIVE),
                         [](const ::testing::TestParamInfo<deqformer::Backend> &p) {
                           return p.param == deqformer::Backend::NATIVE ? "native" : "torchscript";
                         });

TEST_P(Driver, AspirinMoleculeMatchesPython)
{
  Model m(deqtest::model_path("model_f64.pt"));
  Structure s = deqtest::read_xyz(deqtest::data_path("aspirin.xyz"));
  Ref ref = deqtest::read_ref("aspirin_xyz");
  Result r;
  Totals t = run_serial(m, s, tight_settings(m), &r);
  expect_matches_ref(t, ref, 1e-10, "aspirin molecule, float64");
  EXPECT_EQ(t.iters, ref.at("solver_iters")[0]);
  EXPECT_EQ(t.adjoint_iters, ref.at("adjoint_iters")[0]);
  EXPECT_TRUE(r.forward.converged);
  EXPECT_TRUE(r.adjoint.converged);
  EXPECT_LT(r.forward.residual, TIGHT);
  EXPECT_EQ(r.z.size(0), 21);
  EXPECT_EQ(r.z.size(1), 40);
  EXPECT_EQ(r.z.scalar_type(), torch::kFloat64);
  EXPECT_GT(r.time.total, 0.0);
  std::printf("[ info ] timings (s): edge features %.4f forward %.4f energy %.4f adjoint %.4f edge_grad %.4f "
              "comm %.5f total %.4f\n",
              r.time.edge_features, r.time.forward, r.time.energy, r.time.adjoint, r.time.edge_grad, r.time.comm,
              r.time.total);
}

TEST_P(Driver, OtherSolversMatchPython)
{
  Model m(deqtest::model_path("model_f64.pt"));
  Structure s = deqtest::read_xyz(deqtest::data_path("aspirin.xyz"));
  DriverSettings broyden = tight_settings(m);
  broyden.kind = deqformer::BROYDEN;
  broyden.memory = 20;    // restarts less often: converges to 1e-12 (memory 5 stalls near 1e-8)
  expect_matches_ref(run_serial(m, s, broyden), deqtest::read_ref("aspirin_xyz_broyden"), 1e-10, "broyden");
  DriverSettings picard = tight_settings(m);
  picard.kind = deqformer::PICARD;
  picard.beta = 0.7;
  expect_matches_ref(run_serial(m, s, picard), deqtest::read_ref("aspirin_xyz_picard"), 1e-10, "picard");
}

TEST_P(Driver, Float32ModelMatchesPython)
{
  Model m(deqtest::model_path("model_f32.pt"));
  Structure s = deqtest::read_xyz(deqtest::data_path("aspirin.xyz"));
  DriverSettings ds = tight_settings(m);
  ds.tol = ds.adjoint_tol = 1e-5;
  Result r;
  Totals t = run_serial(m, s, ds, &r);
  // same algorithm in single precision; summation order differs -> float32 rounding level
  expect_matches_ref(t, deqtest::read_ref("aspirin_xyz_f32"), 1e-4, "aspirin molecule, float32");
  EXPECT_EQ(r.atomic_energy.scalar_type(), torch::kFloat64);    // double on the outside
  EXPECT_LE(rel_diff(t.forces, deqtest::read_ref("aspirin_xyz").at("forces")), 1e-3);
}

TEST_P(Driver, PeriodicBoxMatchesPython)
{
  Model m(deqtest::model_path("model_f64.pt"));
  Structure s = deqtest::read_lammps_data(deqtest::data_path("aspirin_box2.data"));
  expect_matches_ref(run_serial(m, s, tight_settings(m)), deqtest::read_ref("box2"), 1e-10, "box2, 1 process");
  Structure tri = deqtest::read_lammps_data(deqtest::data_path("aspirin_tri2.data"));
  expect_matches_ref(run_serial(m, tri, tight_settings(m)), deqtest::read_ref("tri2"), 1e-10, "tri2, 1 process");
}

TEST_P(Driver, FakeRanksMatchOneRank)
{
  const std::string file = deqtest::model_path("model_f64.pt");
  for (const char *name : {"box2", "tri2"}) {
    Structure s = deqtest::read_lammps_data(deqtest::data_path(std::string("aspirin_") + name + ".data"));
    Ref ref = deqtest::read_ref(name);
    Totals one = run_ranks(file, s, std::vector<int>(s.size(), 0), 1);
    expect_matches_ref(one, ref, 1e-10, std::string(name) + ", 1 fake rank");
    for (int n : {2, 4}) {
      std::vector<Result> res;
      Totals t = run_ranks(file, s, deqtest::owners_by_x(s, n), n, nullptr, &res);
      expect_same(t, one, 1e-10, std::string(name) + ", " + std::to_string(n) + " fake ranks vs 1");
      expect_matches_ref(t, ref, 1e-10, std::string(name) + ", " + std::to_string(n) + " fake ranks");
      EXPECT_EQ(t.iters, one.iters);
      EXPECT_EQ(t.adjoint_iters, one.adjoint_iters);
    }
  }
}

TEST_P(Driver, FakeRankWithoutAtoms)
{
  const std::string file = deqtest::model_path("model_f64.pt");
  Structure s = deqtest::read_lammps_data(deqtest::data_path("aspirin_box2.data"));
  // 3 ranks: rank 1 owns nothing (it still takes part in every exchange and reduction)
  std::vector<int> owner = deqtest::owners_by_x(s, 2);
  for (auto &o : owner) o = o == 1 ? 2 : 0;
  std::vector<Result> res;
  Totals t = run_ranks(file, s, owner, 3, nullptr, &res);
  EXPECT_EQ(res[1].atomic_energy.numel(), 0);
  EXPECT_EQ(res[1].forward.iters, res[0].forward.iters);
  expect_matches_ref(t, deqtest::read_ref("box2"), 1e-10, "box2, 3 fake ranks, one empty");
}

TEST_P(Driver, ReuseGivesSameAnswerInFewerIterations)
{
  Model m(deqtest::model_path("model_f64.pt"));
  Structure s = deqtest::read_lammps_data(deqtest::data_path("aspirin_box2.data"));
  DriverSettings ds = tight_settings(m);
  Result cold;
  Totals t_cold = run_serial(m, s, ds, &cold);
  Result warm;
  Totals t_warm = run_serial(m, s, ds, &warm, cold.z, cold.u);
  expect_same(t_warm, t_cold, 1e-10, "reuse of z*, u* at the same geometry");
  EXPECT_LT(warm.forward.iters, cold.forward.iters);
  EXPECT_LT(warm.adjoint.iters, cold.adjoint.iters);
  // a slightly moved geometry (one MD step): the stored state still helps
  Structure moved = s;
  for (size_t i = 0; i < moved.size(); ++i)
    for (int d = 0; d < 3; ++d) moved.pos[i][d] += 0.002 * std::sin(1.7 * i + d);
  Result cold2, warm2;
  Totals c2 = run_serial(m, moved, ds, &cold2);
  Totals w2 = run_serial(m, moved, ds, &warm2, cold.z, cold.u);
  expect_same(w2, c2, 1e-9, "reuse after a small displacement");
  EXPECT_LT(warm2.forward.iters, cold2.forward.iters);
  std::printf("[ info ] iterations forward/adjoint: cold %d/%d, reused (same geometry) %d/%d, moved cold %d/%d, "
              "moved reused %d/%d\n",
              cold.forward.iters, cold.adjoint.iters, warm.forward.iters, warm.adjoint.iters, cold2.forward.iters,
              cold2.adjoint.iters, warm2.forward.iters, warm2.adjoint.iters);
  // reuse off ignores the start values
  DriverSettings off = ds;
  off.reuse = false;
  Result r_off;
  run_serial(m, s, off, &r_off, cold.z, cold.u);
  EXPECT_EQ(r_off.forward.iters, cold.forward.iters);
}

TEST_P(Driver, NonConvergencePolicy)
{
  Model m(deqtest::model_path("model_f64.pt"));
  Structure s = deqtest::read_xyz(deqtest::data_path("aspirin.xyz"));
  DriverSettings ds = tight_settings(m);
  ds.max_iter = 3;
  Result r;
  run_serial(m, s, ds, &r);    // WARN: returns the best iterate
  EXPECT_FALSE(r.forward.converged);
  EXPECT_FALSE(r.adjoint.converged);
  EXPECT_EQ(r.forward.iters, 3);
  EXPECT_GT(r.forward.residual, TIGHT);
  EXPECT_THAT(deqformer::nonconvergence_message(r, ds), ::testing::HasSubstr("forward solve did not converge: 3 "
                                                                             "iterations"));
  ds.nonconvergence = deqformer::NonConvergence::ERROR;
  try {
    run_serial(m, s, ds);
    FAIL() << "no exception";
  } catch (const deqformer::NotConverged &e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr("forward solve did not converge"));
  }
}

TEST_P(Driver, EnergyOnly)
{
  Model m(deqtest::model_path("model_f64.pt"));
  Structure s = deqtest::read_xyz(deqtest::data_path("aspirin.xyz"));
  DriverSettings ds = tight_settings(m);
  ds.compute_forces = false;
  auto ranks = deqtest::build_rank_graphs(s, m.r_max(), std::vector<int>(s.size(), 0), 1);
  deqformer::SerialHalo halo;
  Result r = deqformer::solve_and_differentiate(m, ranks[0].graph, ds, halo);
  EXPECT_LE(rel_diff({r.energy}, deqtest::read_ref("aspirin_xyz").at("energy")), 1e-10);
  EXPECT_FALSE(r.edge_grad.defined());
  EXPECT_EQ(r.adjoint.iters, 0);
}

TEST(SerialHalo, ForwardCopiesReverseAdds)
{
  deqformer::SerialHalo halo({1, 0, 1});    // 2 local atoms, ghosts are images of 1, 0, 1
  auto z = torch::arange(10, torch::kFloat64).reshape({5, 2});
  halo.forward(z);
  EXPECT_TRUE(torch::equal(z[2], z[1]));
  EXPECT_TRUE(torch::equal(z[3], z[0]));
  EXPECT_TRUE(torch::equal(z[4], z[1]));
  auto v = torch::ones({5, 2}, torch::kFloat32);
  halo.reverse(v);
  EXPECT_FLOAT_EQ(v[0][0].item<float>(), 2.0f);
  EXPECT_FLOAT_EQ(v[1][1].item<float>(), 3.0f);
  EXPECT_FLOAT_EQ(v[4][0].item<float>(), 1.0f);    // ghost rows untouched
}
