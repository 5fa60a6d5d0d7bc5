// pair_style deqformer inside LAMMPS, through the C++ library interface.
//
//   Serial*    (run with 1 MPI rank) energies, per-atom energies, forces, virials against the Python
//              reference; units real; pair hybrid; reuse on/off; restart continuity; finite differences;
//              error messages for bad input.
//   Parallel*  (run with 4 MPI ranks) the same structure on sub-communicators of 1, 2 and 4 ranks
//              (orthogonal, triclinic, a slab where ranks own no atoms, and a short MD run with
//              migration and sorting) must agree to 1e-10.
#include "lammps_harness.h"
#include "variable.h"

#include <ATen/Parallel.h>
#include <gmock/gmock.h>

#include <memory>
#include <tuple>

using LAMMPS_NS::LAMMPS;
using ::testing::HasSubstr;

namespace {
using namespace deqtest;

int world_rank = 0, world_size = 1;


std::string model(const std::string &f = "model_f64.pt") { return deqtest::model_path(f); }
std::string data(const std::string &f) { return deqtest::data_path(f); }

// LAMMPS started plainly (the harness's Sim, run_lammps_on, lammps_error_with)
Snapshot run_on(int nprocs, const std::function<Snapshot(Sim &)> &body) { return run_lammps_on(nprocs, {}, body); }
std::string lammps_error(const std::vector<std::string> &lines) { return lammps_error_with({}, lines); }

using deqtest::rel_diff;

void expect_vs_ref(const Snapshot &s, const deqtest::Ref &ref, double tol, const std::string &what)
{
  ASSERT_EQ(s.error, "") << what;
  EXPECT_LE(rel_diff({s.energy}, ref.at("energy")), tol) << what;
  EXPECT_LE(rel_diff(s.eatom, ref.at("atomic_energy")), tol) << what;
  EXPECT_LE(rel_diff(s.f, ref.at("forces")), tol) << what;
  EXPECT_LE(rel_diff(s.virial, ref.at("virial")), tol) << what;
  EXPECT_LE(rel_diff(s.vatom, ref.at("atom_virial")), tol) << what;
  if (world_rank == 0)
    std::printf("[ info ] %s vs Python: energy %.1e, per-atom energy %.1e, forces %.1e, virial %.1e, per-atom "
                "virial %.1e; iterations %g/%g (Python %g/%g)\n",
                what.c_str(), rel_diff({s.energy}, ref.at("energy")), rel_diff(s.eatom, ref.at("atomic_energy")),
                rel_diff(s.f, ref.at("forces")), rel_diff(s.virial, ref.at("virial")),
                rel_diff(s.vatom, ref.at("atom_virial")), s.stats[STAT_ITERS], s.stats[STAT_ADJ_ITERS],
                ref.at("solver_iters")[0], ref.at("adjoint_iters")[0]);
}

Snapshot single_point(int nprocs, const std::string &datafile, const std::vector<std::string> &before_data = {},
                      const std::string &style_args = TIGHT, const std::string &units = "metal")
{
  return single_point_with(nprocs, {}, datafile, style_args, "model_f64.pt", units, before_data);
}

}    // namespace

// =====================================================================================================
// serial
// =====================================================================================================

TEST(Serial, MoleculeMatchesPython)
{
  expect_vs_ref(single_point(1, "aspirin_1.data"), deqtest::read_ref("aspirin_1"), 1e-8, "aspirin in a 30 A box");
}

TEST(Serial, PeriodicBoxesMatchPython)
{
  expect_vs_ref(single_point(1, "aspirin_box2.data"), deqtest::read_ref("box2"), 1e-8, "box2 (9.5 A cube)");
  expect_vs_ref(single_point(1, "aspirin_tri2.data"), deqtest::read_ref("tri2"), 1e-8, "tri2 (triclinic)");
}

// The native backend keeps none, part or all of the linearization's per-edge work (keyword edge_cache):
// the results are the same.
TEST(Serial, EdgeCacheOfAnySize)
{
  for (const std::string mb : {"0", "0.05", "1000"})
    expect_vs_ref(single_point(1, "aspirin_box2.data", {}, std::string(TIGHT) + " edge_cache " + mb),
                  deqtest::read_ref("box2"), 1e-8, "box2, edge_cache " + mb + " MB");
}

