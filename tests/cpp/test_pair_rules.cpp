// The rules both pair styles apply to LAMMPS data (pair_deqformer/lammps/deqformer_pair_rules.h): the
// edge rule, the overlap predicate, the virial of an edge, the per-atom state layout and the row
// operations of the state communication with their float32/float64 dispatch.
#include "deqformer_pair_rules.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

using namespace deqformer::pair_rules;

namespace {
const double NaN = std::numeric_limits<double>::quiet_NaN();
const double Inf = std::numeric_limits<double>::infinity();
}    // namespace

TEST(PairRules, EdgeRule)
{
  const double r_max_sq = 25.0;
  EXPECT_TRUE(is_edge(0, 1.0, r_max_sq));
  EXPECT_TRUE(is_edge(2, 24.999, r_max_sq));
  EXPECT_FALSE(is_edge(0, 25.0, r_max_sq));    // the cutoff itself is outside
  EXPECT_FALSE(is_edge(0, 0.0, r_max_sq));     // an atom is not its own neighbour
  EXPECT_FALSE(is_edge(0, NaN, r_max_sq));
  EXPECT_FALSE(is_edge(-1, 1.0, r_max_sq));    // a NULL atom of pair hybrid
  EXPECT_TRUE(is_model_atom(0));
  EXPECT_FALSE(is_model_atom(-1));
  EXPECT_EQ(graph_type(3), 3);
  EXPECT_EQ(graph_type(-1), 0);

  const double x[2][3] = {{1.0, 2.0, 3.0}, {1.5, 1.0, 5.0}};
  auto xs = [&](int a, int k) { return x[a][k]; };
  double d[3];
  EXPECT_DOUBLE_EQ(separation(xs, 0, 1, d), 0.25 + 1.0 + 4.0);
  EXPECT_DOUBLE_EQ(d[0], 0.5);
  EXPECT_DOUBLE_EQ(d[1], -1.0);
  EXPECT_DOUBLE_EQ(d[2], 2.0);
}

TEST(PairRules, Overlap)
{
  const double min_sq = 0.01;
  EXPECT_TRUE(is_overlap(0.0025, min_sq));
  EXPECT_FALSE(is_overlap(0.01, min_sq));
  EXPECT_FALSE(is_overlap(1.0, min_sq));
  EXPECT_TRUE(is_overlap(0.0, 0.0));    // min_dist 0 still refuses atoms at the same place
  EXPECT_FALSE(is_overlap(1e-12, 0.0));
  EXPECT_TRUE(is_overlap(NaN, min_sq));
  EXPECT_TRUE(is_finite_position(1.0, -2.0, 1e300));
  EXPECT_FALSE(is_finite_position(NaN, 0.0, 0.0));
  EXPECT_FALSE(is_finite_position(0.0, Inf, 0.0));
  EXPECT_FALSE(is_finite_position(0.0, 0.0, -Inf));
}

// W = -r (x) g in LAMMPS's order xx, yy, zz, xy, xz, yz; for a central force (g parallel to r) it is the
// symmetric tensor whose trace is -r.g
TEST(PairRules, EdgeVirial)
{
  const double r[3] = {0.3, -1.2, 2.0};
  const double g[3] = {0.7, 0.4, -0.9};
  double w[6];
  edge_virial(r, g, w);
  const double expect[6] = {-r[0] * g[0], -r[1] * g[1], -r[2] * g[2], -r[0] * g[1], -r[0] * g[2], -r[1] * g[2]};
  for (int m = 0; m < 6; m++) EXPECT_DOUBLE_EQ(w[m], expect[m]) << m;

  const double s = -1.7;
  const double gc[3] = {s * r[0], s * r[1], s * r[2]};
  edge_virial(r, gc, w);
  EXPECT_DOUBLE_EQ(w[3], -r[1] * gc[0]);
  EXPECT_DOUBLE_EQ(w[4], -r[2] * gc[0]);
  EXPECT_DOUBLE_EQ(w[5], -r[2] * gc[1]);
  EXPECT_NEAR(w[0] + w[1] + w[2], -(r[0] * gc[0] + r[1] * gc[1] + r[2] * gc[2]), 1e-14);
}

