// PairStyle.kokkos_omp: pair_style deqformer/kk through LAMMPS's force-style harness.
//
// Compiled into the harness program (test_pair_style, from LAMMPS 29Sep2021's unittest/force-styles),
// whose own tests have no KOKKOS variant in that version. It uses the harness's setup functions and the
// same YAML references as PairStyle.plain: the Kokkos style must reproduce the CPU style's init, run,
// restart and data-file results (LAMMPS started with -k on t 1 -sf kk, half and full neighbor lists).
#include "error_stats.h"
#include "test_config.h"
#include "test_main.h"

#include "atom.h"
#include "force.h"
#include "info.h"
#include "input.h"
#include "lammps.h"
#include "library.h"
#include "modify.h"
#include "compute.h"
#include "pair.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include <cmath>
#include <string>
#include <vector>

using LAMMPS_NS::LAMMPS;

// defined in LAMMPS's test_pair_style.cpp, linked into the same program
LAMMPS *init_lammps(int argc, char **argv, const TestConfig &cfg, const bool newton);
void run_lammps(LAMMPS *lmp);
void restart_lammps(LAMMPS *lmp, const TestConfig &cfg, bool nofdotr, bool newton);
void data_lammps(LAMMPS *lmp, const TestConfig &cfg);
void cleanup_lammps(LAMMPS *lmp, const TestConfig &cfg);

namespace {

// Kokkos may be initialised once per process: finalise it after the last test
class KokkosFinalize : public ::testing::Environment {
 public:
  void TearDown() override { lammps_kokkos_finalize(); }
};
const auto *const kokkos_env = ::testing::AddGlobalTestEnvironment(new KokkosFinalize);

// forces (by atom tag), virial and pair energy of the current LAMMPS state against one set of references
void expect_state(LAMMPS *lmp, const std::vector<coord_t> &f_ref, const stress_t &s_ref, double e_ref,
                  double epsilon, const std::string &what)
{
  ErrorStats stats;
  const int nlocal = lmp->atom->nlocal;
  ASSERT_EQ(nlocal + 1, (int) f_ref.size()) << what;
  auto f = lmp->atom->f;
  auto tag = lmp->atom->tag;
  for (int i = 0; i < nlocal; ++i) {
    EXPECT_FP_LE_WITH_EPS(f[i][0], f_ref[tag[i]].x, epsilon);
    EXPECT_FP_LE_WITH_EPS(f[i][1], f_ref[tag[i]].y, epsilon);
    EXPECT_FP_LE_WITH_EPS(f[i][2], f_ref[tag[i]].z, epsilon);
  }
  if (print_stats) std::cerr << what << " forces stats: " << stats << std::endl;
  stats.reset();
  const double *v = lmp->force->pair->virial;
  EXPECT_FP_LE_WITH_EPS(v[0], s_ref.xx, epsilon);
  EXPECT_FP_LE_WITH_EPS(v[1], s_ref.yy, epsilon);
  EXPECT_FP_LE_WITH_EPS(v[2], s_ref.zz, epsilon);
  EXPECT_FP_LE_WITH_EPS(v[3], s_ref.xy, epsilon);
  EXPECT_FP_LE_WITH_EPS(v[4], s_ref.xz, epsilon);
  EXPECT_FP_LE_WITH_EPS(v[5], s_ref.yz, epsilon);
  if (print_stats) std::cerr << what << " stress stats: " << stats << std::endl;
  stats.reset();
  EXPECT_FP_LE_WITH_EPS(lmp->force->pair->eng_vdwl, e_ref, epsilon);
  if (print_stats) std::cerr << what << " energy stats: " << stats << std::endl;
}

void kokkos_cycle(const char *neigh)
{
  std::vector<const char *> args = {"PairStyle", "-log", "none", "-echo", "screen", "-nocite", "-k", "on",
                                    "t", "1", "-sf", "kk", "-pk", "kokkos", "newton", "on", "neigh", neigh};
  char **argv = (char **) args.data();
  const int argc = (int) args.size();
  const std::string where = std::string("deqformer/kk, neigh ") + neigh;

  if (!verbose) ::testing::internal::CaptureStdout();
  LAMMPS *lmp = init_lammps(argc, argv, test_config, true);
  std::string output = verbose ? std::string() : ::testing::internal::GetCapturedStdout();
  if (!lmp) {
    std::cerr << "pair style " << test_config.pair_style << " has no /kk variant in this LAMMPS\n";
    GTEST_SKIP();
  }
  ASSERT_EQ(lmp->atom->natoms, lmp->atom->nlocal);
  ASSERT_TRUE(lmp->suffix_enable);
  EXPECT_THAT(std::string(lmp->force->pair_style), ::testing::EndsWith("/kk"));
  // a Kokkos style and the CPU style differ in summation order only
  const double epsilon = 10.0 * test_config.epsilon;
  expect_state(lmp, test_config.init_forces, test_config.init_stress, test_config.init_vdwl, epsilon,
               where + ", init");

  if (!verbose) ::testing::internal::CaptureStdout();
  run_lammps(lmp);
  if (!verbose) ::testing::internal::GetCapturedStdout();
  expect_state(lmp, test_config.run_forces, test_config.run_stress, test_config.run_vdwl, epsilon,
               where + ", run");
  // per-atom energies (compute pe/atom pair, summed) equal the pair energy
  const int id = lmp->modify->find_compute("sum");
  ASSERT_GE(id, 0);
  const double energy = lmp->modify->compute[id]->compute_scalar();
  EXPECT_NEAR(energy, lmp->force->pair->eng_vdwl, epsilon * std::fabs(energy));

  if (!verbose) ::testing::internal::CaptureStdout();
  restart_lammps(lmp, test_config, false, true);
  if (!verbose) ::testing::internal::GetCapturedStdout();
  expect_state(lmp, test_config.init_forces, test_config.init_stress, test_config.init_vdwl, epsilon,
               where + ", restart");

  if (!verbose) ::testing::internal::CaptureStdout();
  data_lammps(lmp, test_config);
  if (!verbose) ::testing::internal::GetCapturedStdout();
  expect_state(lmp, test_config.init_forces, test_config.init_stress, test_config.init_vdwl, epsilon,
               where + ", data file");

  if (!verbose) ::testing::internal::CaptureStdout();
  cleanup_lammps(lmp, test_config);
  if (!verbose) ::testing::internal::GetCapturedStdout();
}

}  // namespace

TEST(PairStyle, kokkos_omp)
{
  if (test_config.skip_tests.count(test_info_->name())) GTEST_SKIP();
  if (!LAMMPS::is_installed_pkg("KOKKOS")) GTEST_SKIP();
  kokkos_cycle("half");
  kokkos_cycle("full");
}