TEST(Serial, UnitsReal)
{
  expect_vs_ref(single_point(1, "aspirin_1.data", {}, TIGHT, "real"), deqtest::read_ref("aspirin_1_real"), 1e-8,
                "aspirin, units real");
}

TEST(Serial, Float32Model)
{
  // the float32 model (communication packs floats) against the float64 reference
  Snapshot s = run_on(1, [&](Sim &sim) {
    auto lines = setup_commands("aspirin_box2.data");
    lines[5] = "pair_style deqformer " + model("model_f32.pt") + " tol 1e-5";
    sim.cmds(lines);
    sim.cmd("run 0");
    return gather(sim);
  });
  ASSERT_EQ(s.error, "");
  const auto ref = deqtest::read_ref("box2");
  EXPECT_LE(rel_diff(s.f, ref.at("forces")), 1e-3);
  EXPECT_LE(rel_diff({s.energy}, ref.at("energy")), 1e-5);
  std::printf("[ info ] float32 model vs float64 reference: energy %.1e forces %.1e\n",
              rel_diff({s.energy}, ref.at("energy")), rel_diff(s.f, ref.at("forces")));
}

TEST(Serial, HybridOverlayWithZero)
{
  // through pair hybrid the global virial is tallied per edge (no fdotr)
  Snapshot s = run_on(1, [&](Sim &sim) {
    auto lines = setup_commands("aspirin_box2.data");
    lines[5] = "pair_style hybrid/overlay deqformer " + model() + " " + TIGHT + " zero 4.0";
    lines[6] = "pair_coeff * * deqformer H C O";
    lines.insert(lines.begin() + 7, "pair_coeff * * zero");
    sim.cmds(lines);
    sim.cmd("run 0");
    return gather(sim);
  });
  expect_vs_ref(s, deqtest::read_ref("box2"), 1e-8, "box2 under hybrid/overlay");
}

TEST(Serial, HybridNullElement)
{
  // NULL is accepted as a hybrid sub-style: the carbons get no deqformer energy
  Snapshot s = run_on(1, [&](Sim &sim) {
    auto lines = setup_commands("aspirin_1.data");
    lines[5] = "pair_style hybrid deqformer " + model() + " " + TIGHT + " zero 4.0";
    lines[6] = "pair_coeff * * deqformer H NULL O";
    lines.insert(lines.begin() + 7, "pair_coeff 1 2 zero");
    lines.insert(lines.begin() + 8, "pair_coeff 2 2 zero");
    lines.insert(lines.begin() + 9, "pair_coeff 2 3 zero");
    sim.cmds(lines);
    sim.cmd("run 0");
    return gather(sim);
  });
  ASSERT_EQ(s.error, "");
  for (int i = 4; i < 13; i++) EXPECT_EQ(s.eatom[i], 0.0) << "carbon atom " << i + 1;    // atoms 5-13 are C
  EXPECT_NE(s.eatom[0], 0.0);
}

TEST(Serial, ModelInPairCoeff)
{
  // pair_style deqformer + pair_coeff * * model.pt elements (Allegro's form)
  Snapshot s = run_on(1, [&](Sim &sim) {
    auto lines = setup_commands("aspirin_box2.data");
    lines[5] = std::string("pair_style deqformer ") + TIGHT;
    lines[6] = "pair_coeff * * " + model() + " H C O";
    sim.cmds(lines);
    sim.cmd("run 0");
    return gather(sim);
  });
  expect_vs_ref(s, deqtest::read_ref("box2"), 1e-8, "box2, model given in pair_coeff");
}

TEST(Serial, SolverDiagnostics)
{
  Snapshot s = run_on(1, [&](Sim &sim) {
    sim.cmds(setup_commands("aspirin_box2.data"));
    sim.cmd("run 0");
    sim.cmd("variable it equal c_solver[1]");
    sim.cmd("variable ait equal c_solver[2]");
    Snapshot out = gather(sim);
    out.energy = sim.lmp->input->variable->compute_equal("v_it");
    return out;
  });
  ASSERT_EQ(s.error, "");
  EXPECT_EQ(s.energy, s.stats[STAT_ITERS]);
  EXPECT_GT(s.stats[STAT_ITERS], 5);
  EXPECT_EQ(s.stats[STAT_EVALS], 1);
  EXPECT_LT(s.stats[STAT_RESIDUAL], 1e-12);
  EXPECT_LT(s.stats[STAT_ADJ_RESIDUAL], 1e-12);
}

