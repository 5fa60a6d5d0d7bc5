// deqformer: the kernels of the native backend (deqformer_native.cpp), the classes NativeImpl<float> and
// NativeImpl<double> with their building blocks. Deliberately without an include guard:
// deqformer_native.cpp includes this file twice, into two namespaces, once compiled for the baseline
// instruction set and once (on x86-64) for AVX2 + FMA, and picks one at run time from what the CPU has.
// It is not a header to include anywhere else.

// exp(x) without a library call, so that loops over it vectorise: x = n ln2 + r with |r| <= ln2 / 2,
// exp(r) by its Taylor polynomial (degree 7 for float, 13 for double: truncation below half an ulp),
// 2^n assembled in the exponent bits. n comes from the round-to-nearest "shifter" trick (adding
// 1.5 * 2^mantissa_bits leaves n in the low bits), which needs no float-to-int conversion. Arguments are
// clamped to [-708, 709] (double) and [-87, 88] (float), where 2^n is a normal number. Largest relative
// error against std::exp: 1 ulp.
template <typename T> struct ExpConst;
template <> struct ExpConst<float> {
  using I = uint32_t;    // unsigned: the shift discards the high bits by definition
  static constexpr float lo = -87.0f, hi = 88.0f, shifter = 12582912.0f + 127.0f;    // 1.5 * 2^23 + bias
  static constexpr float ln2_hi = 0.693145751953125f, ln2_lo = 1.428606765330187e-06f;
  static constexpr int mant = 23, degree = 7;
};
template <> struct ExpConst<double> {
  using I = uint64_t;
  static constexpr double lo = -708.0, hi = 709.0, shifter = 6755399441055744.0 + 1023.0;    // 1.5 * 2^52 + bias
  static constexpr double ln2_hi = 0.6931471805598903, ln2_lo = 5.497923018708371e-14;
  static constexpr int mant = 52, degree = 13;
};
template <typename T> inline T fast_exp(T x)
{
  using C = ExpConst<T>;
  using I = typename C::I;
  x = x < C::lo ? C::lo : x;
  x = x > C::hi ? C::hi : x;
  const T t = x * T(1.4426950408889634) + C::shifter;    // round(x / ln2) + bias, in the low bits
  const T n = t - C::shifter;                             // round(x / ln2) - ... + 0: the rounded value
  const T r = (x - n * C::ln2_hi) - n * C::ln2_lo;
  constexpr T inv[14] = {T(0), T(1), T(1) / 2, T(1) / 3, T(1) / 4, T(1) / 5, T(1) / 6, T(1) / 7, T(1) / 8, T(1) / 9,
                         T(1) / 10, T(1) / 11, T(1) / 12, T(1) / 13};
  T p = T(1);
#pragma GCC unroll 16
  for (int k = C::degree; k >= 1; --k) p = T(1) + p * (r * inv[k]);    // Horner form of sum r^k / k!
  I bits;
  std::memcpy(&bits, &t, sizeof(T));
  bits <<= C::mant;    // the biased exponent n + bias, moved into the exponent field
  T scale;
  std::memcpy(&scale, &bits, sizeof(T));
  return p * scale;
}

template <typename T> inline T sigmoid(T x) { return T(1) / (T(1) + fast_exp(-x)); }
template <typename T> inline T silu(T x) { return x * sigmoid(x); }
// d silu / dx
template <typename T> inline T dsilu(T x)
{
  const T s = sigmoid(x);
  return s * (T(1) + x * (T(1) - s));
}

// ---------------------------------------------------------------- matrix-vector products

// acc[0 .. BL) = sum_c in[c * stride] w[c][d0 + 0 .. BL), w [ni][no]: BL accumulators that stay in registers
// while the inputs stream by (the summation order over c is the plain one)
template <int BL, typename T>
inline void gemv_block(const T *in, int ni, int stride, const T *w, int no, int d0, T *acc)
{
  T a[BL] = {};
  for (int c = 0; c < ni; ++c) {
    const T x = in[size_t(c) * stride];
    const T *row = w + size_t(c) * no + d0;
    for (int l = 0; l < BL; ++l) a[l] += x * row[l];
  }
  for (int l = 0; l < BL; ++l) acc[l] = a[l];
}
// out[d * stride] (+)= sum_c in[c * stride] w[c][d] for d < no: blocks of two and one SIMD registers'
// width, then single outputs
template <typename T> inline void gemv(const T *in, int ni, int stride, const T *w, int no, T *out, bool add)
{
  constexpr int B2 = 64 / sizeof(T), B1 = 32 / sizeof(T);
  T acc[B2];
  int d = 0;
  auto put = [&](int width) {
    for (int l = 0; l < width; ++l) {
      T &o = out[size_t(d + l) * stride];
      o = add ? o + acc[l] : acc[l];
    }
    d += width;
  };
  for (; d + B2 <= no;) {
    gemv_block<B2>(in, ni, stride, w, no, d, acc);
    put(B2);
  }
  if (d + B1 <= no) {
    gemv_block<B1>(in, ni, stride, w, no, d, acc);
    put(B1);
  }
  for (; d < no;) {
    gemv_block<1>(in, ni, stride, w, no, d, acc);
    put(1);
  }
}

// The same for DIM interleaved inputs at once: out[d][m] (+)= sum_c in[c][m] w[c][d] for m < DIM (an
// irreps block of multiplicity ni whose components m are contiguous). Each weight row is loaded once
// for all DIM components; every output sums over c in the same order as gemv, so the results are
// those of DIM separate gemv calls with stride DIM, bit for bit.
template <int DIM, int BL, typename T>
inline void gemv_comp_block(const T *in, int ni, const T *w, int no, int d0, T (&acc)[DIM][BL])
{
  T a[DIM][BL] = {};
  for (int c = 0; c < ni; ++c) {
    const T *row = w + size_t(c) * no + d0;
    const T *x = in + size_t(c) * DIM;
    for (int m = 0; m < DIM; ++m) {
      const T xm = x[m];
      for (int l = 0; l < BL; ++l) a[m][l] += xm * row[l];
    }
  }
  for (int m = 0; m < DIM; ++m)
    for (int l = 0; l < BL; ++l) acc[m][l] = a[m][l];
}
template <int DIM, typename T> inline void gemv_comp(const T *in, int ni, const T *w, int no, T *out, bool add)
{
  constexpr int B2 = 64 / sizeof(T), B1 = 32 / sizeof(T);
  int d = 0;
  auto put = [&](const auto &acc, int width) {
    for (int l = 0; l < width; ++l)
      for (int m = 0; m < DIM; ++m) {
        T &o = out[size_t(d + l) * DIM + m];
        o = add ? o + acc[m][l] : acc[m][l];
      }
    d += width;
  };
  for (; d + B2 <= no;) {
    T acc[DIM][B2];
    gemv_comp_block<DIM, B2>(in, ni, w, no, d, acc);
    put(acc, B2);
  }
  if (d + B1 <= no) {
    T acc[DIM][B1];
    gemv_comp_block<DIM, B1>(in, ni, w, no, d, acc);
    put(acc, B1);
  }
  for (; d < no;) {
    T acc[DIM][1];
    gemv_comp_block<DIM, 1>(in, ni, w, no, d, acc);
    put(acc, 1);
  }
}

// ---------------------------------------------------------------- equivariant building blocks

// IrrepsLinear: channel mixing within each l, bias on scalars (nn/layers.py).
template <typename T> struct Linear3 {
  int i0 = 0, i1 = 0, i2 = 0, o0 = 0, o1 = 0, o2 = 0;
  std::vector<T> w0, w1, w2, b0;    // w [in][out]
  std::vector<T> w0t, w1t, w2t;      // w^T [out][in]

  void load(const Module &m, const std::string &p, int a0, int a1, int a2, int c0, int c1, int c2, bool bias)
  {
    i0 = a0; i1 = a1; i2 = a2; o0 = c0; o1 = c1; o2 = c2;
    w0 = tensor_vec<T>(m, p + ".w0", int64_t(i0) * o0);
    w1 = tensor_vec<T>(m, p + ".w1", int64_t(i1) * o1);
    w2 = tensor_vec<T>(m, p + ".w2", int64_t(i2) * o2);
    if (bias) b0 = tensor_vec<T>(m, p + ".b0", o0);
    if (std::max({i0, i1, i2, o0, o1, o2}) * 5 > MAXW)
      throw Error("native backend: irreps multiplicities above " + std::to_string(MAXW / 5) + " are not supported");
    auto transpose = [](const std::vector<T> &w, int ni, int no) {
      std::vector<T> t(w.size());
      for (int c = 0; c < ni; ++c)
        for (int d = 0; d < no; ++d) t[size_t(d) * ni + c] = w[size_t(c) * no + d];
      return t;
    };
    w0t = transpose(w0, i0, o0);
    w1t = transpose(w1, i1, o1);
    w2t = transpose(w2, i2, o2);
  }
  int in_dim() const { return i0 + 3 * i1 + 5 * i2; }
  int out_dim() const { return o0 + 3 * o1 + 5 * o2; }

  static constexpr int MAXW = 5 * 256;    // largest dim x multiplicity
  // out[d][m] (+)= sum_c in[c][m] w[c][d], w [ni][no], one component m at a time. The transpose
  // (backward) is the same with w^T.
  static void mix(const T *in, int ni, int no, int dim, const T *w, T *out, bool add)
  {
    if (dim == 3)
      gemv_comp<3>(in, ni, w, no, out, add);
    else if (dim == 5)
      gemv_comp<5>(in, ni, w, no, out, add);
    else
      for (int m = 0; m < dim; ++m) gemv(in + m, ni, dim, w, no, out + m, add);
  }
  void forward(const T *in, T *out) const
  {
    mix(in, i0, o0, 1, w0.data(), out, false);
    if (!b0.empty())
      for (int d = 0; d < o0; ++d) out[d] += b0[d];
    mix(in + i0, i1, o1, 3, w1.data(), out + o0, false);
    mix(in + i0 + 3 * i1, i2, o2, 5, w2.data(), out + o0 + 3 * o1, false);
  }
  // gin += (d out / d in)^T gout
  void backward(const T *gout, T *gin) const
  {
    mix(gout, o0, i0, 1, w0t.data(), gin, true);
    mix(gout + o0, o1, i1, 3, w1t.data(), gin + i0, true);
    mix(gout + o0 + 3 * o1, o2, i2, 5, w2t.data(), gin + i0 + 3 * i1, true);
  }
};

