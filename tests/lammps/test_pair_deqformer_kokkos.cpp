// pair_style deqformer/kk (KOKKOS, OpenMP backend) inside LAMMPS, against pair_style deqformer.
//
// ctest runs this binary twice on 2 MPI ranks, with 1 and with 2 Kokkos threads per rank
// (DEQ_KK_THREADS; Kokkos is initialised once per process, so the thread count is per run):
//   KokkosVsCpu*     kk vs CPU style: aspirin molecule, periodic box, triclinic box, float32 model;
//                    energy, per-atom energy, forces, virial, per-atom virial <= 1e-10 (float64)
//   KokkosRanks*     1 vs 2 ranks (single point, and MD with migration, sorting and reuse) <= 1e-10
//   KokkosThreads*   (2-thread run) the 1-thread run's results, read from files it wrote, <= 1e-10
//   KokkosReuse*, KokkosRestart*   reuse on/off and restart continuity as for the CPU style, plus a
//                    restart file of deqformer continued by deqformer/kk with its states
//   KokkosSettings*  neigh half = neigh full; comm no (host) = comm device (Kokkos kernels); newton off
//                    refused; device keyword of the CPU style
#include "lammps_harness.h"
#include "test_common.h"

#include "atom.h"
#include "compute.h"
#include "domain.h"
#include "exceptions.h"
#include "force.h"
#include "input.h"
#include "lammps.h"
#include "library.h"
#include "modify.h"
#include "pair.h"

#include <gmock/gmock.h>
#include <mpi.h>
#include <torch/cuda.h>

#include <cstdio>
#include <fstream>
#include <functional>
#include <sstream>

using LAMMPS_NS::LAMMPS;
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
};
const Mode CPU{false, "full", "device"};
const Mode KK{true, "full", "device"};

class Sim {
 public:
  Sim(MPI_Comm comm, const Mode &mode) : comm_(comm)
  {
    std::vector<std::string> args = {"lmp", "-nocite", "-log", "none"};
    if (!std::getenv("DEQ_TEST_VERBOSE")) args.insert(args.end(), {"-screen", "none"});
    if (mode.kokkos)
      args.insert(args.end(), {"-k", "on", "t", std::to_string(kk_threads), "-sf", "kk", "-pk", "kokkos", "newton",
                               "on", "neigh", mode.neigh, "comm", mode.comm});
    std::vector<char *> argv;
    for (auto &a : args) argv.push_back(&a[0]);
    lmp = new LAMMPS(static_cast<int>(argv.size()), argv.data(), comm);
  }
  ~Sim() { delete lmp; }
  void cmd(const std::string &line) { lmp->input->one(deqtest::with_backend(line)); }
  void cmds(const std::vector<std::string> &lines)
  {
    for (const auto &l : lines) cmd(l);
  }
  LAMMPS *lmp;
  MPI_Comm comm_;
};

std::vector<std::string> setup_commands(const std::string &datafile, const std::string &style_args = TIGHT,
                                        const std::string &model = "model_f64.pt")
{
  return {"units metal",
          "atom_style atomic",
          "atom_modify map array",
          "boundary p p p",
          "read_data " + deqtest::data_path(datafile),
          "pair_style deqformer " + deqtest::model_path(model) + " " + style_args,
          "pair_coeff * * H C O",
          "neighbor 1.0 bin",
          "compute pea all pe/atom",
          "compute sa all stress/atom NULL pair",
          "compute pes all reduce sum c_pea",    // thermo invokes the per-atom computes
          "compute sas all reduce sum c_sa[1]",
          "thermo_style custom step pe press c_pes c_sas",
          "thermo_modify format float %20.15g"};
}