TEST(Serial, ReuseOnOff)
{
  // MD with and without reuse: same trajectory (within the solver tolerance), fewer iterations with reuse
  auto md = [](const std::string &args) {
    return run_on(1, [&](Sim &s) {
      s.cmds(setup_commands("aspirin_box2.data", args));
      s.cmds({"velocity all create 300 4928459 loop geom", "fix nve all nve", "timestep 0.0005", "run 20"});
      return gather(s);
    });
  };
  const std::string tight(TIGHT);
  Snapshot on = md(tight + " reuse yes"), last = md(tight + " reuse last"), off = md(tight + " reuse no");
  expect_same(on, off, 1e-8, "20 MD steps, reuse yes vs no");
  expect_same(last, off, 1e-8, "20 MD steps, reuse last vs no");
  for (const Snapshot *s : {&on, &last}) {
    EXPECT_LT(s->stats[STAT_MEAN_ITERS], off.stats[STAT_MEAN_ITERS]);
    EXPECT_LT(s->stats[STAT_MEAN_ADJ_ITERS], off.stats[STAT_MEAN_ADJ_ITERS]);
  }
  // at a production tolerance (at 1e-12 the last iterations fight rounding, whatever the start): the
  // extrapolation from the last two steps starts closer than the last step alone
  Snapshot on6 = md("tol 1e-6 reuse yes"), last6 = md("tol 1e-6 reuse last"), off6 = md("tol 1e-6 reuse no");
  EXPECT_LT(on6.stats[STAT_MEAN_ITERS], last6.stats[STAT_MEAN_ITERS]);
  EXPECT_LT(on6.stats[STAT_MEAN_ADJ_ITERS], last6.stats[STAT_MEAN_ADJ_ITERS]);
  EXPECT_LT(last6.stats[STAT_MEAN_ITERS], off6.stats[STAT_MEAN_ITERS]);
  EXPECT_LT(last6.stats[STAT_MEAN_ADJ_ITERS], off6.stats[STAT_MEAN_ADJ_ITERS]);
  EXPECT_LE(rel_diff(on6.f, off6.f), 1e-4);
  for (const auto &[tol, y, l, n] : {std::make_tuple("1e-12", &on, &last, &off), std::make_tuple("1e-6", &on6, &last6, &off6)})
    std::printf("[ info ] mean iterations per step (forward/adjoint), tol %s: reuse no %.2f/%.2f, last %.2f/%.2f, "
                "yes (extrapolate) %.2f/%.2f\n",
                tol, n->stats[STAT_MEAN_ITERS], n->stats[STAT_MEAN_ADJ_ITERS], l->stats[STAT_MEAN_ITERS],
                l->stats[STAT_MEAN_ADJ_ITERS], y->stats[STAT_MEAN_ITERS], y->stats[STAT_MEAN_ADJ_ITERS]);
}

TEST(Serial, RestartContinuity)
{
  const std::string file = tmpdir() + "/deqformer_restart.bin";
  const std::vector<std::string> md = {"velocity all create 300 4928459 loop geom", "fix nve all nve",
                                       "timestep 0.0005"};
  Snapshot straight, first_half;
  straight = run_on(1, [&](Sim &s) {
    s.cmds(setup_commands("aspirin_box2.data"));
    s.cmds(md);
    s.cmd("run 5");
    first_half = gather(s);
    s.cmd("write_restart " + file);
    s.cmd("run 5");
    return gather(s);
  });
  Snapshot restarted = run_on(1, [&](Sim &s) {
    s.cmd("read_restart " + file);
    auto lines = setup_commands("aspirin_box2.data");
    s.cmds(std::vector<std::string>(lines.begin() + 5, lines.end()));    // pair style and computes
    s.cmds({"fix nve all nve", "timestep 0.0005", "run 5"});
    return gather(s);
  });
  // a restart without the stored states (cold start at step 5)
  Snapshot cold = run_on(1, [&](Sim &s) {
    s.cmd("read_restart " + file);
    auto lines = setup_commands("aspirin_box2.data", std::string(TIGHT) + " reuse no");
    s.cmds(std::vector<std::string>(lines.begin() + 5, lines.end()));
    s.cmds({"fix nve all nve", "timestep 0.0005", "run 5"});
    return gather(s);
  });
  expect_same(restarted, straight, 1e-10, "run 5 + restart + run 5 vs run 5 + run 5");
  // the state came back with the atoms: the same iterations as the uninterrupted run
  EXPECT_NEAR(restarted.stats[STAT_MEAN_ITERS], straight.stats[STAT_MEAN_ITERS], 0.21);
  EXPECT_LT(restarted.stats[STAT_MEAN_ITERS], cold.stats[STAT_MEAN_ITERS]);
  std::printf("[ info ] restart: mean iterations of the 5 steps after the restart point: continuous %.2f, "
              "restarted %.2f, restarted without state %.2f\n",
              straight.stats[STAT_MEAN_ITERS], restarted.stats[STAT_MEAN_ITERS], cold.stats[STAT_MEAN_ITERS]);
  std::remove(file.c_str());
}

