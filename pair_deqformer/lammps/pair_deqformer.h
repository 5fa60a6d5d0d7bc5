/* -*- c++ -*- ----------------------------------------------------------
   pair_style deqformer: a deep-equilibrium equivariant transformer potential
   (deployed TorchScript model, docs/contract.md of the deqformer project).

   Each force evaluation solves the model's fixed point z* = f(z*) over all atoms with one
   forward communication of the per-atom state per iteration, then the adjoint fixed point
   u* = dE/dz* + J^T u* with one reverse communication per iteration, and gets exact forces from
   dE/d(edge vector). z* and u* are kept per atom (fix DEQFORMER/STATE) to start the next step.
------------------------------------------------------------------------- */

#ifdef PAIR_CLASS
// clang-format off
PairStyle(deqformer,PairDeqformer);
// clang-format on
#else

#ifndef LMP_PAIR_DEQFORMER_H
#define LMP_PAIR_DEQFORMER_H

#include "atom.h"
#include "deqformer_pair_rules.h"
#include "deqformer_solver_stats.h"
#include "pair.h"

#include <memory>
#include <string>
#include <vector>

namespace deqformer {
class Model;
struct DriverSettings;
struct Graph;
struct Result;
}    // namespace deqformer
namespace at {
class Tensor;
}

namespace LAMMPS_NS {

class FixDeqformerState;

class PairDeqformer : public Pair {
 public:
  PairDeqformer(class LAMMPS *);
  ~PairDeqformer() override;
  void compute(int, int) override;
  void settings(int, char **) override;
  void coeff(int, char **) override;
  void init_style() override;
  double init_one(int, int) override;
  void setup() override;
  void *extract(const char *, int &) override;
  double memory_usage() override;

  int pack_forward_comm(int, int *, double *, int, int *) override;
  void unpack_forward_comm(int, int, double *) override;
  int pack_reverse_comm(int, int, double *) override;
  void unpack_reverse_comm(int, int *, double *) override;

  // used by the halo exchange: tensor whose rows the comm routines above pack/unpack. A tensor on
  // a GPU (keyword device cuda) is staged through host memory for LAMMPS's host communication.
  void *comm_tensor;
  virtual void forward_state(void *tensor);
  virtual void reverse_state(void *tensor);

 protected:
  // the host pack/unpack routines above: rows list[0..n) (or first.. when list is null) of comm_tensor
  // and buf, moved by op (deqformer::pair_rules::RowOp); returns the number of values
  int comm_rows(int n, const int *list, int first, double *buf, int op);
  virtual void allocate();
  void load_model(const std::string &file);
  void apply_settings();
  // moves the model to the device it runs on (keyword device; the Kokkos variant: its execution space)
  virtual void select_device();
  void set_torch_threads(int n);
  void select_backend();
  // the per-atom state store: fix DEQFORMER/STATE (the Kokkos variant: its DualView version)
  virtual void ensure_state_fix();
  // how the user turns newton pair on (the KOKKOS package has its own setting, off by default on GPUs)
  virtual const char *newton_hint() const { return "remove 'newton off' or use 'newton on'"; }
  std::string state_fix_id();
  // the store of fix style `style` under the ID state_fix_id(): the existing one when it has this style
  // and state size, else a new one, which takes the states of a restart file's store of one of
  // other_styles (a restart file of the other pair style)
  FixDeqformerState *state_store(const std::string &style, const std::vector<std::string> &other_styles);
  // the solver settings of the keywords, as the driver takes them
  deqformer::DriverSettings driver_settings() const;
  // runs the driver (docs/contract.md steps 1-5) with this pair style's communication; LAMMPS errors
  // for non-convergence under 'nonconvergence error' and for model failures
  void run_driver(const deqformer::Graph &graph, const at::Tensor &z0, const at::Tensor &u0,
                  const deqformer::DriverSettings &ds, deqformer::Result &res);
  // statistics vector and the non-convergence warning after an evaluation
  void record_stats(const deqformer::Result &res, const deqformer::DriverSettings &ds);
  // rank of this process among the processes of its node (to spread them over the node's GPUs)
  int node_local_rank();
  // Geometry this model is not defined for: a local atom with a non-finite position, or two model atoms
  // closer than min_dist, or at exactly the same place (overlapping). Collective: every rank calls it with what it found (counts,
  // the first such atom, the closest pair) and all stop with one error that names the atoms.
  struct BadGeometry {
    bigint nonfinite = 0, close = 0;
    tagint nonfinite_tag = 0, close_i = 0, close_j = 0;
    double close_r = 1e300;
    void pair(tagint ti, tagint tj, double rsq);
  };
  void check_geometry(const BadGeometry &bad);
  // the scan behind it over local atoms and a neighbour list (CPU style; rare path of the kk style)
  template <class X, class Nbr>
  void scan_geometry(const X &xs, int nlocal, int inum, const int *ilist, const int *numneigh, const Nbr &nbr,
                     BadGeometry &bad);
  double min_dist;    // keyword min_dist (Angstrom in metal and real units), default 0.1
  double edge_cache_mb;    // keyword edge_cache: MB per process for the native backend's kept edge work
  int num_threads;         // keyword threads: LibTorch intra-op threads per process, 0 = the default

