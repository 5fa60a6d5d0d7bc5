// deqformer: the rules both pair styles (deqformer and deqformer/kk) apply to LAMMPS data, written once:
// which neighbour pairs become edges, which geometry is refused, the virial of an edge, the per-atom
// state layout of fix DEQFORMER/STATE, and the float32/float64 dispatch of the state communication.
//
// The functions are plain inline functions; included after the Kokkos headers (as the KOKKOS style
// does) they are KOKKOS_INLINE_FUNCTIONs, so the Kokkos kernels call the same code on the device.
#pragma once

#include <cstdint>

#ifdef KOKKOS_INLINE_FUNCTION
#define DEQFORMER_INLINE KOKKOS_INLINE_FUNCTION
#else
#define DEQFORMER_INLINE inline
#endif

namespace deqformer {
namespace pair_rules {

  // ---------------------------------------------------------------- atoms and edges
  // model_type: the model's type index of a LAMMPS type (pair_coeff's element), -1 for NULL (an atom of
  // another sub-style of pair hybrid)
  DEQFORMER_INLINE bool is_model_atom(int model_type)
  {
    return model_type >= 0;
  }

  // the type an atom has in the graph: NULL atoms take 0, they have no edges and get no energy
  DEQFORMER_INLINE int64_t graph_type(int model_type)
  {
    return model_type >= 0 ? model_type : 0;
  }

  // d = r_j - r_i from positions x(a, k); returns |d|^2
  template <class X> DEQFORMER_INLINE double separation(const X &x, int i, int j, double d[3])
  {
    d[0] = x(j, 0) - x(i, 0);
    d[1] = x(j, 1) - x(i, 1);
    d[2] = x(j, 2) - x(i, 2);
    return d[0] * d[0] + d[1] * d[1] + d[2] * d[2];
  }

  // the edge rule: neighbour j of a local centre i of a model type is an edge i <- j when j is of a
  // model type and 0 < |r_j - r_i| < r_max (a NaN distance is no edge)
  DEQFORMER_INLINE bool is_edge(int model_type_j, double rsq, double r_max_sq)
  {
    return model_type_j >= 0 && rsq > 0.0 && rsq < r_max_sq;
  }

  // ---------------------------------------------------------------- geometry the model refuses
  // two model atoms closer than min_dist, or on top of each other (also with min_dist 0), or at a
  // non-finite distance
  DEQFORMER_INLINE bool is_overlap(double rsq, double min_dist_sq)
  {
    return !(rsq >= min_dist_sq) || rsq == 0.0;
  }

  // a position without NaN or inf (x - x is 0 exactly for finite x)
  DEQFORMER_INLINE bool is_finite_position(double x, double y, double z)
  {
    return x - x == 0.0 && y - y == 0.0 && z - z == 0.0;
  }

  // ---------------------------------------------------------------- virial
  // W_e = -r_e (x) g_e of an edge with vector r_e = r_j - r_i and g_e = dE/dr_e, in LAMMPS's order xx,
  // yy, zz, xy, xz, yz. The pair styles add it to the global virial and half of it to each end atom.
  DEQFORMER_INLINE void edge_virial(const double r[3], const double g[3], double w[6])
  {
    w[0] = -r[0] * g[0];
    w[1] = -r[1] * g[1];
    w[2] = -r[2] * g[2];
    w[3] = -r[0] * g[1];
    w[4] = -r[0] * g[2];
    w[5] = -r[1] * g[2];
  }

  // ---------------------------------------------------------------- per-atom state
  // A row of fix DEQFORMER/STATE for state size D: [flag, z*(D), u*(D), z*_prev(D), u*_prev(D)].
  // flag counts the successive fixed points the row holds: 0 none, 1 the last (z*, u*), 2 also the
  // one before (z*_prev, u*_prev), computed at the two MD steps before the current one.
  namespace state_layout {
    constexpr int FLAG = 0;    // column of the flag
    constexpr int Z = 1;       // first column of z*
    DEQFORMER_INLINE int u(int dim)    // first column of u*
    {
      return 1 + dim;
    }
    DEQFORMER_INLINE int z_prev(int dim)
    {
      return 1 + 2 * dim;
    }
    DEQFORMER_INLINE int u_prev(int dim)
    {
      return 1 + 3 * dim;
    }
    DEQFORMER_INLINE int columns(int dim)
    {
      return 1 + 4 * dim;
    }

    // Start value of one component of a solve: zero without a stored state; the last fixed point s_n;
    // or, when the two stored fixed points belong to the two preceding steps of one run, their linear
    // extrapolation 2 s_n - s_{n-1}, whose error is second order in the time step instead of first.
    DEQFORMER_INLINE double start_value(double flag, bool extrapolate, double now, double prev)
    {
      if (flag < 1.0) return 0.0;
      return (extrapolate && flag >= 2.0) ? 2.0 * now - prev : now;
    }
    // Store one component of a new fixed point. At a new step the last one becomes the previous; a
    // second evaluation at the same step (setup, run 0) replaces the last one only.
    DEQFORMER_INLINE void store_value(double flag, bool new_step, double value, double &now, double &prev)
    {
      if (new_step && flag >= 1.0) prev = now;
      now = value;
    }
    DEQFORMER_INLINE double stored_flag(double flag, bool new_step)
    {
      if (flag < 1.0) return 1.0;
      return new_step ? 2.0 : flag;
    }
  }    // namespace state_layout

  // ---------------------------------------------------------------- state communication
  // The halo exchange moves rows of an [N_all, D] state or adjoint array of the model's dtype through
  // LAMMPS's double buffers. One value, by direction:
  enum RowOp {
    ROW_PACK,      // buffer = row (forward send list, reverse ghosts)
    ROW_UNPACK,    // row = buffer (forward ghosts)
    ROW_ADD        // row += buffer (reverse: owners collect their ghosts' contributions)
  };
  template <class T> DEQFORMER_INLINE void row_op(int op, T &row, double &buf)
  {
    if (op == ROW_PACK)
      buf = row;
    else if (op == ROW_UNPACK)
      row = static_cast<T>(buf);
    else
      row += static_cast<T>(buf);
  }

  // f(T()) with T the element type of the rows: double for a float64 model, float for float32
  template <class F> inline void with_float_type(bool float64, F &&f)
  {
    if (float64)
      f(double());
    else
      f(float());
  }

}    // namespace pair_rules
}    // namespace deqformer