// Atoms leaving (delete_atoms) and entering (create_atoms) during a run with reuse: the stored states of
// the remaining atoms stay with them, a new atom starts cold, and the results equal a fresh (cold) LAMMPS
// reading the same atoms from a data file, to the solver tolerance.
TEST(Serial, AtomsLeavingAndEntering)
{
  const std::string file = tmpdir() + "/deqformer_enter_leave.data";
  const std::vector<std::string> md = {"velocity all create 300 4928459 loop geom", "fix nve all nve",
                                       "timestep 0.0005"};
  auto fresh = [&]() {
    return run_on(1, [&](Sim &s) {
      auto lines = setup_commands("aspirin_box2.data", std::string(TIGHT) + " reuse no");
      lines[4] = "read_data " + file;
      s.cmds(lines);
      s.cmd("run 0");
      return gather(s);
    });
  };
  Snapshot after_delete, after_create, fresh_delete, fresh_create;
  after_delete = run_on(1, [&](Sim &s) {
    s.cmds(setup_commands("aspirin_box2.data"));
    s.cmds(md);
    s.cmd("run 5");
    // the second molecule (atoms 22-42) leaves; tags are compressed to 1..21
    s.cmds({"group second id 22:42", "delete_atoms group second compress yes", "run 0"});
    Snapshot out = gather(s);
    s.cmd("write_data " + file);
    return out;
  });
  fresh_delete = fresh();
  after_create = run_on(1, [&](Sim &s) {
    s.cmds(setup_commands("aspirin_box2.data"));
    s.cmds(md);
    s.cmd("run 5");
    // a new H atom enters (tag 43)
    s.cmds({"create_atoms 1 single 6.5 7.0 8.4 units box", "run 0"});
    Snapshot out = gather(s);
    s.cmd("write_data " + file);
    return out;
  });
  fresh_create = fresh();
  ASSERT_EQ(after_delete.error, "");
  ASSERT_EQ(after_create.error, "");
  EXPECT_EQ(after_delete.f.size(), 3u * 21u);
  EXPECT_EQ(after_create.f.size(), 3u * 43u);
  expect_same(after_delete, fresh_delete, 1e-9, "after delete_atoms (reuse) vs a fresh cold start");
  expect_same(after_create, fresh_create, 1e-9, "after create_atoms (reuse, new atom cold) vs a fresh cold start");
  std::remove(file.c_str());
}

TEST(Serial, FiniteDifferenceForces)
{
  const double h = 1e-4;
  Snapshot s = run_on(1, [&](Sim &sim) {
    sim.cmds(setup_commands("aspirin_box2.data"));
    sim.cmd("run 0");
    Snapshot base = gather(sim);
    LAMMPS *lmp = sim.lmp;
    std::vector<double> fd;
    for (int tag : {1, 14, 30}) {
      for (int d = 0; d < 3; d++) {
        const int i = lmp->atom->map(tag);
        const double x0 = lmp->atom->x[i][d];
        double e[2];
        for (int k = 0; k < 2; k++) {
          lmp->atom->x[lmp->atom->map(tag)][d] = x0 + (k == 0 ? h : -h);
          sim.cmd("run 0");
          e[k] = lammps_get_thermo(lmp, "pe");
        }
        lmp->atom->x[lmp->atom->map(tag)][d] = x0;
        fd.push_back(-(e[0] - e[1]) / (2 * h));
        fd.push_back(base.f[3 * (tag - 1) + d]);
      }
    }
    base.eatom = fd;
    return base;
  });
  ASSERT_EQ(s.error, "");
  double worst = 0.0;
  for (size_t k = 0; k < s.eatom.size(); k += 2) {
    EXPECT_NEAR(s.eatom[k], s.eatom[k + 1], 1e-6 + 1e-5 * std::abs(s.eatom[k + 1])) << "component " << k / 2;
    worst = std::max(worst, std::abs(s.eatom[k] - s.eatom[k + 1]));
  }
  std::printf("[ info ] finite differences (h = %g A): max |F_fd - F| = %.2e eV/A over %zu components\n", h, worst,
              s.eatom.size() / 2);
}

