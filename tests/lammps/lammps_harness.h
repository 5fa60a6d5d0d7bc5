// The harness of the LAMMPS integration tests of deqformer and deqformer/kk: solver settings, the
// entries of the solver statistics (deqformer_solver_stats.h), a scratch folder, the per-run result
// record, one LAMMPS instance on a communicator, gathering its results over the ranks, running a test
// body on a sub-communicator, the common set-up commands and single point, and comparing two runs.
#pragma once

#include "atom.h"
#include "compute.h"
#include "deqformer_solver_stats.h"
#include "domain.h"
#include "exceptions.h"
#include "force.h"
#include "input.h"
#include "lammps.h"
#include "library.h"
#include "modify.h"
#include "pair.h"
#include "test_common.h"

#include <gtest/gtest.h>
#include <mpi.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

namespace deqtest {

inline const char *const TIGHT = "tol 1e-12 adjoint_tol 1e-12 max_iter 100";
using namespace deqformer::solver_stats;

// The pair_style line with the backend chosen by the environment (DEQ_TEST_BACKEND=native|torchscript,
// set by ctest for the two runs of each LAMMPS test): " backend X" after "deqformer" (and its model
// file, if it names one). Other lines, and every line when the variable is unset, stay as they are.
inline std::string with_backend(const std::string &line)
{
  const char *b = std::getenv("DEQ_TEST_BACKEND");
  if (!b || !*b || line.rfind("pair_style", 0) != 0) return line;
  const std::string key = " deqformer";
  size_t pos = line.find(key);
  if (pos == std::string::npos) pos = line.find(" deqformer/kk");
  if (pos == std::string::npos) return line;
  pos = line.find_first_of(" ", pos + 1);    // end of the style name
  if (pos == std::string::npos) return line + " backend " + b;
  const size_t start = line.find_first_not_of(" ", pos);
  if (start != std::string::npos) {
    const size_t end = std::min(line.find(' ', start), line.size());
    if (end - start > 3 && line.compare(end - 3, 3, ".pt") == 0) pos = end;
  }
  return line.substr(0, pos) + " backend " + b + line.substr(pos);
}

inline std::string tmpdir()
{
  const char *t = std::getenv("DEQ_TEST_TMP");
  std::string d = t ? t : "/tmp";
  std::string cmd = "mkdir -p '" + d + "'";
  if (std::system(cmd.c_str()) != 0) ADD_FAILURE() << "cannot create " << d;
  return d;
}

// Everything a test compares, gathered over the ranks of a run, in atom-ID order.
struct Snapshot {
  double energy = 0.0;
  std::vector<double> eatom, f, x, vatom, virial, stats;
  std::string error, pair_style;
  std::vector<double> flat() const
  {
    std::vector<double> v = {energy};
    for (auto *a : {&eatom, &f, &x, &vatom, &virial, &stats}) {
      v.push_back(static_cast<double>(a->size()));
      v.insert(v.end(), a->begin(), a->end());
    }
    return v;
  }
  void unflat(const std::vector<double> &v)
  {
    size_t k = 0;
    energy = v[k++];
    for (auto *a : {&eatom, &f, &x, &vatom, &virial, &stats}) {
      size_t n = static_cast<size_t>(v[k++]);
      a->assign(v.begin() + k, v.begin() + k + n);
      k += n;
    }
  }
};

inline LAMMPS_NS::Compute *find_compute(LAMMPS_NS::LAMMPS *lmp, const char *id)
{
  int i = lmp->modify->find_compute(id);
  return i >= 0 ? lmp->modify->compute[i] : nullptr;
}

// One LAMMPS instance on a communicator; `launch` are command-line arguments after the harness's own
// (e.g. "-k on t 2 -sf kk"). Every input line goes through with_backend.
class Sim {
 public:
  Sim(MPI_Comm comm, const std::vector<std::string> &launch) : comm_(comm)
  {
    std::vector<std::string> args = {"lmp", "-nocite", "-log", "none"};
    if (!std::getenv("DEQ_TEST_VERBOSE")) args.insert(args.end(), {"-screen", "none"});
    args.insert(args.end(), launch.begin(), launch.end());
    std::vector<char *> argv;
    for (auto &a : args) argv.push_back(&a[0]);
    lmp = new LAMMPS_NS::LAMMPS(static_cast<int>(argv.size()), argv.data(), comm);
  }
  ~Sim() { delete lmp; }
  Sim(const Sim &) = delete;
  Sim &operator=(const Sim &) = delete;
  void cmd(const std::string &line) { lmp->input->one(with_backend(line)); }
  void cmds(const std::vector<std::string> &lines)
  {
    for (const auto &l : lines) cmd(l);
  }
  LAMMPS_NS::LAMMPS *lmp;
  MPI_Comm comm_;
};

inline int world_rank_now()
{
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

// Results after a `run`, over all ranks of the instance, in atom-ID order: per-atom energies (compute
// "pea", pe/atom) and virials (compute "sa", stress/atom) when those computes exist and were invoked
// (by thermo), forces, unwrapped positions, the global virial, the potential energy and the solver
// statistics of the pair style.
inline Snapshot gather(Sim &s)
{
  LAMMPS_NS::LAMMPS *lmp = s.lmp;
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
    // stress/atom = -nktv2p * per-atom virial
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

// Runs `body` on a LAMMPS instance (started with `launch`) on the first `nprocs` world ranks and
// returns what it returns on rank 0 of that instance, on every world rank; a LAMMPS error becomes
// Snapshot::error.
inline Snapshot run_lammps_on(int nprocs, const std::vector<std::string> &launch,
                              const std::function<Snapshot(Sim &)> &body)
{
  MPI_Comm comm;
  MPI_Comm_split(MPI_COMM_WORLD, world_rank_now() < nprocs ? 0 : MPI_UNDEFINED, world_rank_now(), &comm);
  Snapshot snap;
  if (comm != MPI_COMM_NULL) {
    try {
      Sim s(comm, launch);
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
    int k = static_cast<int>(str->size());
    MPI_Bcast(&k, 1, MPI_INT, 0, MPI_COMM_WORLD);
    str->resize(k);
    MPI_Bcast(&(*str)[0], k, MPI_CHAR, 0, MPI_COMM_WORLD);
  }
  return snap;
}

// The commands every test starts with: units, a data file, the deqformer pair style, per-atom energy and
// virial computes summed in thermo (so that thermo invokes them), and compute deqformer/solver.
// Tests that replace the pair style edit entry 5.
inline std::vector<std::string> setup_commands(const std::string &datafile, const std::string &style_args = TIGHT,
                                               const std::string &model_file = "model_f64.pt",
                                               const std::string &units = "metal")
{
  return {"units " + units,
          "atom_style atomic",
          "atom_modify map array",
          "boundary p p p",
          "read_data " + data_path(datafile),
          "pair_style deqformer " + model_path(model_file) + " " + style_args,
          "pair_coeff * * H C O",
          "neighbor 1.0 bin",
          "compute pea all pe/atom",
          "compute sa all stress/atom NULL pair",
          "compute pes all reduce sum c_pea",
          "compute sas all reduce sum c_sa[1]",
          "compute solver all deqformer/solver",
          "thermo_style custom step pe press c_pes c_sas c_solver[1] c_solver[2]",
          "thermo_modify format float %20.15g"};
}

// `run 0` of setup_commands on the first `nprocs` ranks, LAMMPS started with `launch`; `before_data` goes
// in front of read_data (e.g. a processors grid).
inline Snapshot single_point_with(int nprocs, const std::vector<std::string> &launch, const std::string &datafile,
                                  const std::string &style_args = TIGHT,
                                  const std::string &model_file = "model_f64.pt", const std::string &units = "metal",
                                  const std::vector<std::string> &before_data = {})
{
  return run_lammps_on(nprocs, launch, [&](Sim &s) {
    auto lines = setup_commands(datafile, style_args, model_file, units);
    lines.insert(lines.begin() + 4, before_data.begin(), before_data.end());
    s.cmds(lines);
    s.cmd("run 0");
    return gather(s);
  });
}

// The message of the LAMMPS error the lines raise ("" if none), on one rank.
inline std::string lammps_error_with(const std::vector<std::string> &launch, const std::vector<std::string> &lines)
{
  return run_lammps_on(1, launch, [&](Sim &s) {
           s.cmds(lines);
           return Snapshot();
         })
      .error;
}

// Two runs agree to `tol` (largest relative difference) in every quantity gather() collects.
inline void expect_same(const Snapshot &a, const Snapshot &b, double tol, const std::string &what)
{
  ASSERT_EQ(a.error, "") << what;
  ASSERT_EQ(b.error, "") << what;
  ASSERT_GE(a.stats.size(), static_cast<size_t>(NSTATS)) << what;
  ASSERT_GE(b.stats.size(), static_cast<size_t>(NSTATS)) << what;
  const double de = rel_diff({a.energy}, {b.energy}), dea = rel_diff(a.eatom, b.eatom), df = rel_diff(a.f, b.f),
               dx = rel_diff(a.x, b.x), dw = rel_diff(a.virial, b.virial), dwa = rel_diff(a.vatom, b.vatom);
  EXPECT_LE(de, tol) << what;
  EXPECT_LE(dea, tol) << what;
  EXPECT_LE(df, tol) << what;
  EXPECT_LE(dx, tol) << what;
  EXPECT_LE(dw, tol) << what;
  EXPECT_LE(dwa, tol) << what;
  if (world_rank_now() == 0)
    std::printf("[ info ] %s: rel. diff. energy %.1e per-atom energy %.1e forces %.1e positions %.1e virial %.1e "
                "per-atom virial %.1e; iterations %g/%g vs %g/%g\n",
                what.c_str(), de, dea, df, dx, dw, dwa, a.stats[STAT_ITERS], a.stats[STAT_ADJ_ITERS],
                b.stats[STAT_ITERS], b.stats[STAT_ADJ_ITERS]);
}

}    // namespace deqtest
