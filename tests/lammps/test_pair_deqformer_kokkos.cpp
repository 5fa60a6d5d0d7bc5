// pair_style deqformer/kk (KOKKOS, OpenMP backend) inside LAMMPS, against pair_style deqformer.
//
// ctest runs this binary twice on 2 MPI ranks, with 1 and with 2 Kokkos threads per rank
// (DEQ_KK_THREADS; Kokkos is initialised once per process, so the thread count is per run):
//   KokkosVsCpu*     kk vs CPU style: aspirin molecule, periodic box, triclinic box, float32 model;
//                    energy, per-atom energy, forces, virial, per-atom virial <= 1e-10 (float64)
//   KokkosRanks*     1 vs 2 ranks (single point, and MD with migration, sorting and reuse) <= 1e-10
//   KokkosThreads*   (2-thread run) the 1-thread run's results, read from files it wrote, <= 1e-10
//   KokkosReuse*, KokkosRestart*   reuse on/off and restart continuity as for the CPU style, plus a
//                    restart file of deqformer continued by deqformer/kk with its states and back
//   KokkosSettings*  neigh half = neigh full; comm no (host) = comm device (Kokkos kernels); newton off
//                    refused; device keyword of the CPU style
#include "lammps_harness.h"

#include <gmock/gmock.h>
#include <torch/cuda.h>

#include <fstream>
#include <sstream>

using ::testing::HasSubstr;
using deqtest::rel_diff;

namespace {
using namespace deqtest;

int world_rank = 0, world_size = 1;
int kk_threads = 1;

// how LAMMPS is started: the CPU style, or the Kokkos style through the kk suffix. comm device (the
// default on GPUs; host builds default to 'comm no') makes the states and adjoints travel through the
// style's Kokkos pack/unpack kernels; comm no through LAMMPS's host communication
struct Mode {
  bool kokkos = false;
  std::string neigh = "full";
  std::string comm = "device";
  bool plain_pair = false;    // with kokkos: 'suffix off' before the pair style (plain style, KOKKOS LAMMPS)
};
const Mode CPU{false, "full", "device"};
const Mode KK{true, "full", "device"};
const Mode CPU_IN_KK{true, "full", "device", true};

// the launch arguments of a mode
std::vector<std::string> launch_args(const Mode &mode)
{
  if (!mode.kokkos) return {};
  return {"-k", "on", "t", std::to_string(kk_threads), "-sf", "kk", "-pk", "kokkos", "newton", "on", "neigh",
          mode.neigh, "comm", mode.comm};
}

// runs `body` on the first `nprocs` world ranks; the result is broadcast to every world rank
Snapshot run_on(int nprocs, const Mode &mode, const std::function<Snapshot(Sim &)> &body)
{
  return run_lammps_on(nprocs, launch_args(mode), body);
}

Snapshot single_point(int nprocs, const Mode &mode, const std::string &datafile,
                      const std::string &style_args = TIGHT, const std::string &model = "model_f64.pt")
{
  return single_point_with(nprocs, launch_args(mode), datafile, style_args, model);
}

// MD with reneighboring every step (atoms change owner) and frequent sorting; reuse on
Snapshot md(int nprocs, const Mode &mode, const std::string &datafile, int steps, const std::string &style_args = TIGHT)
{
  return run_on(nprocs, mode, [&](Sim &s) {
    auto lines = setup_commands(datafile, style_args);
    lines.insert(lines.begin() + 3, "atom_modify sort 3 2.0");
    s.cmds(lines);
    s.cmds({"neigh_modify every 1 delay 0 check no", "velocity all create 2000 4928459 loop geom",
            "fix nve all nve", "timestep 0.0005", "run " + std::to_string(steps)});
    return gather(s);
  });
}

// snapshots handed from the 1-thread run to the 2-thread run
std::string snap_file(const std::string &name, int threads)
{
  return tmpdir() + "/kk_" + name + "_t" + std::to_string(threads) + ".snap";
}

void save(const Snapshot &s, const std::string &name)
{
  if (world_rank != 0) return;
  std::ofstream out(snap_file(name, kk_threads));
  out.precision(17);
  for (double v : s.flat()) out << v << "\n";
}

bool load(Snapshot &s, const std::string &name, int threads)
{
  std::ifstream in(snap_file(name, threads));
  if (!in.good()) return false;
  std::vector<double> v;
  double x;
  while (in >> x) v.push_back(x);
  s.unflat(v);
  return true;
}

std::string lammps_error(const Mode &mode, const std::vector<std::string> &lines)
{
  return lammps_error_with(launch_args(mode), lines);
}

}    // namespace