// EquivariantLayerNorm (nn/layers.py)
template <typename T> struct LayerNorm3 {
  int m0 = 0, m1 = 0, m2 = 0;
  T eps = T(1e-5);
  std::vector<T> g0, b0, g1, g2;

  void load(const Module &m, const std::string &p, int a0, int a1, int a2)
  {
    m0 = a0; m1 = a1; m2 = a2;
    eps = static_cast<T>(float_attr(m, p + ".eps"));
    g0 = tensor_vec<T>(m, p + ".g0", m0);
    b0 = tensor_vec<T>(m, p + ".b0", m0);
    g1 = tensor_vec<T>(m, p + ".g1", m1);
    g2 = tensor_vec<T>(m, p + ".g2", m2);
  }
  // mean and 1 / sqrt(variance + eps) of the scalar channels
  void scalar_stats(const T *s, T &mu, T &r) const
  {
    mu = 0;
    for (int c = 0; c < m0; ++c) mu += s[c];
    mu /= m0;
    T var = 0;
    for (int c = 0; c < m0; ++c) var += (s[c] - mu) * (s[c] - mu);
    r = T(1) / std::sqrt(var / m0 + eps);
  }
  void scalars(const T *s, T *out) const
  {
    T mu, r;
    scalar_stats(s, mu, r);
    for (int c = 0; c < m0; ++c) out[c] = (s[c] - mu) * r * g0[c] + b0[c];
  }
  static void block(const T *v, int mul, int dim, const T *g, T eps, T *out)
  {
    T ms = 0;
    for (int k = 0; k < mul * dim; ++k) ms += v[k] * v[k];
    const T r = T(1) / std::sqrt(ms / (mul * dim) + eps);
    for (int c = 0; c < mul; ++c)
      for (int m = 0; m < dim; ++m) out[c * dim + m] = v[c * dim + m] * r * g[c];
  }
  void forward(const T *z, T *out) const
  {
    scalars(z, out);
    block(z + m0, m1, 3, g1.data(), eps, out + m0);
    block(z + m0 + 3 * m1, m2, 5, g2.data(), eps, out + m0 + 3 * m1);
  }
  void scalars_backward(const T *s, const T *gout, T *gin) const
  {
    T mu, r;
    scalar_stats(s, mu, r);
    T mean_g = 0, mean_gx = 0;
    for (int c = 0; c < m0; ++c) {
      const T gx = gout[c] * g0[c];
      mean_g += gx;
      mean_gx += gx * (s[c] - mu) * r;
    }
    mean_g /= m0;
    mean_gx /= m0;
    for (int c = 0; c < m0; ++c) gin[c] += r * (gout[c] * g0[c] - mean_g - (s[c] - mu) * r * mean_gx);
  }
  static void block_backward(const T *v, const T *gout, int mul, int dim, const T *g, T eps, T *gin)
  {
    const int nk = mul * dim;
    T ms = 0, dot = 0;
    for (int c = 0; c < mul; ++c)
      for (int m = 0; m < dim; ++m) {
        const int k = c * dim + m;
        ms += v[k] * v[k];
        dot += gout[k] * g[c] * v[k];
      }
    const T r = T(1) / std::sqrt(ms / nk + eps);
    const T k3 = r * r * r * dot / nk;
    for (int c = 0; c < mul; ++c)
      for (int m = 0; m < dim; ++m) {
        const int k = c * dim + m;
        gin[k] += r * g[c] * gout[k] - k3 * v[k];
      }
  }
  // gin += (d out / d z)^T gout
  void backward(const T *z, const T *gout, T *gin) const
  {
    scalars_backward(z, gout, gin);
    block_backward(z + m0, gout + m0, m1, 3, g1.data(), eps, gin + m0);
    block_backward(z + m0 + 3 * m1, gout + m0 + 3 * m1, m2, 5, g2.data(), eps, gin + m0 + 3 * m1);
  }
};

// nn.Linear: y = W x + b, W [out][in]
template <typename T> struct Dense {
  int in = 0, out = 0;
  std::vector<T> w, wt, b;    // w [out][in], wt = w^T [in][out]
  void load(const Module &m, const std::string &p, int n_in, int n_out)
  {
    in = n_in;
    out = n_out;
    w = tensor_vec<T>(m, p + ".weight", int64_t(in) * out);
    b = tensor_vec<T>(m, p + ".bias", out);
    wt.resize(w.size());
    for (int o = 0; o < out; ++o)
      for (int k = 0; k < in; ++k) wt[size_t(k) * out + o] = w[size_t(o) * in + k];
  }
  // y = W x + b
  void forward(const T *x, T *y) const
  {
    gemv(x, in, 1, wt.data(), out, y, false);
    for (int o = 0; o < out; ++o) y[o] += b[o];
  }
  // gx += W^T gy
  void backward(const T *gy, T *gx) const { gemv(gy, out, 1, w.data(), in, gx, true); }
};



