// deqformer: single-process halo exchange (periodic images of local atoms).
#include "deqformer_halo.h"

#include <torch/torch.h>

namespace deqformer {

SerialHalo::SerialHalo(std::vector<int64_t> ghost_owner)
{
  owner_ = torch::tensor(ghost_owner, torch::kInt64);
}

void SerialHalo::forward(torch::Tensor &z_all)
{
  const int64_t ng = owner_.numel();
  if (ng == 0) return;
  const int64_t n_local = z_all.size(0) - ng;
  torch::NoGradGuard no_grad;
  z_all.narrow(0, n_local, ng).copy_(z_all.index_select(0, owner_.to(z_all.device())));
}

void SerialHalo::reverse(torch::Tensor &v_all)
{
  const int64_t ng = owner_.numel();
  if (ng == 0) return;
  const int64_t n_local = v_all.size(0) - ng;
  torch::NoGradGuard no_grad;
  auto ghosts = v_all.narrow(0, n_local, ng).clone();
  v_all.narrow(0, 0, n_local).index_add_(0, owner_.to(v_all.device()), ghosts);
}

}    // namespace deqformer
