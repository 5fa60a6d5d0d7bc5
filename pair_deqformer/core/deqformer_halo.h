// deqformer: the communication layer the driver needs (docs/contract.md, "Driving the model").
//
// Per-atom tensors have N_all = n_local + n_ghost rows, local atoms first. A ghost row is a copy of an
// atom owned by this or another process (a periodic image, or an atom of a neighbouring domain).
#pragma once

#include <cstdint>
#include <vector>

#include <torch/types.h>

namespace deqformer {

class HaloExchange {
 public:
  virtual ~HaloExchange() = default;
  // copy each owner's row into its ghost rows (rows >= n_local of z_all); collective
  virtual void forward(torch::Tensor &z_all) = 0;
  // add each ghost row of v_all into its owner's row; ghost rows are left as they are; collective
  virtual void reverse(torch::Tensor &v_all) = 0;
  // global reductions over all processes; collective
  virtual double allreduce_max(double value) = 0;
  virtual double allreduce_sum(double value) = 0;
};

// One process. Ghost g (row n_local + g) is a periodic image of local atom ghost_owner[g];
// with no ghosts this is the trivial exchange.
class SerialHalo : public HaloExchange {
 public:
  SerialHalo() = default;
  explicit SerialHalo(std::vector<int64_t> ghost_owner);

  void forward(torch::Tensor &z_all) override;
  void reverse(torch::Tensor &v_all) override;
  double allreduce_max(double value) override { return value; }
  double allreduce_sum(double value) override { return value; }

 private:
  torch::Tensor owner_;    // int64 [n_ghost]
};

}    // namespace deqformer