  std::string model_file;
  std::unique_ptr<deqformer::Model> model;
  int *type_map;    // LAMMPS type -> model type index, -1 for NULL
  double r_max, r_max_sq;
  double energy_factor;    // model energy unit (eV) -> LAMMPS energy unit
  int state_dim;

  // solver settings (model defaults, overridden by pair_style keywords)
  int kind, max_iter, solver_memory;
  double tol, adjoint_tol, beta, lam;
  // start of each solve: zero, the last stored fixed point, or the extrapolation from the last two
  enum { REUSE_NO = 0, REUSE_LAST = 1, REUSE_EXTRAPOLATE = 2 };
  int reuse, nonconv_error;
  static const char *reuse_name(int mode);
  bool extrapolate_now() const;
  std::string device_name;    // keyword device: cpu (default), cuda, cuda:N
  std::string backend_name;   // keyword backend: auto (default: native where it can), native, torchscript
  int use_native = 0;         // the backend chosen: 1 native, 0 torchscript
  std::string backend_note;   // the backend chosen, and why not native (for the log)
  // which keywords were given (keep them over the model defaults)
  int set_kind, set_max_iter, set_memory, set_tol, set_adjoint_tol, set_beta;

  std::string fix_id;
  FixDeqformerState *fix_state;

  double stats[deqformer::solver_stats::NSTATS];    // see deqformer_solver_stats.h
  double run_iters, run_adj_iters;
  int nwarn;
};

// positions xs(i, d), neighbours nbr(i, jj) (unmasked), centres ilist[0..inum)
template <class X, class Nbr>
void PairDeqformer::scan_geometry(const X &xs, int nlocal, int inum, const int *ilist, const int *numneigh,
                                  const Nbr &nbr, BadGeometry &bad)
{
  using namespace deqformer::pair_rules;
  const tagint *tag = atom->tag;
  const int *type = atom->type;
  for (int i = 0; i < nlocal; i++)
    if (!is_finite_position(xs(i, 0), xs(i, 1), xs(i, 2)))
      if (bad.nonfinite++ == 0) bad.nonfinite_tag = tag[i];
  const double min_sq = min_dist * min_dist;
  double d[3];
  for (int ii = 0; ii < inum; ii++) {
    const int i = ilist[ii];
    if (!is_model_atom(type_map[type[i]])) continue;
    for (int jj = 0; jj < numneigh[i]; jj++) {
      const int j = nbr(i, jj) & NEIGHMASK;
      if (!is_model_atom(type_map[type[j]])) continue;
      const double rsq = separation(xs, i, j, d);
      if (is_overlap(rsq, min_sq)) bad.pair(tag[i], tag[j], rsq);
    }
  }
}

}    // namespace LAMMPS_NS

#endif
#endif
