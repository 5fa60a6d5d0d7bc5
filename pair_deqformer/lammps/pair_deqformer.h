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

#include "pair.h"

#include <memory>
#include <string>
#include <vector>

namespace deqformer {
class Model;
}

namespace LAMMPS_NS {

class FixDeqformerState;

class PairDeqformer : public Pair {
 public:
  // entries of the statistics vector (extract "deqformer/solver_stats", compute deqformer/solver)
  enum {
    STAT_ITERS, STAT_ADJ_ITERS, STAT_RESIDUAL, STAT_ADJ_RESIDUAL, STAT_MEAN_ITERS, STAT_MEAN_ADJ_ITERS,
    STAT_EVALS, STAT_NOT_CONVERGED, STAT_NOT_CONVERGED_TOTAL, STAT_TIME_FORWARD, STAT_TIME_ADJOINT,
    STAT_TIME_COMM, STAT_TIME_EDGES, STAT_TIME_TOTAL, NSTATS
  };

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

  // used by the halo exchange: tensor whose rows the comm routines above pack/unpack
  void *comm_tensor;
  void forward_state(void *tensor);
  void reverse_state(void *tensor);

 protected:
  virtual void allocate();
  void load_model(const std::string &file);
  void apply_settings();
  void ensure_state_fix();

  std::string model_file;
  std::unique_ptr<deqformer::Model> model;
  std::vector<std::string> style_args;    // keyword/value pairs of pair_style, applied once the model is known
  int *type_map;                          // LAMMPS type -> model type index, -1 for NULL
  std::vector<std::string> elements;      // element given for each LAMMPS type
  double r_max, r_max_sq;
  double energy_factor;    // model energy unit (eV) -> LAMMPS energy unit
  int state_dim;

  // solver settings (model defaults, overridden by pair_style keywords)
  int kind, max_iter, solver_memory;
  double tol, adjoint_tol, beta, lam;
  int reuse, nonconv_error;
  // which keywords were given (keep them over the model defaults)
  int set_kind, set_max_iter, set_memory, set_tol, set_adjoint_tol, set_beta;

  std::string fix_id;
  FixDeqformerState *fix_state;

  double stats[NSTATS];
  double run_iters, run_adj_iters;
  int nwarn;
};

}    // namespace LAMMPS_NS

#endif
#endif
