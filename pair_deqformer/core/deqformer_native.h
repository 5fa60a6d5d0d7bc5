// deqformer: the native inference path. The deployed block's inference methods (docs/contract.md)
// written as fused per-atom / per-edge loops in plain C++, reading the weights and hyper-parameters
// from the TorchScript file. The TorchScript methods stay the reference (and the training path);
// tests/cpp/test_native.cpp holds every method here to them.
//
// What changes against the TorchScript route:
//  - no operator dispatch: one loop nest per method, the intermediates of one atom or one edge stay in
//    registers or a small scratch buffer;
//  - the adjoint's vector-Jacobian product is written by hand (no retained autograd graph): the
//    per-atom activations at z* are kept (`linearize`), the per-edge ones too as far as a memory budget
//    allows (set_edge_cache_bytes), the rest are recomputed per product;
//  - per-geometry work (edge features, input injection, the edges grouped by centre atom) is done
//    once per geometry by `prepare`.
// Supported: the 'cg' message operation, 'mlp' attention, one implicit block, on the CPU, float32 and
// float64 (the model's dtype). `NativeModel::unsupported` names anything else, and callers fall back
// to TorchScript.
#pragma once

#include "deqformer_model.h"

#include <memory>
#include <string>

namespace deqformer {

class NativeModel {
 public:
  // Why `model` cannot run natively ("" if it can): message operation, attention kind, device, ...
  static std::string unsupported(Model &model);

  // Reads weights and hyper-parameters from the loaded model; throws Error if unsupported(model) != "".
  explicit NativeModel(Model &model);
  ~NativeModel();
  NativeModel(const NativeModel &) = delete;
  NativeModel &operator=(const NativeModel &) = delete;

  // ---- the contract methods, same arguments, results and layouts as the TorchScript ones (CPU tensors
  //      of the model's dtype; int64 indices). They are stateless: each one prepares what it needs.
  torch::Tensor edge_features(const torch::Tensor &edge_vec, const torch::Tensor &types,
                              const torch::Tensor &edge_index);
  torch::Tensor inject(const torch::Tensor &types, const torch::Tensor &edge_index, const torch::Tensor &attr,
                       int64_t n_local);
  torch::Tensor step(const torch::Tensor &z_all, const torch::Tensor &x, const torch::Tensor &edge_index,
                     const torch::Tensor &attr, int64_t n_local);
  torch::Tensor atomic_energy(const torch::Tensor &z, const torch::Tensor &types);
  torch::Tensor pair_energy(const torch::Tensor &edge_vec, const torch::Tensor &types,
                            const torch::Tensor &edge_index, int64_t n_local);
  torch::Tensor energy_grad_z(const torch::Tensor &z, const torch::Tensor &types);
  torch::Tensor adjoint_step(const torch::Tensor &z_all, const torch::Tensor &x, const torch::Tensor &edge_index,
                             const torch::Tensor &attr, const torch::Tensor &u, int64_t n_local);
  torch::Tensor edge_grad(const torch::Tensor &z_all, const torch::Tensor &u, const torch::Tensor &types,
                          const torch::Tensor &edge_index, const torch::Tensor &edge_vec, int64_t n_local);

  // ---- the stateful path the driver uses: one geometry, many steps and products
  // Edge features, input injection and the centre-sorted edge order of one geometry.
  void prepare(const torch::Tensor &edge_vec, const torch::Tensor &types, const torch::Tensor &edge_index,
               int64_t n_local);
  const torch::Tensor &x() const;    // [n_local, D] input injection of the prepared geometry
  // f(z) [n_local, D] for z_all [N_all, D] of the prepared geometry
  torch::Tensor step(const torch::Tensor &z_all);
  // keeps the per-atom activations at z_all for vjp() and edge_grad()
  void linearize(const torch::Tensor &z_all);
  // (df/dz_all)^T u [N_all, D] at the linearization point, u [n_local, D]
  torch::Tensor vjp(const torch::Tensor &u);
  // dE/d(edge_vec) [E, 3] (edge order as given to prepare) at the linearization point z* and adjoint u
  torch::Tensor edge_grad(const torch::Tensor &u);
  // frees the per-geometry data
  void release();

  // Bytes held by the prepared geometry and the linearization (for the memory report).
  size_t bytes() const;

  // Memory that linearize() may spend on keeping the per-edge work of f(z*) (about 2.4 KB per edge in
  // float32 and 4.8 KB in float64 at the aspirin preset's size) so that vjp() and edge_grad() need not
  // recompute it; the edges of centres that do not fit are recomputed in every product.
  // Default DEFAULT_EDGE_CACHE_BYTES; 0 keeps none.
  static constexpr size_t DEFAULT_EDGE_CACHE_BYTES = size_t(64) << 20;
  void set_edge_cache_bytes(size_t bytes);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}    // namespace deqformer