// Largest |E_total(t) - E_total(0)| (eV) of one aspirin molecule in NVE over 0.25 ps at time step dt (fs),
// from 300 K, with the default min_dist (the run stops if two atoms come closer than 0.1 A).
static double nve_max_deviation(double dt_fs, const std::string &style_args)
{
  const double time_fs = 250.0, chunk_fs = 12.5;
  const int chunks = static_cast<int>(time_fs / chunk_fs), per_chunk = static_cast<int>(chunk_fs / dt_fs + 0.5);
  Snapshot s = run_on(1, [&](Sim &sim) {
    sim.cmds(setup_commands("aspirin_1.data", style_args));
    sim.cmds({"velocity all create 300 4928459 mom yes rot yes dist gaussian", "fix nve all nve",
              "timestep " + std::to_string(1e-3 * dt_fs), "thermo_style custom step etotal", "run 0"});
    Snapshot out;
    out.eatom = {lammps_get_thermo(sim.lmp, "etotal")};
    for (int k = 0; k < chunks; k++) {
      sim.cmd("run " + std::to_string(per_chunk) + " pre no post no");
      out.eatom.push_back(lammps_get_thermo(sim.lmp, "etotal"));
    }
    return out;
  });
  EXPECT_EQ(s.error, "") << style_args;
  double max_dev = 0.0;
  for (double e : s.eatom) max_dev = std::max(max_dev, std::abs(e - s.eatom[0]));
  return max_dev;
}

TEST(Serial, EnergyConservationNVE)
{
  // With forces that are the exact gradient of the energy, velocity Verlet conserves a shadow energy,
  // and the total energy only fluctuates, by an amount of order dt^2: halving the time step divides the
  // largest deviation by 4 (bounds 3 and 5.5 leave room for the trajectories parting). Forces off the
  // gradient add work that does not shrink with dt. The solver tolerance (1e-8) bounds that work here
  // far below the integrator's fluctuation, so the dt^2 law must hold; with the adjoint solve cut short
  // (adjoint_tol 0.5 from zero, about two iterations: the forces are no longer the gradient) it must not.
  const std::string exact = "tol 1e-8 adjoint_tol 1e-8", cut = "tol 1e-8 adjoint_tol 0.5 reuse no";
  const double e_dt = nve_max_deviation(0.5, exact), e_half = nve_max_deviation(0.25, exact);
  const double c_dt = nve_max_deviation(0.5, cut), c_half = nve_max_deviation(0.25, cut);
  const double natoms = 21.0;
  if (world_rank == 0)
    std::printf("[ info ] NVE 0.25 ps from 300 K, max |E - E0| per atom at dt 0.5 / 0.25 fs: exact forces %.4f / "
                "%.4f meV (ratio %.2f), adjoint cut short %.4f / %.4f meV (ratio %.2f)\n",
                1e3 * e_dt / natoms, 1e3 * e_half / natoms, e_dt / e_half, 1e3 * c_dt / natoms,
                1e3 * c_half / natoms, c_dt / c_half);
  EXPECT_GT(e_dt / e_half, 3.0);
  EXPECT_LT(e_dt / e_half, 5.5);
  EXPECT_LT(c_dt / c_half, 3.0) << "the dt^2 law held with inexact forces: the test cannot tell them apart";
}

// keyword threads: LibTorch's intra-op threads of the process (set back afterwards, for the other tests)
TEST(Serial, ThreadsKeyword)
{
  const int before = at::get_num_threads();
  const std::string msg = lammps_error(setup_commands("aspirin_1.data", std::string(TIGHT) + " threads 2"));
  const int during = at::get_num_threads();
  at::set_num_threads(before);
  EXPECT_EQ(msg, "");
  EXPECT_EQ(during, 2);
}