// =====================================================================================================

TEST(KokkosVsCpu, Molecule)
{
  Snapshot cpu = single_point(1, CPU, "aspirin_1.data");
  Snapshot kk = single_point(1, KK, "aspirin_1.data");
  EXPECT_EQ(kk.pair_style, "deqformer/kk");
  expect_same(kk, cpu, 1e-10, "aspirin in a 30 A box, deqformer/kk vs deqformer");
  EXPECT_EQ(kk.stats[STAT_ITERS], cpu.stats[STAT_ITERS]);
  EXPECT_EQ(kk.stats[STAT_ADJ_ITERS], cpu.stats[STAT_ADJ_ITERS]);
  const deqtest::Ref ref = deqtest::read_ref("aspirin_1");
  EXPECT_LE(rel_diff(kk.f, ref.at("forces")), 1e-8);
  EXPECT_LE(rel_diff({kk.energy}, ref.at("energy")), 1e-8);
}

TEST(KokkosVsCpu, PeriodicBoxes)
{
  for (const char *name : {"box2", "tri2"}) {
    const std::string data = std::string("aspirin_") + name + ".data";
    Snapshot cpu = single_point(1, CPU, data);
    Snapshot kk = single_point(1, KK, data);
    expect_same(kk, cpu, 1e-10, std::string(name) + ", deqformer/kk vs deqformer");
    EXPECT_EQ(kk.stats[STAT_ITERS], cpu.stats[STAT_ITERS]);
    const deqtest::Ref ref = deqtest::read_ref(name);
    EXPECT_LE(rel_diff(kk.virial, ref.at("virial")), 1e-8) << name;
    EXPECT_LE(rel_diff(kk.vatom, ref.at("atom_virial")), 1e-8) << name;
    if (std::string(name) == "box2") save(kk, "box2_np1");
  }
}

TEST(KokkosVsCpu, Float32Model)
{
  // float32 states travel through the double communication buffers
  Snapshot cpu = single_point(2, CPU, "aspirin_tri2.data", "tol 1e-5", "model_f32.pt");
  Snapshot kk = single_point(2, KK, "aspirin_tri2.data", "tol 1e-5", "model_f32.pt");
  ASSERT_EQ(kk.error, "");
  EXPECT_LE(rel_diff(kk.f, cpu.f), 5e-5);
  EXPECT_LE(rel_diff({kk.energy}, {cpu.energy}), 1e-6);
  if (world_rank == 0)
    std::printf("[ info ] float32 model, tri2, 2 ranks: kk vs CPU forces %.1e energy %.1e\n", rel_diff(kk.f, cpu.f),
                rel_diff({kk.energy}, {cpu.energy}));
}

TEST(KokkosRanks, SinglePoint)
{
  if (world_size < 2) GTEST_SKIP() << "needs 2 MPI ranks";
  Snapshot one = single_point(1, KK, "aspirin_box2.data");
  Snapshot two = single_point(2, KK, "aspirin_box2.data");
  expect_same(two, one, 1e-10, "box2, deqformer/kk: 2 ranks vs 1");
  EXPECT_EQ(two.stats[STAT_ITERS], one.stats[STAT_ITERS]);
  EXPECT_EQ(two.stats[STAT_ADJ_ITERS], one.stats[STAT_ADJ_ITERS]);
  save(two, "box2_np2");
}

