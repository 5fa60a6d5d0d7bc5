// deqformer: native (hand-written) inference of a deployed model; see deqformer_native.h.
//
// Notation follows models/deqformer (model.py, nn/attention.py, nn/layers.py): a state is the flat e3nn
// layout [m0 scalars | m1 x 3 | m2 x 5] (channel-major, m fastest). Message features of an atom or an
// edge are kept component-major, [9][Cm] (component q = 0 | 1 2 3 | 4..8 for l = 0 | 1 | 2), so that
// every inner loop runs over the Cm channels with unit stride.
#include "deqformer_native.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <sstream>
#include <vector>

namespace deqformer {

namespace {

using Module = torch::jit::Module;

// attribute `path` ("block.attn.lin_src.w0") of a scripted module
c10::IValue attr_path(const Module &root, const std::string &path)
{
  Module cur = root;
  size_t start = 0;
  while (true) {
    size_t dot = path.find('.', start);
    const std::string part = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (!cur.hasattr(part)) throw Error("native backend: the model has no attribute '" + path + "'");
    c10::IValue v = cur.attr(part);
    if (dot == std::string::npos) return v;
    if (!v.isModule()) throw Error("native backend: '" + path + "' is not a module path");
    cur = v.toModule();
    start = dot + 1;
  }
}

bool has_path(const Module &root, const std::string &path)
{
  try {
    attr_path(root, path);
    return true;
  } catch (const Error &) {
    return false;
  }
}

template <typename T> std::vector<T> tensor_vec(const Module &m, const std::string &path, int64_t expect_numel = -1)
{
  c10::IValue v = attr_path(m, path);
  if (!v.isTensor()) throw Error("native backend: model attribute '" + path + "' is not a tensor");
  torch::Tensor t = v.toTensor().detach().to(torch::kCPU, c10::CppTypeToScalarType<T>::value).contiguous();
  if (expect_numel >= 0 && t.numel() != expect_numel) {
    std::ostringstream msg;
    msg << "native backend: model tensor '" << path << "' has " << t.numel() << " entries, expected "
        << expect_numel;
    throw Error(msg.str());
  }
  return std::vector<T>(t.data_ptr<T>(), t.data_ptr<T>() + t.numel());
}

int64_t int_attr(const Module &m, const std::string &path) { return attr_path(m, path).toInt(); }
double float_attr(const Module &m, const std::string &path) { return attr_path(m, path).toDouble(); }

// ---------------------------------------------------------------- the Clebsch-Gordan message operation

// PATHS of nn/so3.py: (l1, l2, l3) with l <= 2, triangle rule, even l1 + l2 + l3, in loop order
std::vector<std::array<int, 3>> cg_paths()
{
  std::vector<std::array<int, 3>> p;
  for (int l1 = 0; l1 <= 2; ++l1)
    for (int l2 = 0; l2 <= 2; ++l2)
      for (int l3 = 0; l3 <= 2; ++l3)
        if (std::abs(l1 - l2) <= l3 && l3 <= l1 + l2 && (l1 + l2 + l3) % 2 == 0) p.push_back({l1, l2, l3});
  return p;
}

constexpr int COMP_START[3] = {0, 1, 4};

// The fused tensor product (nn/attention.py TensorProduct) of an edge, column by column:
//   msg[oc][c] += W[p][c] sum_t feat[comp_t][c] A_t,   A_t = sum_n coef_n Y[n],
// over the terms t of the column, i.e. the input components whose coupling with Y into output component
// oc is not zero. A column belongs to one path p (its weight row) and one output component oc.
struct CgColumn {
  int p, oc;
  int t0, t1;    // its terms [t0, t1)
};
// a term: the input component it reads and its coupling entries [e0, e1)
struct CgTerm {
  int comp;
  int e0, e1;
};
template <typename T> struct CgEntry {
  int n;    // component of Y
  T coef;
};

constexpr int MAXC = 512;    // largest number of message channels

}    // namespace

// ================================================================ the implementation

struct NativeModel::Impl {
  virtual ~Impl() = default;
  virtual torch::Tensor edge_features(const torch::Tensor &vec, const torch::Tensor &types,
                                      const torch::Tensor &ei) = 0;
  virtual torch::Tensor inject(const torch::Tensor &types, const torch::Tensor &ei, const torch::Tensor &attr,
                               int64_t n) = 0;
  virtual torch::Tensor step_stateless(const torch::Tensor &z, const torch::Tensor &x, const torch::Tensor &ei,
                                       const torch::Tensor &attr, int64_t n) = 0;
  virtual torch::Tensor atomic_energy(const torch::Tensor &z, const torch::Tensor &types) = 0;
  virtual torch::Tensor pair_energy(const torch::Tensor &vec, const torch::Tensor &types, const torch::Tensor &ei,
                                    int64_t n) = 0;
  virtual torch::Tensor energy_grad_z(const torch::Tensor &z, const torch::Tensor &types) = 0;
  virtual torch::Tensor adjoint_step(const torch::Tensor &z, const torch::Tensor &x, const torch::Tensor &ei,
                                     const torch::Tensor &attr, const torch::Tensor &u, int64_t n) = 0;
  virtual torch::Tensor edge_grad_stateless(const torch::Tensor &z, const torch::Tensor &u,
                                            const torch::Tensor &types, const torch::Tensor &ei,
                                            const torch::Tensor &vec, int64_t n) = 0;
  virtual void prepare(const torch::Tensor &vec, const torch::Tensor &types, const torch::Tensor &ei,
                       int64_t n) = 0;
  virtual const torch::Tensor &x() const = 0;
  virtual torch::Tensor step(const torch::Tensor &z) = 0;
  virtual void linearize(const torch::Tensor &z) = 0;
  virtual torch::Tensor vjp(const torch::Tensor &u) = 0;
  virtual torch::Tensor edge_grad(const torch::Tensor &u) = 0;
  virtual void release() = 0;
  virtual size_t bytes() const = 0;
  virtual void set_edge_cache(size_t bytes) = 0;
};

namespace {

// The kernels' element-wise loops (clamps and selects inside fast_exp, sigmoid, ...) vectorise only when
// the compiler may evaluate comparisons unconditionally; nothing here reads the floating-point
// exception flags, so it may.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif

namespace baseline {
#include "deqformer_native_kernels.h"
}    // namespace baseline

// (define DEQFORMER_NATIVE_BASELINE_ONLY to build the baseline kernels alone, e.g. to measure the difference)
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(DEQFORMER_NATIVE_BASELINE_ONLY)
#define DEQFORMER_NATIVE_AVX2 1
#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace avx2 {
#include "deqformer_native_kernels.h"
}    // namespace avx2
#pragma GCC pop_options
#endif

// the kernels compiled for the widest instruction set this CPU has
std::unique_ptr<NativeModel::Impl> make_impl(Model &model)
{
#ifdef DEQFORMER_NATIVE_AVX2
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return avx2::make_impl(model);
#endif
  return baseline::make_impl(model);
}

}    // namespace