TEST(Serial, BadInputs)
{
  auto base = setup_commands("aspirin_1.data");
  std::vector<std::string> upto_style(base.begin(), base.begin() + 5);

  auto with = [&](std::vector<std::string> tail) {
    auto l = upto_style;
    l.insert(l.end(), tail.begin(), tail.end());
    return l;
  };
  std::string msg = lammps_error(with({"pair_style deqformer " + model(), "pair_coeff * * H C N"}));
  EXPECT_THAT(msg, HasSubstr("element 'N' (atom type 3) is not in model"));
  EXPECT_THAT(msg, HasSubstr("the model's elements are: H C O"));

  msg = lammps_error(with({"pair_style deqformer " + model(), "pair_coeff * * H C"}));
  EXPECT_THAT(msg, HasSubstr("needs one element per atom type (3 types), got 2: H C"));
  EXPECT_THAT(msg, HasSubstr("the model's elements are: H C O"));

  msg = lammps_error(with({"pair_style deqformer " + model(), "pair_coeff * * H NULL O"}));
  EXPECT_THAT(msg, HasSubstr("NULL (atom type 2) is only allowed when deqformer is a pair_style hybrid sub-style"));

  msg = lammps_error(with({"pair_style deqformer /nonexistent/model.pt", "pair_coeff * * H C O"}));
  EXPECT_THAT(msg, HasSubstr("'/nonexistent/model.pt' cannot be opened: No such file or directory"));

  msg = lammps_error(with({"pair_style deqformer " + model("contract_999.pt"), "pair_coeff * * H C O"}));
  EXPECT_THAT(msg, HasSubstr("has contract version 999"));

  msg = lammps_error(with({"pair_style deqformer " + model("random_bytes.pt"), "pair_coeff * * H C O"}));
  EXPECT_THAT(msg, HasSubstr("is not a readable TorchScript archive"));

  msg = lammps_error(with({"pair_style deqformer", "pair_coeff * * H C O"}));
  EXPECT_THAT(msg, HasSubstr("Incorrect args for pair coefficients"));

  msg = lammps_error(with({"pair_style deqformer " + model() + " tol", "pair_coeff * * H C O"}));
  EXPECT_THAT(msg, HasSubstr("keyword 'tol' needs a value"));
  msg = lammps_error(with({"pair_style deqformer " + model() + " solver newton", "pair_coeff * * H C O"}));
  EXPECT_THAT(msg, HasSubstr("unknown solver 'newton'"));
  msg = lammps_error(with({"pair_style deqformer " + model() + " speed 2", "pair_coeff * * H C O"}));
  EXPECT_THAT(msg, HasSubstr("unknown keyword 'speed'"));
  msg = lammps_error(with({"pair_style deqformer " + model() + " backend fast", "pair_coeff * * H C O"}));
  EXPECT_THAT(msg, HasSubstr("backend must be native or torchscript, not 'fast'"));
  msg = lammps_error(with({"pair_style deqformer " + model("model_dot.pt") + " backend native", "pair_coeff * * H C O"}));
  EXPECT_THAT(msg, HasSubstr("backend native cannot run model"));
  EXPECT_THAT(msg, HasSubstr("message operation 'so2'"));

  auto newton = upto_style;
  newton.insert(newton.begin() + 1, "newton off");
  newton.push_back("pair_style deqformer " + model());
  newton.push_back("pair_coeff * * H C O");
  newton.push_back("run 0");
  msg = lammps_error(newton);
  EXPECT_THAT(msg, HasSubstr("requires newton pair on"));

  auto lj = upto_style;
  lj[0] = "units lj";
  lj.push_back("pair_style deqformer " + model());
  lj.push_back("pair_coeff * * H C O");
  lj.push_back("run 0");
  msg = lammps_error(lj);
  EXPECT_THAT(msg, HasSubstr("'units lj' is not supported: use units metal (or real"));

  // overlapping atoms (atom 2 moved onto atom 1): an error naming them, not a finite energy
  msg = lammps_error(with({"pair_style deqformer " + model(), "pair_coeff * * H C O",
                           "set atom 2 x 16.12761141 y 15.95190893 z 15.62278988", "run 0"}));
  EXPECT_THAT(msg, HasSubstr("atoms 1 and 2 are 0 A apart"));
  EXPECT_THAT(msg, HasSubstr("overlapping atoms"));
  // ... also when one atom is only close (0.05 A)
  msg = lammps_error(with({"pair_style deqformer " + model(), "pair_coeff * * H C O",
                           "set atom 2 x 16.17761141 y 15.95190893 z 15.62278988", "run 0"}));
  EXPECT_THAT(msg, HasSubstr("atoms 1 and 2 are 0.05 A apart"));
  EXPECT_THAT(msg, HasSubstr("closer than min_dist = 0.1 A"));
  // the threshold is the min_dist keyword; 0 still refuses atoms at the same place
  msg = lammps_error(with({"pair_style deqformer " + model() + " min_dist 0.01", "pair_coeff * * H C O",
                           "set atom 2 x 16.17761141 y 15.95190893 z 15.62278988", "run 0"}));
  EXPECT_EQ(msg, "");
  msg = lammps_error(with({"pair_style deqformer " + model() + " min_dist 0", "pair_coeff * * H C O",
                           "set atom 2 x 16.12761141 y 15.95190893 z 15.62278988", "run 0"}));
  EXPECT_THAT(msg, HasSubstr("atoms 1 and 2 are 0 A apart"));
  msg = lammps_error(with({"pair_style deqformer " + model() + " min_dist -1", "pair_coeff * * H C O"}));
  EXPECT_THAT(msg, HasSubstr("min_dist must be >= 0"));
  msg = lammps_error(with({"pair_style deqformer " + model() + " edge_cache -1", "pair_coeff * * H C O"}));
  EXPECT_THAT(msg, HasSubstr("edge_cache must be >= 0 (MB per process)"));
  msg = lammps_error(with({"pair_style deqformer " + model() + " threads 0", "pair_coeff * * H C O"}));
  EXPECT_THAT(msg, HasSubstr("threads must be >= 1"));

  // max_iter too small with nonconvergence error: a clean error on every rank
  msg = lammps_error(with({"pair_style deqformer " + model() + " tol 1e-12 max_iter 2 nonconvergence error",
                           "pair_coeff * * H C O", "run 0"}));
  EXPECT_THAT(msg, HasSubstr("forward solve did not converge: 2 iterations"));
  // ... and with warn: a run that continues and counts
  Snapshot s = run_on(1, [&](Sim &sim) {
    sim.cmds(setup_commands("aspirin_1.data", "tol 1e-12 max_iter 2"));
    sim.cmd("run 0");
    return gather(sim);
  });
  EXPECT_EQ(s.error, "");
  EXPECT_EQ(s.stats[STAT_NOT_CONVERGED], 1.0);    // in this run
}