Snapshot gather(Sim &s)
{
  LAMMPS *lmp = s.lmp;
  Snapshot snap;
  const int n = static_cast<int>(lmp->atom->natoms);
  const int nlocal = lmp->atom->nlocal;
  snap.eatom.assign(n, 0.0);
  snap.f.assign(3 * n, 0.0);
  snap.x.assign(3 * n, 0.0);
  snap.vatom.assign(6 * n, 0.0);
  auto *pea = find_compute(lmp, "pea");
  auto *sa = find_compute(lmp, "sa");
  const double nktv2p = lmp->force->nktv2p;
  for (int i = 0; i < nlocal; i++) {
    const int t = static_cast<int>(lmp->atom->tag[i]) - 1;
    if (pea) snap.eatom[t] = pea->vector_atom[i];
    double unwrap[3];
    lmp->domain->unmap(lmp->atom->x[i], lmp->atom->image[i], unwrap);
    for (int d = 0; d < 3; d++) {
      snap.f[3 * t + d] = lmp->atom->f[i][d];
      snap.x[3 * t + d] = unwrap[d];
    }
    if (sa)
      for (int m = 0; m < 6; m++) snap.vatom[6 * t + m] = -sa->array_atom[i][m] / nktv2p;
  }
  auto allsum = [&](std::vector<double> &v) {
    std::vector<double> out(v.size());
    MPI_Allreduce(v.data(), out.data(), static_cast<int>(v.size()), MPI_DOUBLE, MPI_SUM, s.comm_);
    v = out;
  };
  allsum(snap.eatom);
  allsum(snap.f);
  allsum(snap.x);
  allsum(snap.vatom);
  snap.virial.assign(lmp->force->pair->virial, lmp->force->pair->virial + 6);
  allsum(snap.virial);
  snap.energy = lammps_get_thermo(lmp, "pe");
  int dim = 0;
  auto *st = static_cast<double *>(lmp->force->pair->extract("deqformer/solver_stats", dim));
  if (st) snap.stats.assign(st, st + NSTATS);
  snap.pair_style = lmp->force->pair_style;
  return snap;
}

// runs `body` on the first `nprocs` world ranks; the result is broadcast to every world rank
Snapshot run_on(int nprocs, const Mode &mode, const std::function<Snapshot(Sim &)> &body)
{
  MPI_Comm comm;
  MPI_Comm_split(MPI_COMM_WORLD, world_rank < nprocs ? 0 : MPI_UNDEFINED, world_rank, &comm);
  Snapshot snap;
  if (comm != MPI_COMM_NULL) {
    try {
      Sim s(comm, mode);
      snap = body(s);
    } catch (LAMMPS_NS::LAMMPSException &e) {
      snap.error = e.what();
    }
    MPI_Comm_free(&comm);
  }
  std::vector<double> flat = snap.flat();
  int len = static_cast<int>(flat.size());
  MPI_Bcast(&len, 1, MPI_INT, 0, MPI_COMM_WORLD);
  flat.resize(len);
  MPI_Bcast(flat.data(), len, MPI_DOUBLE, 0, MPI_COMM_WORLD);
  snap.unflat(flat);
  for (std::string *str : {&snap.error, &snap.pair_style}) {
    int n = static_cast<int>(str->size());
    MPI_Bcast(&n, 1, MPI_INT, 0, MPI_COMM_WORLD);
    str->resize(n);
    MPI_Bcast(&(*str)[0], n, MPI_CHAR, 0, MPI_COMM_WORLD);
  }
  return snap;
}