TEST(PairRules, StateLayout)
{
  for (int dim : {1, 8, 100}) {
    EXPECT_EQ(state_layout::columns(dim), 1 + 4 * dim);
    // flag, then z*, u*, z*_prev and u*_prev side by side, covering the row
    EXPECT_EQ(state_layout::FLAG, 0);
    EXPECT_EQ(state_layout::Z, state_layout::FLAG + 1);
    EXPECT_EQ(state_layout::u(dim), state_layout::Z + dim);
    EXPECT_EQ(state_layout::z_prev(dim), state_layout::u(dim) + dim);
    EXPECT_EQ(state_layout::u_prev(dim), state_layout::z_prev(dim) + dim);
    EXPECT_EQ(state_layout::u_prev(dim) + dim, state_layout::columns(dim));
  }
}

// The history of one stored component over the evaluations of a run: what each solve starts from.
TEST(PairRules, StateHistory)
{
  using namespace state_layout;
  double flag = 0.0, now = 0.0, prev = 0.0;
  auto store = [&](bool new_step, double value) {
    store_value(flag, new_step, value, now, prev);
    flag = stored_flag(flag, new_step);
  };
  EXPECT_EQ(start_value(flag, true, now, prev), 0.0);    // nothing stored: cold start
  store(true, 1.0);                                       // step 0
  EXPECT_EQ(flag, 1.0);
  EXPECT_EQ(start_value(flag, true, now, prev), 1.0);    // one fixed point: reuse it
  store(false, 1.5);                                      // step 0 again (run 0): replaced, not shifted
  EXPECT_EQ(flag, 1.0);
  EXPECT_EQ(start_value(flag, true, now, prev), 1.5);
  store(true, 2.0);                                       // step 1
  EXPECT_EQ(flag, 2.0);
  EXPECT_EQ(prev, 1.5);
  // a quantity moving linearly in time is predicted exactly; without extrapolation the last value
  EXPECT_EQ(start_value(flag, true, now, prev), 2.5);
  EXPECT_EQ(start_value(flag, false, now, prev), 2.0);
  store(true, 2.5);                                       // step 2
  EXPECT_EQ(flag, 2.0);
  EXPECT_EQ(prev, 2.0);
  EXPECT_EQ(start_value(flag, true, now, prev), 3.0);
  store(false, 2.7);                                      // step 2 again: the previous stays step 1's
  EXPECT_EQ(prev, 2.0);
  EXPECT_EQ(now, 2.7);
  EXPECT_NEAR(start_value(flag, true, now, prev), 3.4, 1e-15);
}

TEST(PairRules, RowOperations)
{
  for (bool float64 : {true, false}) {
    bool called = false;
    with_float_type(float64, [&](auto zero) {
      using T = decltype(zero);
      called = true;
      EXPECT_EQ((std::is_same<T, double>::value), float64);
      T row[3] = {T(1.5), T(-2.0), T(0.25)};
      double buf[3] = {0.0, 0.0, 0.0};
      for (int k = 0; k < 3; k++) row_op(ROW_PACK, row[k], buf[k]);
      EXPECT_EQ(buf[0], 1.5);
      EXPECT_EQ(buf[1], -2.0);
      EXPECT_EQ(buf[2], 0.25);
      const double in[3] = {4.0, 5.0, -6.0};
      for (int k = 0; k < 3; k++) {
        double b = in[k];
        row_op(ROW_UNPACK, row[k], b);
      }
      EXPECT_EQ(row[0], T(4.0));
      EXPECT_EQ(row[2], T(-6.0));
      for (int k = 0; k < 3; k++) {
        double b = 1.0;
        row_op(ROW_ADD, row[k], b);
      }
      EXPECT_EQ(row[0], T(5.0));
      EXPECT_EQ(row[1], T(6.0));
      EXPECT_EQ(row[2], T(-5.0));
    });
    EXPECT_TRUE(called);
  }
}