// =====================================================================================================
// parallel: 1 vs 2 vs 4 ranks
// =====================================================================================================

class Parallel : public ::testing::Test {
 protected:
  void SetUp() override
  {
    if (world_size < 4) GTEST_SKIP() << "needs 4 MPI ranks (mpirun -np 4)";
  }
};

TEST_F(Parallel, OrthogonalBox)
{
  Snapshot one = single_point(1, "aspirin_box2.data");
  expect_vs_ref(one, deqtest::read_ref("box2"), 1e-8, "box2 on 1 rank");
  for (int n : {2, 4}) {
    Snapshot s = single_point(n, "aspirin_box2.data");
    expect_same(s, one, 1e-10, "box2: " + std::to_string(n) + " ranks vs 1");
    EXPECT_EQ(s.stats[STAT_ITERS], one.stats[STAT_ITERS]);
    EXPECT_EQ(s.stats[STAT_ADJ_ITERS], one.stats[STAT_ADJ_ITERS]);
  }
}

TEST_F(Parallel, TriclinicBox)
{
  Snapshot one = single_point(1, "aspirin_tri2.data");
  expect_vs_ref(one, deqtest::read_ref("tri2"), 1e-8, "tri2 on 1 rank");
  for (int n : {2, 4}) {
    Snapshot s = single_point(n, "aspirin_tri2.data");
    expect_same(s, one, 1e-10, "tri2 (triclinic): " + std::to_string(n) + " ranks vs 1");
  }
}

TEST_F(Parallel, RanksWithoutAtoms)
{
  // all atoms at x < 12 A of a 36 A box: with processors N 1 1 the ranks beyond x = 12 own nothing
  Snapshot one = single_point(1, "aspirin_slab2.data");
  expect_vs_ref(one, deqtest::read_ref("slab2"), 1e-8, "slab2 on 1 rank");
  for (int n : {2, 4}) {
    Snapshot s = single_point(n, "aspirin_slab2.data", {"processors " + std::to_string(n) + " 1 1"});
    expect_same(s, one, 1e-10, "slab2, processors " + std::to_string(n) + " 1 1 (empty ranks)");
  }
}