TEST(KokkosRanks, MolecularDynamicsWithMigration)
{
  if (world_size < 2) GTEST_SKIP() << "needs 2 MPI ranks";
  Snapshot cpu = md(1, CPU, "aspirin_tri2.data", 10);
  Snapshot one = md(1, KK, "aspirin_tri2.data", 10);
  Snapshot two = md(2, KK, "aspirin_tri2.data", 10);
  expect_same(one, cpu, 1e-9, "10 MD steps (sorting, reneighboring), deqformer/kk vs deqformer, 1 rank");
  expect_same(two, one, 1e-9, "10 MD steps (migration, sorting), deqformer/kk: 2 ranks vs 1");
  // the states moved with their atoms: the same iterations as the CPU style
  EXPECT_NEAR(one.stats[STAT_MEAN_ITERS], cpu.stats[STAT_MEAN_ITERS], 0.11);
  EXPECT_NEAR(two.stats[STAT_MEAN_ITERS], one.stats[STAT_MEAN_ITERS], 0.11);
  EXPECT_NEAR(two.stats[STAT_MEAN_ADJ_ITERS], one.stats[STAT_MEAN_ADJ_ITERS], 0.11);
  save(two, "md_np2");
}

TEST(KokkosThreads, SameAsOneThread)
{
  if (kk_threads == 1) GTEST_SKIP() << "the 1-thread run writes the reference of the 2-thread run";
  for (const char *name : {"box2_np1", "box2_np2", "md_np2"}) {
    Snapshot ref, mine;
    ASSERT_TRUE(load(ref, name, 1)) << snap_file(name, 1) << " missing: run lammps_kokkos_t1 first";
    ASSERT_TRUE(load(mine, name, kk_threads)) << snap_file(name, kk_threads) << " missing";
    expect_same(mine, ref, 1e-10,
                std::string(name) + ": " + std::to_string(kk_threads) + " Kokkos threads vs 1 thread");
    EXPECT_EQ(mine.stats[STAT_ITERS], ref.stats[STAT_ITERS]) << name;
  }
}

TEST(KokkosReuse, OnOff)
{
  auto run = [](const std::string &reuse) {
    return run_on(2, KK, [&](Sim &s) {
      s.cmds(setup_commands("aspirin_box2.data", std::string(TIGHT) + " reuse " + reuse));
      s.cmds({"velocity all create 300 4928459 loop geom", "fix nve all nve", "timestep 0.0005", "run 12"});
      return gather(s);
    });
  };
  Snapshot on = run("yes"), last = run("last"), off = run("no");
  expect_same(on, off, 1e-8, "deqformer/kk, 12 MD steps, reuse yes vs no");
  expect_same(last, off, 1e-8, "deqformer/kk, 12 MD steps, reuse last vs no");
  EXPECT_LT(last.stats[STAT_MEAN_ITERS], off.stats[STAT_MEAN_ITERS]);
  EXPECT_LT(last.stats[STAT_MEAN_ADJ_ITERS], off.stats[STAT_MEAN_ADJ_ITERS]);
  EXPECT_LT(on.stats[STAT_MEAN_ITERS], last.stats[STAT_MEAN_ITERS]);
  EXPECT_LT(on.stats[STAT_MEAN_ADJ_ITERS], last.stats[STAT_MEAN_ADJ_ITERS]);
  if (world_rank == 0)
    std::printf("[ info ] deqformer/kk mean iterations (forward/adjoint), tol 1e-12: reuse no %.2f/%.2f, last "
                "%.2f/%.2f, yes %.2f/%.2f\n",
                off.stats[STAT_MEAN_ITERS], off.stats[STAT_MEAN_ADJ_ITERS], last.stats[STAT_MEAN_ITERS],
                last.stats[STAT_MEAN_ADJ_ITERS], on.stats[STAT_MEAN_ITERS], on.stats[STAT_MEAN_ADJ_ITERS]);
}