template <typename T> class NativeImpl final : public NativeModel::Impl {
 public:
  explicit NativeImpl(Model &model);

  torch::Tensor edge_features(const torch::Tensor &vec, const torch::Tensor &types, const torch::Tensor &ei) override
  {
    Geometry g;
    set_graph(g, types, ei, vec.size(0), 0, types.size(0), false);
    g.vec = to_vec(vec, g.E * 3);
    compute_edge_attr(g);
    permute_path_weights(g.attr, g.E, false);
    return out_tensor(g.attr, {g.E, A_});
  }
  torch::Tensor inject(const torch::Tensor &types, const torch::Tensor &ei, const torch::Tensor &attr,
                       int64_t n) override
  {
    Geometry g;
    set_graph(g, types, ei, attr.size(0), n, types.size(0), true);
    g.attr = attr_from_contract(attr, g.E);
    compute_inject(g);
    return out_tensor(g.x, {n, D_});
  }
  torch::Tensor step_stateless(const torch::Tensor &z, const torch::Tensor &x, const torch::Tensor &ei,
                               const torch::Tensor &attr, int64_t n) override
  {
    Geometry g;
    set_graph(g, torch::Tensor(), ei, attr.size(0), n, z.size(0), true);
    g.attr = attr_from_contract(attr, g.E);
    g.x = to_vec(x, n * D_);
    Activations act;
    std::vector<T> f(size_t(n) * D_);
    forward(g, to_vec(z, g.n_all * D_), act, f.data());
    return out_tensor(f, {n, D_});
  }
  torch::Tensor atomic_energy(const torch::Tensor &z, const torch::Tensor &types) override
  {
    const int64_t n = z.size(0);
    std::vector<T> zv = to_vec(z, n * D_), e(n);
    std::vector<int64_t> t = to_types(types, n);
    for (int64_t a = 0; a < n; ++a) e[a] = readout(zv.data() + a * D_, t[a], nullptr);
    return out_tensor(e, {n});
  }
  torch::Tensor energy_grad_z(const torch::Tensor &z, const torch::Tensor &types) override
  {
    const int64_t n = z.size(0);
    std::vector<T> zv = to_vec(z, n * D_), g(size_t(n) * D_, T(0));
    std::vector<int64_t> t = to_types(types, n);
    for (int64_t a = 0; a < n; ++a) readout(zv.data() + a * D_, t[a], g.data() + a * D_);
    return out_tensor(g, {n, D_});
  }
  torch::Tensor pair_energy(const torch::Tensor &vec, const torch::Tensor &types, const torch::Tensor &ei,
                            int64_t n) override
  {
    Geometry g;
    set_graph(g, types, ei, vec.size(0), n, types.size(0), false);
    g.vec = to_vec(vec, g.E * 3);
    std::vector<T> e(n, T(0));
    for (int64_t k = 0; k < g.E; ++k) {
      if (g.ci[k] >= n) throw Error("native backend: pair_energy edge centre beyond n_local");
      T de;
      e[g.ci[k]] += repulsion(g.vec.data() + 3 * k, g.types[g.ci[k]], g.types[g.nj[k]], de);
    }
    return out_tensor(e, {n});
  }
  torch::Tensor adjoint_step(const torch::Tensor &z, const torch::Tensor &x, const torch::Tensor &ei,
                             const torch::Tensor &attr, const torch::Tensor &u, int64_t n) override
  {
    Geometry g;
    set_graph(g, torch::Tensor(), ei, attr.size(0), n, z.size(0), true);
    g.attr = attr_from_contract(attr, g.E);
    g.x = to_vec(x, n * D_);
    Activations act;
    act.keep = true;
    std::vector<T> f(size_t(n) * D_);
    forward(g, to_vec(z, g.n_all * D_), act, f.data());
    std::vector<T> v;
    backward(g, act, to_vec(u, n * D_), &v, nullptr);
    return out_tensor(v, {g.n_all, D_});
  }
  torch::Tensor edge_grad_stateless(const torch::Tensor &z, const torch::Tensor &u, const torch::Tensor &types,
                                    const torch::Tensor &ei, const torch::Tensor &vec, int64_t n) override
  {
    Geometry g;
    prepare_geometry(g, vec, types, ei, n);
    Activations act;
    act.keep = true;
    std::vector<T> f(size_t(n) * D_);
    forward(g, to_vec(z, g.n_all * D_), act, f.data());
    std::vector<T> dvec;
    backward(g, act, to_vec(u, n * D_), nullptr, &dvec);
    return out_tensor(dvec, {g.E, 3});
  }

  void prepare(const torch::Tensor &vec, const torch::Tensor &types, const torch::Tensor &ei, int64_t n) override
  {
    prepare_geometry(geo_, vec, types, ei, n);
    x_ = out_tensor(geo_.x, {n, D_});
    act_.valid = false;
  }
  const torch::Tensor &x() const override { return x_; }
  torch::Tensor step(const torch::Tensor &z) override
  {
    act_.keep = false;
    act_.valid = false;
    torch::Tensor f = torch::empty({geo_.n, D_}, opts());
    forward(geo_, to_vec(z, geo_.n_all * D_), act_, f.data_ptr<T>());
    return f;
  }
  void linearize(const torch::Tensor &z) override
  {
    act_.keep = true;
    std::vector<T> f(size_t(geo_.n) * D_);
    forward(geo_, to_vec(z, geo_.n_all * D_), act_, f.data());
    act_.valid = true;
  }
  torch::Tensor vjp(const torch::Tensor &u) override
  {
    if (!act_.valid) throw Error("native backend: vjp() before linearize()");
    std::vector<T> v;
    backward(geo_, act_, to_vec(u, geo_.n * D_), &v, nullptr);
    return out_tensor(v, {geo_.n_all, D_});
  }
  torch::Tensor edge_grad(const torch::Tensor &u) override
  {
    if (!act_.valid) throw Error("native backend: edge_grad() before linearize()");
    std::vector<T> dvec;
    backward(geo_, act_, to_vec(u, geo_.n * D_), nullptr, &dvec);
    return out_tensor(dvec, {geo_.E, 3});
  }
  void release() override
  {
    geo_ = Geometry();
    act_ = Activations();
    x_ = torch::Tensor();
  }
  size_t bytes() const override
  {
    auto vb = [](const auto &v) { return v.capacity() * sizeof(v[0]); };
    return vb(geo_.attr) + vb(geo_.vec) + vb(geo_.x) + vb(geo_.types) + vb(geo_.ci) + vb(geo_.nj) +
           vb(geo_.offs) + vb(geo_.order) + vb(act_.z) + vb(act_.src) + vb(act_.dst) + vb(act_.u1) +
           vb(act_.y) + vb(act_.u2) + vb(act_.edges) + vb(act_.denoms) + vb(scratch_);
  }
  void set_edge_cache(size_t bytes) override { cache_bytes_ = bytes; }

 private:
  // One geometry: the directed edges i <- j (i < n local), grouped by centre through order / offs.
  struct Geometry {
    int64_t n = 0, n_all = 0, E = 0;
    std::vector<int64_t> types;          // [n_all] (may be empty where not needed)
    std::vector<int64_t> ci, nj;         // [E] centre and neighbour of each edge (given order)
    std::vector<int64_t> offs, order;    // edges of centre i: order[offs[i] .. offs[i+1])
    std::vector<T> vec;                  // [E][3] r_j - r_i
    std::vector<T> attr;                 // [E][A] the contract's edge attributes, given order
    std::vector<T> x;                    // [n][D] input injection
  };
  // Per-atom activations of the block at one z (kept for the products when keep = true).
  struct Activations {
    bool keep = false, valid = false;
    std::vector<T> z;           // [n_all][D]
    std::vector<T> src, dst;    // [n_all][9][Cm], [n][9][Cm]
    std::vector<T> u1, y, u2;   // [n][D]: x + attention; FFN lin_in output; u1 + FFN
    // The per-edge work of the first `cached` centres (their edges' EdgeWork rows in sorted order) and
    // their attention denominators [cached][H], kept so that the products need not recompute them;
    // as many centres as fit in the edge-cache budget, the others are recomputed per product.
    int64_t cached = 0;
    std::vector<T> edges, denoms;
  };
  // What the per-edge forward of one centre keeps for its backward (component-major [9][Cm] features).
  struct EdgeWork {
    T *feat, *msg, *A, *hp, *hid, *th, *w, *gate;    // A: the coupling of each term with Y
    const T *wt;                                      // the path weights [P][Cm] (in the edge attributes)
  };

  torch::TensorOptions opts() const { return torch::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value); }

  std::vector<T> to_vec(const torch::Tensor &t, int64_t numel) const
  {
    torch::Tensor c = t.detach().to(torch::kCPU, c10::CppTypeToScalarType<T>::value).contiguous();
    if (c.numel() != numel) {
      std::ostringstream msg;
      msg << "native backend: a tensor of shape " << t.sizes() << " was given where " << numel
          << " entries are expected";
      throw Error(msg.str());
    }
    return std::vector<T>(c.data_ptr<T>(), c.data_ptr<T>() + numel);
  }
  std::vector<int64_t> to_types(const torch::Tensor &t, int64_t n) const
  {
    torch::Tensor c = t.detach().to(torch::kCPU, torch::kInt64).contiguous();
    if (c.numel() < n) throw Error("native backend: fewer types than atoms");
    std::vector<int64_t> v(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + n);
    for (int64_t a : v)
      if (a < 0 || a >= ntypes_) throw Error("native backend: atom type " + std::to_string(a) + " out of range");
    return v;
  }
  // Edge attributes are kept with their channel-wise blocks channel-contiguous: the injection weights
  // as [3][Cm] and the path weights as [P][Cm] instead of the contract's [Cm][3] and [Cm][P], so that the
  // loops over channels read them with unit stride. The radial MLP's output rows are permuted once when
  // the model is read (internal_row), and the contract layout is restored only where attributes cross
  // the method boundary (the stateless edge_features / inject / step / adjoint_step).
  // contract index of internal radial-output row o
  int internal_row(int o) const
  {
    const int cm = cm_;
    if (o < 3 * cm) return (o % cm) * 3 + o / cm;
    const int q = o - 3 * cm;
    return 3 * cm + (q % cm) * P_ + q / cm;
  }
  void permute_path_weights(std::vector<T> &attr, int64_t E, bool to_internal) const
  {
    const int width = rad2_.out;
    std::vector<T> tmp(width);
    for (int64_t k = 0; k < E; ++k) {
      T *wb = attr.data() + size_t(k) * A_ + 10;
      for (int o = 0; o < width; ++o) {
        if (to_internal)
          tmp[o] = wb[internal_row(o)];
        else
          tmp[internal_row(o)] = wb[o];
      }
      std::copy(tmp.begin(), tmp.end(), wb);
    }
  }
  std::vector<T> attr_from_contract(const torch::Tensor &attr, int64_t E) const
  {
    std::vector<T> a = to_vec(attr, E * A_);
    permute_path_weights(a, E, true);
    return a;
  }

  torch::Tensor out_tensor(const std::vector<T> &v, std::vector<int64_t> shape) const
  {
    torch::Tensor t = torch::empty(shape, opts());
    if (!v.empty()) std::memcpy(t.data_ptr<T>(), v.data(), v.size() * sizeof(T));
    return t;
  }

  void set_graph(Geometry &g, const torch::Tensor &types, const torch::Tensor &ei, int64_t E, int64_t n,
                 int64_t n_all, bool sort) const
  {
    g.n = n;
    g.n_all = n_all;
    g.E = E;
    if (types.defined()) g.types = to_types(types, n_all);
    torch::Tensor e = ei.detach().to(torch::kCPU, torch::kInt64).contiguous();
    if (e.dim() != 2 || e.size(0) != 2 || e.size(1) != E) throw Error("native backend: edge_index must be [2, E]");
    const int64_t *p = e.data_ptr<int64_t>();
    g.ci.assign(p, p + E);
    g.nj.assign(p + E, p + 2 * E);
    for (int64_t k = 0; k < E; ++k)
      if (g.ci[k] < 0 || g.nj[k] < 0 || g.nj[k] >= n_all || (sort && g.ci[k] >= n) || g.ci[k] >= n_all)
        throw Error("native backend: edge " + std::to_string(k) + " has an atom index out of range");
    if (!sort) return;
    g.offs.assign(n + 1, 0);
    for (int64_t k = 0; k < E; ++k) ++g.offs[g.ci[k] + 1];
    for (int64_t i = 0; i < n; ++i) g.offs[i + 1] += g.offs[i];
    g.order.resize(E);
    std::vector<int64_t> fill(g.offs.begin(), g.offs.end() - 1);
    for (int64_t k = 0; k < E; ++k) g.order[fill[g.ci[k]]++] = k;
    int64_t deg = 0;
    for (int64_t i = 0; i < n; ++i) deg = std::max(deg, g.offs[i + 1] - g.offs[i]);
    if (deg > max_degree_) {
      max_degree_ = deg;
      scratch_.assign(size_t(deg) * edge_work_size(), T(0));
    }
  }

  void prepare_geometry(Geometry &g, const torch::Tensor &vec, const torch::Tensor &types, const torch::Tensor &ei,
                        int64_t n)
  {
    set_graph(g, types, ei, vec.size(0), n, types.size(0), true);
    g.vec = to_vec(vec, g.E * 3);
    compute_edge_attr(g);
    compute_inject(g);
  }

  // ---------------------------------------------------------------- per-geometry: edge features
  void radial_basis(T r, T *b, T *db) const
  {
    for (int k = 0; k < nb_; ++k) {
      if (gaussian_) {
        const T d = r - centers_[k];
        b[k] = fast_exp(-gamma_[k] * d * d);
        if (db) db[k] = -T(2) * gamma_[k] * d * b[k];
      } else {
        const T er = fast_exp(-r);
        const T d = er - centers_[k];
        b[k] = fast_exp(-gamma_[k] * d * d);
        if (db) db[k] = T(2) * gamma_[k] * d * er * b[k];
      }
    }
  }
  T envelope(T r, T *denv) const
  {
    const T d = r / env_rmax_;
    if (!(d < T(1))) {
      if (denv) *denv = T(0);
      return T(0);
    }
    const T p = env_p_;
    const T dp = std::pow(d, p), dp1 = std::pow(d, p + T(1)), dp2 = std::pow(d, p + T(2));
    if (denv) {
      const T dpm = std::pow(d, p - T(1));
      *denv = (-(p + 1) * (p + 2) / 2 * p * dpm + p * (p + 2) * (p + 1) * dp - p * (p + 1) / 2 * (p + 2) * dp1) /
              env_rmax_;
    }
    return T(1) - (p + 1) * (p + 2) / 2 * dp + p * (p + 2) * dp1 - p * (p + 1) / 2 * dp2;
  }
  static void spherical_harmonics(const T *u, T *Y)
  {
    const T x = u[0], y = u[1], z = u[2];
    const T s3 = T(1.7320508075688772), s5 = T(2.23606797749979), s15 = T(3.872983346207417);
    Y[0] = T(1);
    Y[1] = s3 * x;
    Y[2] = s3 * y;
    Y[3] = s3 * z;
    Y[4] = s15 * x * z;
    Y[5] = s15 * x * y;
    Y[6] = s5 * (y * y - T(0.5) * (x * x + z * z));
    Y[7] = s15 * y * z;
    Y[8] = T(0.5) * s15 * (z * z - x * x);
  }
  // gu = (dY/du)^T gY
  static void spherical_harmonics_backward(const T *u, const T *gY, T *gu)
  {
    const T x = u[0], y = u[1], z = u[2];
    const T s3 = T(1.7320508075688772), s5 = T(2.23606797749979), s15 = T(3.872983346207417);
    gu[0] = s3 * gY[1] + s15 * z * gY[4] + s15 * y * gY[5] - s5 * x * gY[6] - s15 * x * gY[8];
    gu[1] = s3 * gY[2] + s15 * x * gY[5] + T(2) * s5 * y * gY[6] + s15 * z * gY[7];
    gu[2] = s3 * gY[3] + s15 * x * gY[4] - s5 * z * gY[6] + s15 * y * gY[7] + s15 * z * gY[8];
  }

  // first layer of the radial MLP of one edge (pre-activation); the type embeddings' part is per type
  void radial_pre(T r, T env, int64_t ti, int64_t tj, T *basis, T *pre) const
  {
    radial_basis(r, basis, nullptr);
    for (int o = 0; o < rh_; ++o) {
      const T *row = rad1_.w.data() + size_t(o) * rad1_.in;
      T acc = rad1_.b[o] + emb_i_[ti * rh_ + o] + emb_j_[tj * rh_ + o];
      for (int k = 0; k < nb_; ++k) acc += row[k] * (basis[k] * env);
      pre[o] = acc;
    }
  }
  // rows x [rh] hidden activations -> rows x [3 Cm + Cm P] outputs of the radial MLP, one GEMM
  void radial_out(const std::vector<T> &hid, int64_t rows, std::vector<T> &out) const
  {
    out.resize(size_t(rows) * rad2_.out);
    if (rows == 0) return;
    torch::Tensor h = torch::from_blob(const_cast<T *>(hid.data()), {rows, rh_}, opts());
    torch::Tensor o = torch::from_blob(out.data(), {rows, rad2_.out}, opts());
    torch::addmm_out(o, rad2_b_, h, rad2_wt_);
  }

  static constexpr int64_t CHUNK = 512;    // edges per batched radial-MLP evaluation (GEMM rows)

  void compute_edge_attr(Geometry &g) const
  {
    g.attr.assign(size_t(g.E) * A_, T(0));
    std::vector<T> basis(nb_), pre(rh_), hid, out;
    for (int64_t k0 = 0; k0 < g.E; k0 += CHUNK) {
      const int64_t rows = std::min(CHUNK, g.E - k0);
      hid.resize(size_t(rows) * rh_);
      for (int64_t k = k0; k < k0 + rows; ++k) {
        const T *v = g.vec.data() + 3 * k;
        const T r = std::sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]);
        const T u[3] = {v[0] / r, v[1] / r, v[2] / r};
        T *a = g.attr.data() + size_t(k) * A_;
        spherical_harmonics(u, a);
        const T env = envelope(r, nullptr);
        a[9] = env;
        radial_pre(r, env, g.types[g.ci[k]], g.types[g.nj[k]], basis.data(), pre.data());
        T *h = hid.data() + (k - k0) * rh_;
        for (int o = 0; o < rh_; ++o) h[o] = silu(pre[o]);
      }
      radial_out(hid, rows, out);
      for (int64_t k = k0; k < k0 + rows; ++k) {
        T *a = g.attr.data() + size_t(k) * A_;
        const T *o = out.data() + (k - k0) * rad2_.out;
        const T env = a[9];
        for (int q = 0; q < 3 * cm_; ++q) a[10 + q] = o[q] * env;
        for (int q = 0; q < cm_ * P_; ++q) a[10 + 3 * cm_ + q] = o[3 * cm_ + q];
      }
    }
  }

  // ---------------------------------------------------------------- per-geometry: input injection
  // pre-norm input of atom i (flat D) from its edges
  void inject_pre(const Geometry &g, int64_t i, T *pre) const
  {
    std::vector<T> agg(9 * cm_, T(0)), flat(9 * cm_);
    for (int64_t s = g.offs[i]; s < g.offs[i + 1]; ++s) {
      const T *a = g.attr.data() + size_t(g.order[s]) * A_;
      const T *winj = a + 10;
      for (int q = 0; q < 9; ++q) {
        const int l = q == 0 ? 0 : (q < 4 ? 1 : 2);
        for (int c = 0; c < cm_; ++c) agg[q * cm_ + c] += winj[l * cm_ + c] * a[q];
      }
    }
    for (T &v : agg) v *= inv_sqrt_nb_;
    comp_to_flat(agg.data(), flat.data());
    geo_lin_.forward(flat.data(), pre);
    const int64_t t = g.types[i];
    for (int c = 0; c < m0_; ++c) pre[c] += type_lin_[t * m0_ + c];
  }
  void compute_inject(Geometry &g) const
  {
    g.x.assign(size_t(g.n) * D_, T(0));
    std::vector<T> pre(D_);
    for (int64_t i = 0; i < g.n; ++i) {
      inject_pre(g, i, pre.data());
      inj_norm_.forward(pre.data(), g.x.data() + i * D_);
    }
  }

  // [9][Cm] component-major <-> flat (Cm | Cm x 3 | Cm x 5)
  void comp_to_flat(const T *c9, T *flat) const
  {
    for (int c = 0; c < cm_; ++c) {
      flat[c] = c9[c];
      for (int m = 0; m < 3; ++m) flat[cm_ + 3 * c + m] = c9[(1 + m) * cm_ + c];
      for (int m = 0; m < 5; ++m) flat[4 * cm_ + 5 * c + m] = c9[(4 + m) * cm_ + c];
    }
  }
  void flat_to_comp(const T *flat, T *c9) const
  {
    for (int c = 0; c < cm_; ++c) {
      c9[c] = flat[c];
      for (int m = 0; m < 3; ++m) c9[(1 + m) * cm_ + c] = flat[cm_ + 3 * c + m];
      for (int m = 0; m < 5; ++m) c9[(4 + m) * cm_ + c] = flat[4 * cm_ + 5 * c + m];
    }
  }

  // ---------------------------------------------------------------- the block, per edge
  size_t edge_work_size() const
  {
    return size_t(9 * cm_) * 2 + terms_.size() + 2 * ah_ + 2 * H_ + 2 * cm_;
  }
  // the EdgeWork row `slot` of the rows starting at `base` (scratch_ or the edge cache)
  EdgeWork edge_work(const T *base, size_t slot) const
  {
    T *p = const_cast<T *>(base) + slot * edge_work_size();
    EdgeWork w;
    w.feat = p; p += 9 * cm_;
    w.msg = p; p += 9 * cm_;
    w.A = p; p += terms_.size();
    w.hp = p; p += ah_;
    w.hid = p; p += ah_;
    w.th = p; p += H_;
    w.w = p; p += H_;
    w.gate = p;
    w.wt = nullptr;
    return w;
  }

  // forward of edge i <- j with attributes a (internal layout): message, attention weight w
  // (un-normalised) and gates
  void edge_forward(const Activations &act, int64_t i, int64_t j, const T *a, EdgeWork &w) const
  {
    const int cm = cm_;
    const T *sj = act.src.data() + size_t(j) * 9 * cm;
    const T *di = act.dst.data() + size_t(i) * 9 * cm;
    for (int q = 0; q < 9 * cm; ++q) w.feat[q] = sj[q] + di[q];
    // the coupling of each term with Y: A = Y . cg_dense_ (a 9 x terms matrix-vector product)
    gemv(a, 9, 1, cg_dense_.data(), int(terms_.size()), w.A, false);
    w.wt = a + 10 + 3 * cm;
    tp_forward(w);
    const T *m0 = w.msg;
    att_hid_.forward(m0, w.hp);
    T *hid = w.hid;
    for (int h = 0; h < ah_; ++h) hid[h] = silu(w.hp[h]);
    const T env = a[9];
    for (int h = 0; h < H_; ++h) {
      const T *row = att_out_.w.data() + size_t(h) * ah_;
      T acc = att_out_.b[h];
      for (int k = 0; k < ah_; ++k) acc += row[k] * hid[k];
      w.th[h] = std::tanh(acc / T(10));
      w.w[h] = env * fast_exp(T(10) * w.th[h]);
    }
    gate_.forward(m0, w.gate);
    for (int o = 0; o < 2 * cm; ++o) w.gate[o] = sigmoid(w.gate[o]);
  }

  // the NT terms of column cc: the feature rows they read and their couplings A_t
  template <int NT> void column_terms(const CgColumn &cc, const EdgeWork &w, const T **f, T *v) const
  {
    for (int k = 0; k < NT; ++k) {
      f[k] = w.feat + terms_[cc.t0 + k].comp * cm_;
      v[k] = w.A[cc.t0 + k];
    }
  }
  // out[c] += W[p][c] sum_t feat[comp_t][c] A_t for a column of NT terms (the sum kept in a register)
  template <int NT> void tp_column(const CgColumn &cc, const EdgeWork &w) const
  {
    const int cm = cm_;
    const T *f[NT];
    T v[NT];
    column_terms<NT>(cc, w, f, v);
    const T *wp = w.wt + cc.p * cm;
    T *out = w.msg + cc.oc * cm;
    for (int c = 0; c < cm; ++c) {
      T t = 0;
      for (int k = 0; k < NT; ++k) t += f[k][c] * v[k];
      out[c] += wp[c] * t;
    }
  }
  // the tensor product: msg[oc] = sum over columns of W[p] * (sum over terms); a column has at most
  // 2 l1 + 1 <= 5 terms (one per input component)
  void tp_forward(const EdgeWork &w) const
  {
    std::fill(w.msg, w.msg + 9 * cm_, T(0));
    for (const CgColumn &cc : cols_) {
      switch (cc.t1 - cc.t0) {
        case 1: tp_column<1>(cc, w); break;
        case 2: tp_column<2>(cc, w); break;
        case 3: tp_column<3>(cc, w); break;
        case 4: tp_column<4>(cc, w); break;
        case 5: tp_column<5>(cc, w); break;
        default: break;
      }
    }
  }
  // its transpose for the features: gfeat[comp_t] += A_t (W * gmsg)
  void tp_backward_feat(const EdgeWork &w, const T *gm, T *gfeat) const
  {
    const int cm = cm_;
    T tb[MAXC];
    for (const CgColumn &cc : cols_) {
      const T *wp = w.wt + cc.p * cm;
      const T *gout = gm + cc.oc * cm;
      for (int c = 0; c < cm; ++c) tb[c] = wp[c] * gout[c];
      for (int k = cc.t0; k < cc.t1; ++k) {
        T *gf = gfeat + terms_[k].comp * cm;
        const T v = w.A[k];
        for (int c = 0; c < cm; ++c) gf[c] += v * tb[c];
      }
    }
  }

  // sum_c x[c] y[c] in LANES partial sums, which the compiler vectorises
  static T lane_dot(const T *x, const T *y, int n)
  {
    constexpr int LANES = 8;
    T part[LANES] = {};
    int c = 0;
    for (; c + LANES <= n; c += LANES)
      for (int l = 0; l < LANES; ++l) part[l] += x[c + l] * y[c + l];
    T sum = 0;
    for (; c < n; ++c) sum += x[c] * y[c];
    for (int l = 0; l < LANES; ++l) sum += part[l];
    return sum;
  }

  // the normalised attention weight of each message channel (its head's) of one edge
  void head_weights(const EdgeWork &w, const T *denom, T *alpha) const
  {
    const int hs = cm_ / H_;
    for (int hh = 0; hh < H_; ++hh) {
      const T a = w.w[hh] / denom[hh];
      for (int c = hh * hs; c < (hh + 1) * hs; ++c) alpha[c] = a;
    }
  }

  // the tensor product's dependence on the edge, per column: gW[p][c] += (sum_t feat[comp_t][c] A_t)
  // gmsg[oc][c] (the path weights, internal layout) and gY[n] += coef_n sum_c feat[comp_t][c] W[p][c]
  // gmsg[oc][c] over the terms.
  template <int NT> void geo_column(const CgColumn &cc, const EdgeWork &w, const T *gm, T *gW, T *gY) const
  {
    const int cm = cm_;
    const T *f[NT];
    T v[NT];
    column_terms<NT>(cc, w, f, v);
    const T *wp = w.wt + cc.p * cm;
    const T *gout = gm + cc.oc * cm;
    T *gw = gW + cc.p * cm;
    T tb[MAXC];
    for (int c = 0; c < cm; ++c) {
      T t = 0;
      for (int k = 0; k < NT; ++k) t += f[k][c] * v[k];
      gw[c] += t * gout[c];
      tb[c] = wp[c] * gout[c];
    }
    for (int k = 0; k < NT; ++k) {
      const T sum = lane_dot(f[k], tb, cm);
      const CgTerm &term = terms_[cc.t0 + k];
      for (int e = term.e0; e < term.e1; ++e) gY[cg_[e].n] += sum * cg_[e].coef;
    }
  }
  void tp_backward_geo(const EdgeWork &w, const T *gm, T *gW, T *gY) const
  {
    for (const CgColumn &cc : cols_) {
      switch (cc.t1 - cc.t0) {
        case 1: geo_column<1>(cc, w, gm, gW, gY); break;
        case 2: geo_column<2>(cc, w, gm, gW, gY); break;
        case 3: geo_column<3>(cc, w, gm, gW, gY); break;
        case 4: geo_column<4>(cc, w, gm, gW, gY); break;
        case 5: geo_column<5>(cc, w, gm, gW, gY); break;
        default: break;
      }
    }
  }

  // the edges of centre i through edge_forward into the rows base + 0, 1, ...; denom = 1 + sum of their
  // attention weights per head
  void centre_forward(const Geometry &g, const Activations &act, int64_t i, const T *base, T *denom) const
  {
    std::fill(denom, denom + H_, T(1));
    for (int64_t s = g.offs[i]; s < g.offs[i + 1]; ++s) {
      const int64_t k = g.order[s];
      EdgeWork w = edge_work(base, s - g.offs[i]);
      edge_forward(act, i, g.nj[k], g.attr.data() + size_t(k) * A_, w);
      for (int hh = 0; hh < H_; ++hh) denom[hh] += w.w[hh];
    }
  }

  // ---------------------------------------------------------------- the block, forward
  void forward(const Geometry &g, std::vector<T> z, Activations &act, T *f)
  {
    const int64_t n = g.n, n_all = g.n_all;
    const int cm = cm_;
    act.src.resize(size_t(n_all) * 9 * cm);
    act.dst.resize(size_t(n) * 9 * cm);
    std::vector<T> h(D_), flat(9 * cm);
    for (int64_t a = 0; a < n_all; ++a) {
      ln1_.forward(z.data() + a * D_, h.data());
      lin_src_.forward(h.data(), flat.data());
      flat_to_comp(flat.data(), act.src.data() + a * 9 * cm);
      if (a < n) {
        lin_dst_.forward(h.data(), flat.data());
        flat_to_comp(flat.data(), act.dst.data() + a * 9 * cm);
      }
    }
    act.cached = 0;
    if (act.keep) {
      act.u1.resize(size_t(n) * D_);
      act.y.resize(size_t(n) * Y_);
      act.u2.resize(size_t(n) * D_);
      const size_t row_bytes = edge_work_size() * sizeof(T);
      while (act.cached < n && size_t(g.offs[act.cached + 1]) * row_bytes <= cache_bytes_) ++act.cached;
      act.edges.resize(size_t(g.offs[act.cached]) * edge_work_size());
      act.denoms.resize(size_t(act.cached) * H_);
    }
    std::vector<T> agg(9 * cm), u1(D_), h2(D_), y(Y_), gated(Yg_), u2(D_), denom(H_);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t e0 = g.offs[i], e1 = g.offs[i + 1];
      const bool cache = i < act.cached;
      const T *base = cache ? act.edges.data() + size_t(e0) * edge_work_size() : scratch_.data();
      centre_forward(g, act, i, base, denom.data());
      if (cache) std::copy(denom.begin(), denom.end(), act.denoms.begin() + i * H_);
      std::fill(agg.begin(), agg.end(), T(0));
      for (int64_t s = e0; s < e1; ++s) {
        EdgeWork w = edge_work(base, s - e0);
        T alpha[MAXC];
        head_weights(w, denom.data(), alpha);
        for (int c = 0; c < cm; ++c) {
          const T al = alpha[c];
          agg[c] += al * silu(w.msg[c]);
          const T g1 = al * w.gate[c], g2 = al * w.gate[cm + c];
          for (int q = 1; q < 4; ++q) agg[q * cm + c] += g1 * w.msg[q * cm + c];
          for (int q = 4; q < 9; ++q) agg[q * cm + c] += g2 * w.msg[q * cm + c];
        }
      }
      comp_to_flat(agg.data(), flat.data());
      att_lin_out_.forward(flat.data(), u1.data());
      const T *xi = g.x.data() + i * D_;
      for (int d = 0; d < D_; ++d) u1[d] += xi[d];
      ln2_.forward(u1.data(), h2.data());
      ffn_in_.forward(h2.data(), y.data());
      ffn_gate(y.data(), gated.data());
      ffn_out_.forward(gated.data(), u2.data());
      for (int d = 0; d < D_; ++d) u2[d] += u1[d];
      ln3_.forward(u2.data(), f + i * D_);
      if (act.keep) {
        std::copy(u1.begin(), u1.end(), act.u1.begin() + i * D_);
        std::copy(y.begin(), y.end(), act.y.begin() + i * Y_);
        std::copy(u2.begin(), u2.end(), act.u2.begin() + i * D_);
      }
    }
    if (act.keep) act.z = std::move(z);
  }

  // FFN gate: y = [scalars h0 | gates h1 | gates h2 | vectors h1 x 3 | tensors h2 x 5] -> (h0 | h1 x 3 | h2 x 5)
  void ffn_gate(const T *y, T *out) const
  {
    const int s = h0_ + h1_ + h2_;
    for (int c = 0; c < h0_; ++c) out[c] = silu(y[c]);
    for (int c = 0; c < h1_; ++c) {
      const T gt = sigmoid(y[h0_ + c]);
      for (int m = 0; m < 3; ++m) out[h0_ + 3 * c + m] = y[s + 3 * c + m] * gt;
    }
    for (int c = 0; c < h2_; ++c) {
      const T gt = sigmoid(y[h0_ + h1_ + c]);
      for (int m = 0; m < 5; ++m) out[h0_ + 3 * h1_ + 5 * c + m] = y[s + 3 * h1_ + 5 * c + m] * gt;
    }
  }
  void ffn_gate_backward(const T *y, const T *gout, T *gy) const
  {
    const int s = h0_ + h1_ + h2_;
    std::fill(gy, gy + Y_, T(0));
    for (int c = 0; c < h0_; ++c) gy[c] = gout[c] * dsilu(y[c]);
    for (int c = 0; c < h1_; ++c) {
      const T gt = sigmoid(y[h0_ + c]);
      T acc = 0;
      for (int m = 0; m < 3; ++m) {
        gy[s + 3 * c + m] = gout[h0_ + 3 * c + m] * gt;
        acc += gout[h0_ + 3 * c + m] * y[s + 3 * c + m];
      }
      gy[h0_ + c] = acc * gt * (T(1) - gt);
    }
    for (int c = 0; c < h2_; ++c) {
      const T gt = sigmoid(y[h0_ + h1_ + c]);
      T acc = 0;
      for (int m = 0; m < 5; ++m) {
        gy[s + 3 * h1_ + 5 * c + m] = gout[h0_ + 3 * h1_ + 5 * c + m] * gt;
        acc += gout[h0_ + 3 * h1_ + 5 * c + m] * y[s + 3 * h1_ + 5 * c + m];
      }
      gy[h0_ + h1_ + c] = acc * gt * (T(1) - gt);
    }
  }

  // ---------------------------------------------------------------- the block, backward
  // With the activations of `act` (kept by forward at z): for cotangent u [n][D] of f,
  //  v != null: v = (df/dz)^T u, [n_all][D];
  //  dvec != null: d(u . f + sum pair_energy)/d(edge_vec), [E][3] (given edge order), the geometry's
  //  dependence through the edge attributes, the input injection and the core repulsion.
  void backward(const Geometry &g, const Activations &act, const std::vector<T> &u, std::vector<T> *v,
                std::vector<T> *dvec)
  {
    const int64_t n = g.n, n_all = g.n_all;
    const int cm = cm_;
    const int hs = cm / H_;
    // 1. per local atom: cotangents of u1 (= of x) and of the attention aggregate
    std::vector<T> gu1(size_t(n) * D_, T(0)), gagg(size_t(n) * 9 * cm);
    {
      std::vector<T> gu2(D_), h2(D_), gated(Yg_), ggated(Yg_), gy(Y_), gh2(D_), gflat(9 * cm);
      for (int64_t i = 0; i < n; ++i) {
        std::fill(gu2.begin(), gu2.end(), T(0));
        ln3_.backward(act.u2.data() + i * D_, u.data() + i * D_, gu2.data());
        const T *y = act.y.data() + i * Y_;
        const T *u1 = act.u1.data() + i * D_;
        std::fill(ggated.begin(), ggated.end(), T(0));
        ffn_out_.backward(gu2.data(), ggated.data());
        ffn_gate_backward(y, ggated.data(), gy.data());
        std::fill(gh2.begin(), gh2.end(), T(0));
        ffn_in_.backward(gy.data(), gh2.data());
        T *g1 = gu1.data() + i * D_;
        for (int d = 0; d < D_; ++d) g1[d] = gu2[d];
        ln2_.backward(u1, gh2.data(), g1);
        std::fill(gflat.begin(), gflat.end(), T(0));
        att_lin_out_.backward(g1, gflat.data());
        flat_to_comp(gflat.data(), gagg.data() + i * 9 * cm);
      }
    }
    // 2. per centre: the attention's backward, edge by edge
    std::vector<T> gsrc, gdst;
    if (v) {
      gsrc.assign(size_t(n_all) * 9 * cm, T(0));
      gdst.assign(size_t(n) * 9 * cm, T(0));
    }
    if (dvec) dvec->assign(size_t(g.E) * 3, T(0));
    std::vector<T> denom(H_), galpha(size_t(max_degree_) * H_), S(H_), gw(H_), glg(H_), gh(ah_), gm(9 * cm),
        gg(2 * cm), gfeat(9 * cm), gpre(D_), pre(D_), gflat(9 * cm), gagg_inj(9 * cm);
    // edge_grad: cotangents of each edge's attributes, gathered for the batched radial-MLP backward
    // of a chunk of centres: [ginj (3 Cm) | gW (Cm P)] per edge, and d/dY, d/d env
    EdgeCotangents ec;
    int64_t chunk_start = 0;
    for (int64_t i = 0; i < n; ++i) {
      if (dvec && g.offs[i + 1] - chunk_start > CHUNK) {
        flush_edge_cotangents(g, chunk_start, g.offs[i], ec, *dvec);
        chunk_start = g.offs[i];
      }
      const int64_t e0 = g.offs[i], e1 = g.offs[i + 1];
      const T *ga = gagg.data() + i * 9 * cm;
      const T *base = scratch_.data();
      if (i < act.cached) {
        base = act.edges.data() + size_t(e0) * edge_work_size();
        std::copy(act.denoms.begin() + i * H_, act.denoms.begin() + (i + 1) * H_, denom.begin());
      } else {
        centre_forward(g, act, i, base, denom.data());
      }
      // d/d alpha_e, and S = sum_e alpha_e d/d alpha_e per head
      std::fill(S.begin(), S.end(), T(0));
      for (int64_t s = e0; s < e1; ++s) {
        EdgeWork w = edge_work(base, s - e0);
        T *gal = galpha.data() + (s - e0) * H_;
        T per_channel[MAXC];
        for (int c = 0; c < cm; ++c) {
          T acc = silu(w.msg[c]) * ga[c];
          T a1 = 0, a2 = 0;
          for (int q = 1; q < 4; ++q) a1 += w.msg[q * cm + c] * ga[q * cm + c];
          for (int q = 4; q < 9; ++q) a2 += w.msg[q * cm + c] * ga[q * cm + c];
          per_channel[c] = acc + a1 * w.gate[c] + a2 * w.gate[cm + c];
        }
        for (int hh = 0; hh < H_; ++hh) {
          T sum = 0;
          for (int c = hh * hs; c < (hh + 1) * hs; ++c) sum += per_channel[c];
          gal[hh] = sum;
        }
        for (int hh = 0; hh < H_; ++hh) S[hh] += gal[hh] * w.w[hh] / denom[hh];
      }
      // injection cotangent of this centre (edge_grad only)
      if (dvec) {
        inject_pre(g, i, pre.data());
        std::fill(gpre.begin(), gpre.end(), T(0));
        inj_norm_.backward(pre.data(), gu1.data() + i * D_, gpre.data());
        std::fill(gflat.begin(), gflat.end(), T(0));
        geo_lin_.backward(gpre.data(), gflat.data());
        flat_to_comp(gflat.data(), gagg_inj.data());
        for (T &x : gagg_inj) x *= inv_sqrt_nb_;
      }
      for (int64_t s = e0; s < e1; ++s) {
        const int64_t k = g.order[s];
        const int64_t j = g.nj[k];
        const T *a = g.attr.data() + size_t(k) * A_;
        EdgeWork w = edge_work(base, s - e0);
        w.wt = a + 10 + 3 * cm;
        const T *gal = galpha.data() + (s - e0) * H_;
        for (int hh = 0; hh < H_; ++hh) {
          gw[hh] = (gal[hh] - S[hh]) / denom[hh];
          glg[hh] = gw[hh] * w.w[hh] * (T(1) - w.th[hh] * w.th[hh]);
        }
        // attention logits -> hidden -> m0
        std::fill(gm.begin(), gm.end(), T(0));
        for (int hh = 0; hh < ah_; ++hh) gh[hh] = T(0);
        att_out_.backward(glg.data(), gh.data());
        for (int hh = 0; hh < ah_; ++hh) gh[hh] *= dsilu(w.hp[hh]);
        att_hid_.backward(gh.data(), gm.data());
        // gated values
        T alpha[MAXC];
        head_weights(w, denom.data(), alpha);
        for (int c = 0; c < cm; ++c) {
          const T al = alpha[c];
          gm[c] += al * ga[c] * dsilu(w.msg[c]);
          T a1 = 0, a2 = 0;
          for (int q = 1; q < 4; ++q) {
            gm[q * cm + c] = al * ga[q * cm + c] * w.gate[c];
            a1 += al * ga[q * cm + c] * w.msg[q * cm + c];
          }
          for (int q = 4; q < 9; ++q) {
            gm[q * cm + c] = al * ga[q * cm + c] * w.gate[cm + c];
            a2 += al * ga[q * cm + c] * w.msg[q * cm + c];
          }
          gg[c] = a1 * w.gate[c] * (T(1) - w.gate[c]);
          gg[cm + c] = a2 * w.gate[cm + c] * (T(1) - w.gate[cm + c]);
        }
        gate_.backward(gg.data(), gm.data());    // adds into gm[0 .. cm) = d/d m0
        // tensor product
        if (v) std::fill(gfeat.begin(), gfeat.end(), T(0));
        T *gW = nullptr, *ginj = nullptr, *gY = nullptr;
        if (dvec) {
          ec.resize(s - chunk_start + 1, rad2_.out);
          ginj = ec.gout.data() + (s - chunk_start) * rad2_.out;
          gW = ginj + 3 * cm;
          gY = ec.gY.data() + (s - chunk_start) * 9;
          std::fill(ginj, ginj + rad2_.out, T(0));
          std::fill(gY, gY + 9, T(0));
          tp_backward_geo(w, gm.data(), gW, gY);
        }
        if (v) tp_backward_feat(w, gm.data(), gfeat.data());
        if (v) {
          T *gs = gsrc.data() + size_t(j) * 9 * cm;
          T *gd = gdst.data() + size_t(i) * 9 * cm;
          for (int q = 0; q < 9 * cm; ++q) {
            gs[q] += gfeat[q];
            gd[q] += gfeat[q];
          }
        }
        if (dvec) {
          // w = env exp(10 th): d/d env
          T genv = 0;
          for (int hh = 0; hh < H_; ++hh) genv += gw[hh] * fast_exp(T(10) * w.th[hh]);
          ec.genv[s - chunk_start] = genv;
          // input injection: agg_inj[q][c] += inv_sqrt_nb w_inj[c][l(q)] Y[q]
          const T *winj = a + 10;
          for (int q = 0; q < 9; ++q) {
            const int l = q == 0 ? 0 : (q < 4 ? 1 : 2);
            const T *gq = gagg_inj.data() + q * cm;
            T *gi = ginj + l * cm;
            for (int c = 0; c < cm; ++c) gi[c] += gq[c] * a[q];
            gY[q] += lane_dot(gq, winj + l * cm, cm);
          }
        }
      }
    }
    if (dvec) flush_edge_cotangents(g, chunk_start, g.E, ec, *dvec);
    if (!v) return;
    // 3. per atom: through lin_src / lin_dst and LN1
    v->assign(size_t(n_all) * D_, T(0));
    std::vector<T> gflat2(9 * cm), gh1(D_);
    for (int64_t a = 0; a < n_all; ++a) {
      std::fill(gh1.begin(), gh1.end(), T(0));
      comp_to_flat(gsrc.data() + a * 9 * cm, gflat2.data());
      lin_src_.backward(gflat2.data(), gh1.data());
      if (a < n) {
        comp_to_flat(gdst.data() + a * 9 * cm, gflat2.data());
        lin_dst_.backward(gflat2.data(), gh1.data());
      }
      ln1_.backward(act.z.data() + a * D_, gh1.data(), v->data() + a * D_);
    }
  }

  struct EdgeCotangents {
    std::vector<T> gout, gY, genv;    // per edge of the chunk: [3 Cm + Cm P], [9], [1]
    void resize(int64_t rows, int width)
    {
      if (int64_t(genv.size()) >= rows) return;
      const int64_t cap = std::max<int64_t>(rows, 2 * int64_t(genv.size()));
      gout.resize(size_t(cap) * width);
      gY.resize(size_t(cap) * 9);
      genv.resize(cap);
    }
  };

  // d/d(edge_vec) of the edges at sorted positions [s0, s1) from the cotangents of their attributes
  // (Y, env, w_inj, block weights), through the radial MLP (two GEMMs for the chunk), the basis, the
  // envelope and the spherical harmonics; plus each edge's core repulsion. Written to dvec[edge][3].
  void flush_edge_cotangents(const Geometry &g, int64_t s0, int64_t s1, EdgeCotangents &ec,
                             std::vector<T> &dvec) const
  {
    const int64_t rows = s1 - s0;
    if (rows <= 0) return;
    const int no = rad2_.out;
    std::vector<T> basis(nb_), dbasis(nb_), pre(size_t(rows) * rh_), hid(size_t(rows) * rh_), out, ghid, gp(rh_),
        gb(nb_);
    for (int64_t c = 0; c < rows; ++c) {
      const int64_t k = g.order[s0 + c];
      const T *v = g.vec.data() + 3 * k;
      const T r = std::sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]);
      const T env = envelope(r, nullptr);
      T *p = pre.data() + c * rh_;
      radial_pre(r, env, g.types[g.ci[k]], g.types[g.nj[k]], basis.data(), p);
      for (int o = 0; o < rh_; ++o) hid[c * rh_ + o] = silu(p[o]);
    }
    // the injection weights' outputs (the first 3 Cm), as w_inj = out[:3Cm] env: d/d out and d/d env
    const int ni = 3 * cm_;
    out.resize(size_t(rows) * ni);
    {
      torch::Tensor h = torch::from_blob(hid.data(), {rows, rh_}, opts());
      torch::Tensor o = torch::from_blob(out.data(), {rows, ni}, opts());
      torch::addmm_out(o, rad2_b_.narrow(0, 0, ni), h, rad2_wt_.narrow(1, 0, ni));
    }
    for (int64_t c = 0; c < rows; ++c) {
      const int64_t k = g.order[s0 + c];
      const T env = g.attr[size_t(k) * A_ + 9];
      T *go = ec.gout.data() + c * no;
      const T *o = out.data() + c * ni;
      T genv = ec.genv[c];
      for (int q = 0; q < 3 * cm_; ++q) {
        genv += go[q] * o[q];
        go[q] *= env;
      }
      ec.genv[c] = genv;
    }
    ghid.resize(size_t(rows) * rh_);
    {
      torch::Tensor go = torch::from_blob(ec.gout.data(), {rows, no}, opts());
      torch::Tensor gh = torch::from_blob(ghid.data(), {rows, rh_}, opts());
      torch::mm_out(gh, go, rad2_w_);
    }
    for (int64_t c = 0; c < rows; ++c) {
      const int64_t k = g.order[s0 + c];
      const T *v = g.vec.data() + 3 * k;
      const T r = std::sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]);
      const T u[3] = {v[0] / r, v[1] / r, v[2] / r};
      T denv = 0;
      const T env = envelope(r, &denv);
      radial_basis(r, basis.data(), dbasis.data());
      // through the first layer's silu and its basis columns: d/d (basis * env)
      for (int o = 0; o < rh_; ++o) gp[o] = ghid[c * rh_ + o] * dsilu(pre[c * rh_ + o]);
      gemv(gp.data(), rh_, 1, rad1_basis_.data(), nb_, gb.data(), false);
      T genv = ec.genv[c], gr = 0;
      for (int kk = 0; kk < nb_; ++kk) {
        gr += gb[kk] * env * dbasis[kk];
        genv += gb[kk] * basis[kk];
      }
      gr += genv * denv;
      T de = 0;
      repulsion(v, g.types[g.ci[k]], g.types[g.nj[k]], de);
      gr += de;
      T gu[3];
      spherical_harmonics_backward(u, ec.gY.data() + c * 9, gu);
      const T ug = u[0] * gu[0] + u[1] * gu[1] + u[2] * gu[2];
      T *dv = dvec.data() + 3 * k;
      for (int d = 0; d < 3; ++d) dv[d] = (gu[d] - u[d] * ug) / r + gr * u[d];
    }
  }

  // ---------------------------------------------------------------- readout and repulsion
  // energy of one atom; g != null: adds dE/dz into g[D]
  T readout(const T *z, int64_t t, T *g) const
  {
    std::vector<T> s(m0_), pre(ro1_.out), hid(ro1_.out);
    readout_norm_.scalars(z, s.data());
    ro1_.forward(s.data(), pre.data());
    for (int o = 0; o < ro1_.out; ++o) hid[o] = silu(pre[o]);
    T e;
    ro2_.forward(hid.data(), &e);
    if (g) {
      const T ge = energy_scale_;
      std::vector<T> gh(ro1_.out, T(0)), gs(m0_, T(0));
      ro2_.backward(&ge, gh.data());
      for (int o = 0; o < ro1_.out; ++o) gh[o] *= dsilu(pre[o]);
      ro1_.backward(gh.data(), gs.data());
      readout_norm_.scalars_backward(z, gs.data(), g);
    }
    return e * energy_scale_ + energy_shift_[t];
  }
  // half the switched ZBL energy of one directed edge (nn/repulsion.py); de = its derivative by r
  T repulsion(const T *v, int64_t ti, int64_t tj, T &de) const
  {
    de = T(0);
    const T wall = walls_[ti * ntypes_ + tj];
    const T r = std::sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]);
    if (!(wall > T(0) && r < wall)) return T(0);
    const T zi = zbl_z_[ti], zj = zbl_z_[tj];
    const T a = screening_ / std::max(std::pow(zi, T(0.23)) + std::pow(zj, T(0.23)), T(1e-12));
    const T x = r / a;
    const T c[4] = {T(0.18175), T(0.50986), T(0.28022), T(0.02817)};
    const T b[4] = {T(3.19980), T(0.94229), T(0.40290), T(0.20162)};
    T phi = 0, dphi = 0;
    for (int q = 0; q < 4; ++q) {
      const T ex = std::exp(-b[q] * x);
      phi += c[q] * ex;
      dphi -= c[q] * b[q] * ex;
    }
    const T pref = coulomb_ * zi * zj;
    const T vr = pref / r * phi;
    const T dvr = pref * (-phi / (r * r) + dphi / (a * r));
    const T r_in = inner_ * wall;
    const T width = std::max(wall - r_in, T(1e-9));
    const T t = std::min(std::max((r - r_in) / width, T(0)), T(1));
    const T sw = (T(1) - t) * (T(1) - t) * (T(1) - t) * (T(1) + T(3) * t + T(6) * t * t);
    const T dsw = -T(30) * t * t * (T(1) - t) * (T(1) - t) / width;
    de = T(0.5) * (dvr * sw + vr * dsw);
    return T(0.5) * vr * sw;
  }

  // ---------------------------------------------------------------- weights and sizes
  int m0_, m1_, m2_, D_, cm_, H_, ah_, P_, nb_, ed_, rh_, h0_, h1_, h2_, Y_, Yg_, A_;
  int64_t ntypes_;
  bool gaussian_;
  T env_rmax_, env_p_, inv_sqrt_nb_, energy_scale_, inner_, screening_, coulomb_;
  std::vector<T> rad1_basis_;    // the radial MLP's first-layer weights of the basis inputs, [rh][nb]
  std::vector<T> centers_, gamma_, emb_i_, emb_j_, type_lin_, energy_shift_, walls_, zbl_z_;
  Dense<T> rad1_, rad2_, gate_, att_hid_, att_out_, ro1_, ro2_;
  torch::Tensor rad2_w_, rad2_wt_, rad2_b_;    // second radial layer: W [out][rh], W^T, bias (for the GEMMs)
  Linear3<T> geo_lin_, lin_src_, lin_dst_, att_lin_out_, ffn_in_, ffn_out_;
  LayerNorm3<T> inj_norm_, ln1_, ln2_, ln3_, readout_norm_;
  std::vector<CgColumn> cols_;
  std::vector<CgTerm> terms_;
  std::vector<CgEntry<T>> cg_;
  std::vector<T> cg_dense_;    // [9][terms]: the coefficient of Y[n] in each term (zeros included)

  Geometry geo_;
  Activations act_;
  torch::Tensor x_;
  mutable int64_t max_degree_ = 0;
  mutable std::vector<T> scratch_;
  size_t cache_bytes_ = NativeModel::DEFAULT_EDGE_CACHE_BYTES;    // edge-cache budget
};