Snapshot single_point(int nprocs, const Mode &mode, const std::string &datafile,
                      const std::string &style_args = TIGHT, const std::string &model = "model_f64.pt")
{
  return run_on(nprocs, mode, [&](Sim &s) {
    s.cmds(setup_commands(datafile, style_args, model));
    s.cmd("run 0");
    return gather(s);
  });
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

struct Diff {
  double energy, eatom, f, x, virial, vatom;
};

Diff diff(const Snapshot &a, const Snapshot &b)
{
  return {rel_diff({a.energy}, {b.energy}), rel_diff(a.eatom, b.eatom), rel_diff(a.f, b.f),
          rel_diff(a.x, b.x),               rel_diff(a.virial, b.virial), rel_diff(a.vatom, b.vatom)};
}

void expect_same(const Snapshot &a, const Snapshot &b, double tol, const std::string &what)
{
  ASSERT_EQ(a.error, "") << what;
  ASSERT_EQ(b.error, "") << what;
  ASSERT_EQ(a.stats.size(), static_cast<size_t>(NSTATS)) << what;
  ASSERT_EQ(b.stats.size(), static_cast<size_t>(NSTATS)) << what;
  const Diff d = diff(a, b);
  EXPECT_LE(d.energy, tol) << what;
  EXPECT_LE(d.eatom, tol) << what;
  EXPECT_LE(d.f, tol) << what;
  EXPECT_LE(d.x, tol) << what;
  EXPECT_LE(d.virial, tol) << what;
  EXPECT_LE(d.vatom, tol) << what;
  if (world_rank == 0)
    std::printf("[ info ] %s: rel. diff. energy %.1e per-atom energy %.1e forces %.1e positions %.1e virial %.1e "
                "per-atom virial %.1e; iterations %g/%g vs %g/%g\n",
                what.c_str(), d.energy, d.eatom, d.f, d.x, d.virial, d.vatom, a.stats[STAT_ITERS],
                a.stats[STAT_ADJ_ITERS], b.stats[STAT_ITERS], b.stats[STAT_ADJ_ITERS]);
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
  return run_on(1, mode, [&](Sim &s) {
           s.cmds(lines);
           return Snapshot();
         })
      .error;
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
      s.cmds({"velocity all create 300 4928459 loop geom", "fix nve all nve", "timestep 0.0005", "run 6"});
      return gather(s);
    });
  };
  Snapshot on = run("yes"), off = run("no");
  expect_same(on, off, 1e-8, "deqformer/kk, 6 MD steps, reuse yes vs no");
  EXPECT_LT(on.stats[STAT_MEAN_ITERS], off.stats[STAT_MEAN_ITERS]);
  EXPECT_LT(on.stats[STAT_MEAN_ADJ_ITERS], off.stats[STAT_MEAN_ADJ_ITERS]);
  if (world_rank == 0)
    std::printf("[ info ] deqformer/kk mean iterations (forward/adjoint), tol 1e-12: reuse no %.2f/%.2f, yes "
                "%.2f/%.2f\n",
                off.stats[STAT_MEAN_ITERS], off.stats[STAT_MEAN_ADJ_ITERS], on.stats[STAT_MEAN_ITERS],
                on.stats[STAT_MEAN_ADJ_ITERS]);
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
  expect_same(kk, kk_straight, 1e-10, "deqformer/kk: run 3 + restart + run 3 vs run 6");
  expect_same(from_cpu, cpu_straight, 1e-10, "restart file of deqformer continued by deqformer/kk");
  EXPECT_NEAR(kk.stats[STAT_MEAN_ITERS], kk_straight.stats[STAT_MEAN_ITERS], 0.21);
  EXPECT_NEAR(from_cpu.stats[STAT_MEAN_ITERS], cpu_straight.stats[STAT_MEAN_ITERS], 0.21);
  EXPECT_LT(kk.stats[STAT_MEAN_ITERS], cold.stats[STAT_MEAN_ITERS]);
  if (world_rank == 0) {
    std::printf("[ info ] deqformer/kk restart: mean iterations after the restart point: continuous %.2f, "
                "restarted %.2f, restarted without state %.2f; CPU-style file: continuous %.2f, continued by kk "
                "%.2f\n",
                kk_straight.stats[STAT_MEAN_ITERS], kk.stats[STAT_MEAN_ITERS], cold.stats[STAT_MEAN_ITERS],
                cpu_straight.stats[STAT_MEAN_ITERS], from_cpu.stats[STAT_MEAN_ITERS]);
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

  // the CPU style's device keyword: accepted exactly where this LibTorch sees a GPU, a clear error
  // elsewhere (the CI machine: a CPU LibTorch), and for bad names
  std::vector<std::string> dev = setup_commands("aspirin_1.data", "device cuda");
  std::string msg = lammps_error(CPU, dev);
  if (torch::cuda::is_available())
    EXPECT_EQ(msg, "") << "LibTorch sees a GPU, yet device cuda was refused";
  else
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
