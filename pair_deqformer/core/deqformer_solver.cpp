// deqformer: native per-atom solver updates (deqformer_solver.h), the rules of models/deqformer/solvers.py.
#include "deqformer_solver.h"

#include "deqformer_model.h"

#include <cmath>
#include <limits>

namespace deqformer {

namespace {
constexpr int MAX_MEMORY = 16;    // Anderson's Gram matrix lives on the stack
}

bool NativeSolver::supports(int kind, int memory)
{
  return (kind == ANDERSON && memory >= 1 && memory <= MAX_MEMORY) || kind == PICARD;
}

NativeSolver::NativeSolver(int kind, int64_t n, int64_t d, int memory) : kind_(kind), n_(n), d_(d), memory_(memory)
{
  if (!supports(kind, memory))
    throw Error("native solver: solver " + solver_name(kind) + " with memory " + std::to_string(memory) +
                " is not implemented natively");
}

torch::Tensor NativeSolver::update(const torch::Tensor &z, const torch::Tensor &fz, int k, double beta, double lam)
{
  if (n_ == 0) return fz;
  if (kind_ == PICARD) return beta * fz + (1.0 - beta) * z;
  if (z.scalar_type() == torch::kFloat64) return anderson<double>(z, fz, k, beta, lam);
  return anderson<float>(z, fz, k, beta, lam);
}

// Anderson mixing with a ridge on the Gram matrix of the residual history (solvers.py, kind 0): the
// weights a solve (G G^T + lam mean(diag) I) a = 1, normalised to sum 1; an atom whose system is
// singular or gives non-finite weights takes the plain step f(z).
template <typename T>
torch::Tensor NativeSolver::anderson(const torch::Tensor &zt, const torch::Tensor &fzt, int k, double beta, double lam)
{
  const int m = memory_;
  // with beta = 1 the next iterate mixes only the f(z) history: the z history is not kept (n m D values)
  const bool mix_x = beta != 1.0;
  if (mix_x && !hx_.defined()) hx_ = torch::zeros({n_, m, d_}, zt.options());
  if (!hf_.defined()) {
    hf_ = torch::zeros({n_, m, d_}, zt.options());
    hg_ = torch::zeros({n_, m, d_}, zt.options());
    gram_ = torch::zeros({n_, m, m}, zt.options());
  }
  const torch::Tensor zc = zt.contiguous(), fc = fzt.contiguous();
  const T *z = zc.data_ptr<T>(), *fz = fc.data_ptr<T>();
  T *hx = mix_x ? hx_.data_ptr<T>() : nullptr, *hf = hf_.data_ptr<T>(), *hg = hg_.data_ptr<T>(), *hgram = gram_.data_ptr<T>();
  torch::Tensor out = torch::empty({n_, d_}, zt.options());
  T *next = out.data_ptr<T>();
  const int slot = k % m;
  const int h = std::min(k + 1, m);
  const T b = static_cast<T>(beta), lm = static_cast<T>(lam);
  T gram[MAX_MEMORY][MAX_MEMORY], a[MAX_MEMORY];
  for (int64_t i = 0; i < n_; ++i) {
    T *xi = mix_x ? hx + i * m * d_ : nullptr, *fi = hf + i * m * d_, *gi = hg + i * m * d_, *Gi = hgram + i * m * m;
    for (int64_t c = 0; c < d_; ++c) {
      if (mix_x) xi[slot * d_ + c] = z[i * d_ + c];
      fi[slot * d_ + c] = fz[i * d_ + c];
      gi[slot * d_ + c] = fz[i * d_ + c] - z[i * d_ + c];
    }
    // only the new residual's row of the Gram matrix changes; the others are kept from earlier updates
    for (int s = 0; s < h; ++s) {
      T acc = 0;
      for (int64_t c = 0; c < d_; ++c) acc += gi[slot * d_ + c] * gi[s * d_ + c];
      Gi[slot * m + s] = Gi[s * m + slot] = acc;
    }
    for (int r = 0; r < h; ++r)
      for (int s = 0; s < h; ++s) gram[r][s] = Gi[r * m + s];
    T scale = 0;
    for (int r = 0; r < h; ++r) scale += gram[r][r];
    scale = scale / h + T(1e-30);
    for (int r = 0; r < h; ++r) {
      gram[r][r] += lm * scale;
      a[r] = T(1);
    }
    // LU with partial pivoting (as LAPACK getrf/getrs), in place
    bool ok = true;
    int piv[MAX_MEMORY];
    for (int c = 0; c < h && ok; ++c) {
      int p = c;
      for (int r = c + 1; r < h; ++r)
        if (std::abs(gram[r][c]) > std::abs(gram[p][c])) p = r;
      piv[c] = p;
      if (gram[p][c] == T(0)) {
        ok = false;
        break;
      }
      if (p != c)
        for (int s = 0; s < h; ++s) std::swap(gram[p][s], gram[c][s]);
      const T inv = T(1) / gram[c][c];
      for (int r = c + 1; r < h; ++r) {
        gram[r][c] *= inv;
        for (int s = c + 1; s < h; ++s) gram[r][s] -= gram[r][c] * gram[c][s];
      }
    }
    if (ok) {
      for (int c = 0; c < h; ++c)
        if (piv[c] != c) std::swap(a[c], a[piv[c]]);
      for (int r = 0; r < h; ++r)
        for (int s = 0; s < r; ++s) a[r] -= gram[r][s] * a[s];
      for (int r = h - 1; r >= 0; --r) {
        for (int s = r + 1; s < h; ++s) a[r] -= gram[r][s] * a[s];
        a[r] /= gram[r][r];
      }
      T sum = 0;
      for (int r = 0; r < h; ++r) sum += a[r];
      for (int r = 0; r < h; ++r) {
        a[r] /= sum;
        ok = ok && std::isfinite(a[r]);
      }
    }
    if (!ok)
      for (int r = 0; r < h; ++r) a[r] = r == slot ? T(1) : T(0);
    for (int64_t c = 0; c < d_; ++c) {
      T mf = 0, mx = 0;
      for (int r = 0; r < h; ++r) mf += a[r] * fi[r * d_ + c];
      if (!mix_x) {
        next[i * d_ + c] = mf;
        continue;
      }
      for (int r = 0; r < h; ++r) mx += a[r] * xi[r * d_ + c];
      next[i * d_ + c] = b * mf + (T(1) - b) * mx;
    }
  }
  return out;
}

namespace {
template <typename T> double residual(const torch::Tensor &zt, const torch::Tensor &ft)
{
  const torch::Tensor zc = zt.contiguous(), fc = ft.contiguous();
  const T *z = zc.data_ptr<T>(), *f = fc.data_ptr<T>();
  const int64_t n = zc.size(0), d = zc.size(1);
  double worst = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    T num = 0, den = 0;
    for (int64_t c = 0; c < d; ++c) {
      const T fv = f[i * d + c];
      if (!std::isfinite(fv)) return std::numeric_limits<double>::infinity();
      num += (fv - z[i * d + c]) * (fv - z[i * d + c]);
      den += fv * fv;
    }
    const T r = std::sqrt(num) / (std::sqrt(den) + T(1e-12));
    worst = std::max(worst, static_cast<double>(r));
  }
  return worst;
}
}    // namespace

double max_relative_residual(const torch::Tensor &z, const torch::Tensor &fz)
{
  if (fz.size(0) == 0) return 0.0;
  return fz.scalar_type() == torch::kFloat64 ? residual<double>(z, fz) : residual<float>(z, fz);
}

}    // namespace deqformer