// ================================================================ NativeModel

std::string NativeModel::unsupported(Model &model)
{
  const auto &meta = model.metadata();
  auto get = [&](const char *k) {
    auto it = meta.find(k);
    return it == meta.end() ? std::string() : it->second;
  };
  if (!model.device().is_cpu()) return "it runs on the CPU only (device " + model.device().str() + ")";
  if (get("message") != "cg") return "message operation '" + get("message") + "' (native: cg)";
  const Module &m = model.module();
  if (!has_path(m, "block.attn.attn_mlp") || !attr_path(m, "block.attn.attn_mlp").toBool())
    return "attention 'dot' (native: mlp)";
  if (!has_path(m, "n_blocks") || attr_path(m, "n_blocks").toInt() != 1) return "more than one block";
  if (!has_path(m, "block.attn.tp.cg0")) return "no Clebsch-Gordan tables in the file";
  if (!has_path(m, "repulsion.wall") || !has_path(m, "repulsion.z")) return "no core-repulsion tables in the file";
  return "";
}

NativeModel::NativeModel(Model &model)
{
  const std::string why = unsupported(model);
  if (!why.empty()) throw Error("deqformer model '" + model.path() + "' cannot run natively: " + why);
  try {
    impl_ = make_impl(model);
  } catch (const Error &) {
    throw;
  } catch (const std::exception &e) {
    throw Error("deqformer model '" + model.path() + "': reading its weights for the native backend failed: " +
                e.what());
  }
}

NativeModel::~NativeModel() = default;

torch::Tensor NativeModel::edge_features(const torch::Tensor &v, const torch::Tensor &t, const torch::Tensor &ei)
{
  return impl_->edge_features(v, t, ei);
}
torch::Tensor NativeModel::inject(const torch::Tensor &t, const torch::Tensor &ei, const torch::Tensor &attr,
                                  int64_t n)
{
  return impl_->inject(t, ei, attr, n);
}
torch::Tensor NativeModel::step(const torch::Tensor &z, const torch::Tensor &x, const torch::Tensor &ei,
                                const torch::Tensor &attr, int64_t n)
{
  return impl_->step_stateless(z, x, ei, attr, n);
}
torch::Tensor NativeModel::atomic_energy(const torch::Tensor &z, const torch::Tensor &t)
{
  return impl_->atomic_energy(z, t);
}
torch::Tensor NativeModel::pair_energy(const torch::Tensor &v, const torch::Tensor &t, const torch::Tensor &ei,
                                       int64_t n)
{
  return impl_->pair_energy(v, t, ei, n);
}
torch::Tensor NativeModel::energy_grad_z(const torch::Tensor &z, const torch::Tensor &t)
{
  return impl_->energy_grad_z(z, t);
}
torch::Tensor NativeModel::adjoint_step(const torch::Tensor &z, const torch::Tensor &x, const torch::Tensor &ei,
                                        const torch::Tensor &attr, const torch::Tensor &u, int64_t n)
{
  return impl_->adjoint_step(z, x, ei, attr, u, n);
}
torch::Tensor NativeModel::edge_grad(const torch::Tensor &z, const torch::Tensor &u, const torch::Tensor &t,
                                     const torch::Tensor &ei, const torch::Tensor &v, int64_t n)
{
  return impl_->edge_grad_stateless(z, u, t, ei, v, n);
}
void NativeModel::prepare(const torch::Tensor &v, const torch::Tensor &t, const torch::Tensor &ei, int64_t n)
{
  impl_->prepare(v, t, ei, n);
}
const torch::Tensor &NativeModel::x() const { return impl_->x(); }
torch::Tensor NativeModel::step(const torch::Tensor &z) { return impl_->step(z); }
void NativeModel::linearize(const torch::Tensor &z) { impl_->linearize(z); }
torch::Tensor NativeModel::vjp(const torch::Tensor &u) { return impl_->vjp(u); }
torch::Tensor NativeModel::edge_grad(const torch::Tensor &u) { return impl_->edge_grad(u); }
void NativeModel::release() { impl_->release(); }
size_t NativeModel::bytes() const { return impl_->bytes(); }
void NativeModel::set_edge_cache_bytes(size_t bytes) { impl_->set_edge_cache(bytes); }

}    // namespace deqformer