TEST(KokkosRestart, Continuity)
{
  const std::string file = tmpdir() + "/deqformer_kk_restart_t" + std::to_string(kk_threads) + ".bin";
  const std::string cpufile = tmpdir() + "/deqformer_cpu_restart_t" + std::to_string(kk_threads) + ".bin";
  const std::vector<std::string> mdc = {"velocity all create 300 4928459 loop geom", "fix nve all nve",
                                        "timestep 0.0005"};
  auto straight = [&](const Mode &mode, const std::string &f) {
    return run_on(2, mode, [&](Sim &s) {
      s.cmds(setup_commands("aspirin_box2.data"));
      s.cmds(mdc);
      s.cmd("run 3");
      s.cmd("write_restart " + f);
      s.cmd("run 3");
      return gather(s);
    });
  };
  auto restarted = [&](const Mode &mode, const std::string &f, const std::string &args) {
    return run_on(2, mode, [&](Sim &s) {
      s.cmd("read_restart " + f);
      if (mode.plain_pair) s.cmd("suffix off");
      auto lines = setup_commands("aspirin_box2.data", args);
      s.cmds(std::vector<std::string>(lines.begin() + 5, lines.end()));
      s.cmds({"fix nve all nve", "timestep 0.0005", "run 3"});
      return gather(s);
    });
  };
  Snapshot kk_straight = straight(KK, file);
  Snapshot kk = restarted(KK, file, TIGHT);
  Snapshot cold = restarted(KK, file, std::string(TIGHT) + " reuse no");
  // a restart file of the CPU style continued by deqformer/kk (the other direction is not possible with
  // LAMMPS 29Sep2021: a KOKKOS restart file names the atom style atomic/kk, which needs KOKKOS to read)
  Snapshot cpu_straight = straight(CPU, cpufile);
  Snapshot from_cpu = restarted(KK, cpufile, TIGHT);
  // and back: a restart file of deqformer/kk continued by the plain style inside a KOKKOS LAMMPS
  Snapshot to_cpu = restarted(CPU_IN_KK, file, TIGHT);
  expect_same(kk, kk_straight, 1e-10, "deqformer/kk: run 3 + restart + run 3 vs run 6");
  expect_same(from_cpu, cpu_straight, 1e-10, "restart file of deqformer continued by deqformer/kk");
  expect_same(to_cpu, kk_straight, 1e-10, "restart file of deqformer/kk continued by deqformer under -k on");
  EXPECT_NE(to_cpu.pair_style.find("deqformer"), std::string::npos);
  EXPECT_EQ(to_cpu.pair_style.find("/kk"), std::string::npos) << to_cpu.pair_style;
  EXPECT_NEAR(to_cpu.stats[STAT_MEAN_ITERS], kk_straight.stats[STAT_MEAN_ITERS], 0.21);
  EXPECT_NEAR(kk.stats[STAT_MEAN_ITERS], kk_straight.stats[STAT_MEAN_ITERS], 0.21);
  EXPECT_NEAR(from_cpu.stats[STAT_MEAN_ITERS], cpu_straight.stats[STAT_MEAN_ITERS], 0.21);
  EXPECT_LT(kk.stats[STAT_MEAN_ITERS], cold.stats[STAT_MEAN_ITERS]);
  if (world_rank == 0) {
    std::printf("[ info ] deqformer/kk restart: mean iterations after the restart point: continuous %.2f, "
                "restarted %.2f, restarted without state %.2f, continued by the plain style %.2f; CPU-style "
                "file: continuous %.2f, continued by kk %.2f\n",
                kk_straight.stats[STAT_MEAN_ITERS], kk.stats[STAT_MEAN_ITERS], cold.stats[STAT_MEAN_ITERS],
                to_cpu.stats[STAT_MEAN_ITERS], cpu_straight.stats[STAT_MEAN_ITERS], from_cpu.stats[STAT_MEAN_ITERS]);
    std::remove(file.c_str());
    std::remove(cpufile.c_str());
  }
}