TEST_F(Parallel, Float32Model)
{
  Snapshot one = single_point(1, "aspirin_tri2.data", {}, "tol 1e-6 adjoint_tol 1e-6");
  auto f32 = [](int n) {
    return run_on(n, [&](Sim &sim) {
      auto lines = setup_commands("aspirin_tri2.data");
      lines[5] = "pair_style deqformer " + model("model_f32.pt") + " tol 1e-5";
      sim.cmds(lines);
      sim.cmd("run 0");
      return gather(sim);
    });
  };
  Snapshot a = f32(1), b = f32(4);
  ASSERT_EQ(b.error, "");
  EXPECT_LE(rel_diff(b.f, a.f), 5e-5);    // float32 rounding, amplified within the tolerance
  EXPECT_LE(rel_diff(a.f, one.f), 1e-3);
  if (world_rank == 0)
    std::printf("[ info ] float32 model, tri2: 4 ranks vs 1 forces %.1e; vs float64 %.1e\n", rel_diff(b.f, a.f),
                rel_diff(a.f, one.f));
}

TEST_F(Parallel, MoleculeInBigBox)
{
  Snapshot one = single_point(1, "aspirin_1.data");
  Snapshot four = single_point(4, "aspirin_1.data");
  expect_same(four, one, 1e-10, "aspirin in a 30 A box: 4 ranks vs 1");
}

TEST_F(Parallel, MolecularDynamicsWithMigration)
{
  // reneighbor every step (atoms change owner), sort often, reuse on: the per-atom state must follow
  auto md = [](int n) {
    return run_on(n, [&](Sim &s) {
      auto lines = setup_commands("aspirin_tri2.data");
      lines.insert(lines.begin() + 3, "atom_modify sort 3 2.0");
      s.cmds(lines);
      s.cmds({"neigh_modify every 1 delay 0 check no", "velocity all create 2000 4928459 loop geom",
              "fix nve all nve", "timestep 0.0005", "run 0"});
      auto owners = [&]() {    // rank owning each atom ID
        std::vector<int> own(s.lmp->atom->natoms, 0), all(own.size());
        int me;
        MPI_Comm_rank(s.comm_, &me);
        for (int i = 0; i < s.lmp->atom->nlocal; i++) own[s.lmp->atom->tag[i] - 1] = me;
        MPI_Allreduce(own.data(), all.data(), static_cast<int>(own.size()), MPI_INT, MPI_SUM, s.comm_);
        return all;
      };
      auto before = owners();
      s.cmd("run 20");
      auto after = owners();
      Snapshot snap = gather(s);
      int moved = 0;
      for (size_t i = 0; i < before.size(); i++) moved += before[i] != after[i];
      snap.stats.push_back(moved);
      return snap;
    });
  };
  Snapshot one = md(1);
  for (int n : {2, 4}) {
    Snapshot s = md(n);
    expect_same(s, one, 1e-9, "20 MD steps (migration, sorting), " + std::to_string(n) + " ranks vs 1");
    EXPECT_NEAR(s.stats[STAT_MEAN_ITERS], one.stats[STAT_MEAN_ITERS], 0.11);
    EXPECT_NEAR(s.stats[STAT_MEAN_ADJ_ITERS], one.stats[STAT_MEAN_ADJ_ITERS], 0.11);
    EXPECT_GT(s.stats[NSTATS], 0) << "no atom changed its owner: the test does not test migration";
    if (world_rank == 0)
      std::printf("[ info ] MD on %d ranks: %g atoms changed owner; mean iterations %.2f/%.2f (1 rank: "
                  "%.2f/%.2f)\n",
                  n, s.stats[NSTATS], s.stats[STAT_MEAN_ITERS], s.stats[STAT_MEAN_ADJ_ITERS],
                  one.stats[STAT_MEAN_ITERS], one.stats[STAT_MEAN_ADJ_ITERS]);
  }
}

int main(int argc, char **argv)
{
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world_size);
  ::testing::InitGoogleMock(&argc, argv);
  if (world_rank != 0) {
    auto &listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  int rc = RUN_ALL_TESTS();
  int any = 0;
  MPI_Allreduce(&rc, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  MPI_Finalize();
  return any;
}