template <typename T> NativeImpl<T>::NativeImpl(Model &model)
{
  const Module &m = model.module();
  m0_ = static_cast<int>(int_attr(m, "block.ln1.m0"));
  m1_ = static_cast<int>(int_attr(m, "block.ln1.m1"));
  m2_ = static_cast<int>(int_attr(m, "block.ln1.m2"));
  D_ = m0_ + 3 * m1_ + 5 * m2_;
  if (D_ != model.state_dim()) throw Error("native backend: the block's irreps do not give state_dim");
  cm_ = static_cast<int>(int_attr(m, "block.attn.cm"));
  if (cm_ < 1 || cm_ > MAXC) throw Error("native backend: more than " + std::to_string(MAXC) + " message channels");
  H_ = static_cast<int>(int_attr(m, "block.attn.heads"));
  const auto paths = cg_paths();
  P_ = static_cast<int>(paths.size());
  const torch::Tensor emb = attr_path(m, "type_embed.weight").toTensor();
  ntypes_ = emb.size(0);
  ed_ = static_cast<int>(emb.size(1));
  if (ntypes_ != model.num_types()) throw Error("native backend: type embedding does not match num_types");
  const torch::Tensor centers = attr_path(m, "basis.centers").toTensor();
  nb_ = static_cast<int>(centers.numel());
  centers_ = tensor_vec<T>(m, "basis.centers");
  gamma_ = tensor_vec<T>(m, "basis.gamma", nb_);
  gaussian_ = attr_path(m, "basis.kind").toStringRef() == "gaussian";
  env_rmax_ = static_cast<T>(float_attr(m, "envelope.r_max"));
  env_p_ = static_cast<T>(float_attr(m, "envelope.p"));
  const torch::Tensor r1 = attr_path(m, "radial.net.0.weight").toTensor();
  rh_ = static_cast<int>(r1.size(0));
  if (r1.size(1) != nb_ + 2 * ed_) throw Error("native backend: radial MLP input width is not num_basis + 2 embed");
  rad1_.load(m, "radial.net.0", nb_ + 2 * ed_, rh_);
  rad1_basis_.resize(size_t(rh_) * nb_);
  for (int o = 0; o < rh_; ++o)
    std::copy(rad1_.w.begin() + size_t(o) * rad1_.in, rad1_.w.begin() + size_t(o) * rad1_.in + nb_,
              rad1_basis_.begin() + size_t(o) * nb_);
  A_ = 9 + 1 + 3 * cm_ + cm_ * P_;
  rad2_.load(m, "radial.net.2", rh_, 3 * cm_ + cm_ * P_);
  {
    // output rows in the internal order (see permute_path_weights)
    std::vector<T> w(rad2_.w.size()), b(rad2_.b.size());
    for (int o = 0; o < rad2_.out; ++o) {
      const int src = internal_row(o);
      std::copy(rad2_.w.begin() + size_t(src) * rh_, rad2_.w.begin() + size_t(src + 1) * rh_,
                w.begin() + size_t(o) * rh_);
      b[o] = rad2_.b[src];
    }
    rad2_.w = w;
    rad2_.b = b;
    for (int o = 0; o < rad2_.out; ++o)
      for (int k = 0; k < rh_; ++k) rad2_.wt[size_t(k) * rad2_.out + o] = w[size_t(o) * rh_ + k];
  }
  rad2_w_ = torch::from_blob(rad2_.w.data(), {rad2_.out, rh_}, opts()).clone();
  rad2_wt_ = rad2_w_.t().contiguous();
  rad2_b_ = torch::from_blob(rad2_.b.data(), {rad2_.out}, opts()).clone();
  // the embeddings' part of the radial MLP's first layer, per type of the centre and of the neighbour
  const std::vector<T> ew = tensor_vec<T>(m, "type_embed.weight");
  emb_i_.assign(size_t(ntypes_) * rh_, T(0));
  emb_j_.assign(size_t(ntypes_) * rh_, T(0));
  for (int64_t t = 0; t < ntypes_; ++t)
    for (int o = 0; o < rh_; ++o) {
      const T *row = rad1_.w.data() + size_t(o) * rad1_.in;
      T ai = 0, aj = 0;
      for (int e = 0; e < ed_; ++e) {
        ai += row[nb_ + e] * ew[t * ed_ + e];
        aj += row[nb_ + ed_ + e] * ew[t * ed_ + e];
      }
      emb_i_[t * rh_ + o] = ai;
      emb_j_[t * rh_ + o] = aj;
    }
  // input injection
  Dense<T> tl;
  tl.load(m, "inject_net.type_lin", ed_, m0_);
  type_lin_.assign(size_t(ntypes_) * m0_, T(0));
  for (int64_t t = 0; t < ntypes_; ++t) tl.forward(ew.data() + t * ed_, type_lin_.data() + t * m0_);
  geo_lin_.load(m, "inject_net.geo_lin", cm_, cm_, cm_, m0_, m1_, m2_, true);
  inj_norm_.load(m, "inject_net.norm", m0_, m1_, m2_);
  inv_sqrt_nb_ = static_cast<T>(float_attr(m, "inject_net.inv_sqrt_nb"));
  // the block
  ln1_.load(m, "block.ln1", m0_, m1_, m2_);
  ln2_.load(m, "block.ln2", m0_, m1_, m2_);
  ln3_.load(m, "block.ln3", m0_, m1_, m2_);
  lin_src_.load(m, "block.attn.lin_src", m0_, m1_, m2_, cm_, cm_, cm_, true);
  lin_dst_.load(m, "block.attn.lin_dst", m0_, m1_, m2_, cm_, cm_, cm_, false);
  att_lin_out_.load(m, "block.attn.lin_out", cm_, cm_, cm_, m0_, m1_, m2_, true);
  gate_.load(m, "block.attn.gate", cm_, 2 * cm_);
  ah_ = static_cast<int>(attr_path(m, "block.attn.attn_hidden.weight").toTensor().size(0));
  att_hid_.load(m, "block.attn.attn_hidden", cm_, ah_);
  att_out_.load(m, "block.attn.attn_out", ah_, H_);
  h0_ = static_cast<int>(int_attr(m, "block.ffn.h0"));
  h1_ = static_cast<int>(int_attr(m, "block.ffn.h1"));
  h2_ = static_cast<int>(int_attr(m, "block.ffn.h2"));
  ffn_in_.load(m, "block.ffn.lin_in", m0_, m1_, m2_, h0_ + h1_ + h2_, h1_, h2_, true);
  ffn_out_.load(m, "block.ffn.lin_out", h0_, h1_, h2_, m0_, m1_, m2_, true);
  Y_ = ffn_in_.out_dim();
  Yg_ = h0_ + 3 * h1_ + 5 * h2_;
  // readout
  readout_norm_.load(m, "readout_norm", m0_, m1_, m2_);
  const torch::Tensor ro = attr_path(m, "readout.net.0.weight").toTensor();
  ro1_.load(m, "readout.net.0", m0_, static_cast<int>(ro.size(0)));
  ro2_.load(m, "readout.net.2", ro1_.out, 1);
  energy_shift_ = tensor_vec<T>(m, "energy_shift", ntypes_);
  energy_scale_ = static_cast<T>(float_attr(m, "energy_scale"));
  walls_ = tensor_vec<T>(m, "repulsion.wall", ntypes_ * ntypes_);
  zbl_z_ = tensor_vec<T>(m, "repulsion.z", ntypes_);
  inner_ = static_cast<T>(float_attr(m, "repulsion.inner"));
  screening_ = static_cast<T>(float_attr(m, "repulsion.screening_length"));
  coulomb_ = static_cast<T>(float_attr(m, "repulsion.coulomb"));
  // the coupling tables: group l1's buffer cg<l1> is [9 (Y component n), d1 x K_l1]
  int col = 0;
  for (int l1 = 0; l1 <= 2; ++l1) {
    const int d1 = 2 * l1 + 1;
    std::vector<std::pair<int, int>> group;    // (path, l3) of each path of the group, PATHS order
    int K = 0;
    for (int p = 0; p < P_; ++p)
      if (paths[p][0] == l1) {
        group.push_back({p, paths[p][2]});
        K += 2 * paths[p][2] + 1;
      }
    const std::vector<T> tab = tensor_vec<T>(m, "block.attn.tp.cg" + std::to_string(l1), int64_t(9) * d1 * K);
    int kk = 0;
    for (const auto &pl : group) {
      for (int m3 = 0; m3 < 2 * pl.second + 1; ++m3, ++kk) {
        CgColumn cc{pl.first, COMP_START[pl.second] + m3, int(terms_.size()), 0};
        for (int a = 0; a < d1; ++a) {
          CgTerm t{COMP_START[l1] + a, int(cg_.size()), 0};
          for (int nn = 0; nn < 9; ++nn) {
            const T coef = tab[size_t(nn) * d1 * K + size_t(a) * K + kk];
            if (coef != T(0)) cg_.push_back({nn, coef});
          }
          t.e1 = int(cg_.size());
          if (t.e1 > t.e0) terms_.push_back(t);
        }
        cc.t1 = int(terms_.size());
        cols_.push_back(cc);
        ++col;
      }
    }
  }
  cg_dense_.assign(9 * terms_.size(), T(0));
  for (size_t t = 0; t < terms_.size(); ++t)
    for (int e = terms_[t].e0; e < terms_[t].e1; ++e) cg_dense_[size_t(cg_[e].n) * terms_.size() + t] += cg_[e].coef;
  if (A_ != std::stoi(model.meta("edge_attr_dim")))
    throw Error("native backend: edge_attr_dim of the file does not match the model's widths");
}


// the implementation for the model's dtype
inline std::unique_ptr<NativeModel::Impl> make_impl(Model &model)
{
  if (model.dtype() == torch::kFloat64) return std::make_unique<NativeImpl<double>>(model);
  return std::make_unique<NativeImpl<float>>(model);
}