TEST(KokkosSettings, NeighHalfEqualsFull)
{
  Mode half = KK;
  half.neigh = "half";
  Snapshot a = single_point(2, half, "aspirin_tri2.data");
  Snapshot b = single_point(2, KK, "aspirin_tri2.data");
  expect_same(a, b, 1e-12, "tri2, deqformer/kk: -pk kokkos neigh half vs neigh full");
}

TEST(KokkosSettings, HostCommEqualsDeviceComm)
{
  Mode host = KK;
  host.comm = "no";
  Snapshot a = md(2, host, "aspirin_tri2.data", 5);
  Snapshot b = md(2, KK, "aspirin_tri2.data", 5);
  expect_same(a, b, 1e-12, "tri2, 5 MD steps on 2 ranks, deqformer/kk: -pk kokkos comm no vs comm device");
}

TEST(KokkosSettings, Refusals)
{
  std::vector<std::string> lines = setup_commands("aspirin_1.data");
  lines.insert(lines.begin(), "package kokkos newton off neigh full");
  lines.push_back("run 0");
  const std::string newton = lammps_error(KK, lines);
  EXPECT_THAT(newton, HasSubstr("requires newton pair on"));
  EXPECT_THAT(newton, HasSubstr("-pk kokkos newton on"));

  // overlapping atoms: the same collective error as the CPU style, on each rank of the run
  for (const Mode *mode : {&KK, &CPU}) {
    std::vector<std::string> overlap = setup_commands("aspirin_1.data");
    overlap.push_back("set atom 2 x 16.12761141 y 15.95190893 z 15.62278988");
    overlap.push_back("run 0");
    std::string err = run_on(2, *mode, [&](Sim &s) {
                        s.cmds(overlap);
                        return Snapshot();
                      }).error;
    EXPECT_THAT(err, HasSubstr("atoms 1 and 2 are 0 A apart")) << err;
  }

  // the CPU style's device keyword: this suite is built for CPU configurations only (DEQFORMER_CUDA
  // OFF, tests/lammps/CMakeLists.txt), whose LibTorch is a CPU one, so device cuda must be refused with
  // a clear error (a GPU build is checked by tests/gpu/run_gpu_check.sh), and so must bad names
  ASSERT_FALSE(torch::cuda::is_available()) << "a CPU build (DEQFORMER_CUDA OFF) linked a LibTorch that sees a GPU";
  std::string msg = lammps_error(CPU, setup_commands("aspirin_1.data", "device cuda"));
  EXPECT_THAT(msg, HasSubstr("needs a LibTorch built with CUDA"));
  EXPECT_THAT(lammps_error(CPU, setup_commands("aspirin_1.data", "device gpu")),
              HasSubstr("device must be cpu, cuda or cuda:N"));
  // device cpu is the default and gives the same numbers
  Snapshot a = single_point(1, CPU, "aspirin_1.data", std::string(TIGHT) + " device cpu");
  Snapshot b = single_point(1, CPU, "aspirin_1.data");
  expect_same(a, b, 0.0, "deqformer device cpu vs default");
}

int main(int argc, char **argv)
{
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world_size);
  if (const char *t = std::getenv("DEQ_KK_THREADS")) kk_threads = std::max(1, std::atoi(t));
  ::testing::InitGoogleMock(&argc, argv);
  if (world_rank != 0) {
    auto &listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  int rc = RUN_ALL_TESTS();
  int any = 0;
  MPI_Allreduce(&rc, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  lammps_kokkos_finalize();
  MPI_Finalize();
  return any;
}
