// deqformer: forward fixed-point solve, adjoint solve and edge gradients (docs/contract.md, steps 1-5).
#include "deqformer_driver.h"
#include "deqformer_native.h"
#include "deqformer_solver.h"

#include <chrono>
#include <cmath>
#include <functional>
#include <limits>
#include <memory>
#include <sstream>

#include <torch/torch.h>

namespace deqformer {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0)
{
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// HaloExchange decorator that accumulates the time spent communicating
class TimedHalo : public HaloExchange {
 public:
  TimedHalo(HaloExchange &inner, double &acc) : inner_(inner), acc_(acc) {}
  void forward(torch::Tensor &z) override { timed([&] { inner_.forward(z); }); }
  void reverse(torch::Tensor &v) override { timed([&] { inner_.reverse(v); }); }
  double allreduce_max(double x) override
  {
    double r = 0.0;
    timed([&] { r = inner_.allreduce_max(x); });
    return r;
  }
  double allreduce_sum(double x) override
  {
    double r = 0.0;
    timed([&] { r = inner_.allreduce_sum(x); });
    return r;
  }

 private:
  void timed(const std::function<void()> &fn)
  {
    auto t0 = Clock::now();
    fn();
    acc_ += seconds_since(t0);
  }
  HaloExchange &inner_;
  double &acc_;
};

// max_i |fz_i - z_i| / (|fz_i| + 1e-12) on this process; +inf if fz has a non-finite entry
double local_residual(const torch::Tensor &z, const torch::Tensor &fz)
{
  if (fz.size(0) == 0) return 0.0;
  if (!torch::isfinite(fz).all().item<bool>()) return std::numeric_limits<double>::infinity();
  auto r = (fz - z).norm(2, {1}) / (fz.norm(2, {1}) + 1e-12);
  return r.max().item<double>();
}

// The iteration of deqformer.driver.fixed_point with the residual reduced over all processes.
// `fn(z_local)` returns f(z) for the local atoms (it communicates as it needs). Returns the best
// iterate's f(z) (smallest global residual) and fills `stats`. native: the solver update and the
// residual in C++ (deqformer_solver.h) where it implements the solver, else the model's TorchScript rule.
torch::Tensor fixed_point(Model &model, HaloExchange &halo, const std::function<torch::Tensor(const torch::Tensor &)> &fn,
                          torch::Tensor z, int kind, double tol, int max_iter, int memory, double beta,
                          double lam, SolveStats &stats, bool native)
{
  const bool have_atoms = z.size(0) > 0;
  std::unique_ptr<NativeSolver> ns;
  if (native && z.device().is_cpu() && NativeSolver::supports(kind, memory))
    ns = std::make_unique<NativeSolver>(kind, z.size(0), z.size(1), memory);
  c10::IValue state;
  {
    torch::NoGradGuard no_grad;
    if (have_atoms && !ns) state = model.solver_init(z, kind, memory);
  }
  torch::Tensor best = z;
  double best_res = std::numeric_limits<double>::infinity();
  stats = SolveStats();
  for (int k = 0; k < max_iter; ++k) {
    torch::Tensor fz = fn(z);
    double res = halo.allreduce_max(ns ? max_relative_residual(z, fz) : local_residual(z, fz));
    if (res < best_res) {
      best = fz;
      best_res = res;
    }
    if (res < tol || !std::isfinite(res)) {
      stats.iters = k + 1;
      stats.residual = best_res;
      stats.converged = res < tol;
      return best;
    }
    torch::NoGradGuard no_grad;
    if (ns)
      z = ns->update(z, fz, k, beta, lam);
    else if (have_atoms)
      z = model.solver_update(kind, z, fz, state, k, beta, lam);
    else
      z = fz;
  }
  stats.iters = max_iter;
  stats.residual = best_res;
  stats.converged = false;
  return best;
}

torch::Tensor start_value(const torch::Tensor &given, bool reuse, int64_t n, int64_t d,
                          const torch::TensorOptions &fopt, const char *what)
{
  if (!reuse || !given.defined()) return torch::zeros({n, d}, fopt);
  if (given.dim() != 2 || given.size(0) != n || given.size(1) != d) {
    std::ostringstream msg;
    msg << "deqformer driver: start value " << what << " has shape " << given.sizes() << ", expected [" << n
        << ", " << d << "]";
    throw Error(msg.str());
  }
  // no copy when the caller already gives the model's dtype and device: the solver never writes into
  // its start value
  return given.to(fopt).contiguous();
}

std::string describe(const char *what, const SolveStats &s, double tol)
{
  std::ostringstream out;
  out << what << " solve did not converge: " << s.iters << " iterations, residual " << s.residual
      << " > tolerance " << tol;
  return out.str();
}

}    // namespace

std::string nonconvergence_message(const Result &r, const DriverSettings &s)
{
  std::string msg;
  if (!r.forward.converged) msg = describe("forward", r.forward, s.tol);
  if (s.compute_forces && !r.adjoint.converged)
    msg += (msg.empty() ? "" : "; ") + describe("adjoint", r.adjoint, s.adjoint_tol);
  return msg;
}

Result solve_and_differentiate(Model &model, const Graph &graph, const DriverSettings &s, HaloExchange &halo_in,
                               const torch::Tensor &z0, const torch::Tensor &u0)
{
  auto t_start = Clock::now();
  Result res;
  TimedHalo halo(halo_in, res.time.comm);

  const int64_t n = graph.n_local;
  const int64_t n_all = graph.n_all;
  const int64_t d = model.state_dim();
  const auto dtype = model.dtype();
  // every tensor lives on the model's device (graph tensors given elsewhere are moved there)
  const auto fopt = torch::TensorOptions().dtype(dtype).device(model.device());
  const auto iopt = torch::TensorOptions().dtype(torch::kInt64).device(model.device());
  if (n < 0 || n_all < n) throw Error("deqformer driver: n_local must be in [0, n_all]");
  if (graph.types.numel() != n_all)
    throw Error("deqformer driver: types has " + std::to_string(graph.types.numel()) + " entries, n_all = " +
                std::to_string(n_all));

  const torch::Tensor types = graph.types.to(iopt).contiguous();
  const torch::Tensor types_local = types.narrow(0, 0, n);
  const torch::Tensor edge_index = graph.edge_index.to(iopt).contiguous();
  const torch::Tensor edge_vec = graph.edge_vec.to(fopt).contiguous();
  const int64_t n_edges = edge_vec.size(0);

  NativeModel *native = s.backend == Backend::NATIVE ? &model.native() : nullptr;

  // 1. per-geometry edge data and input injection
  auto t0 = Clock::now();
  torch::Tensor attr, x;
  {
    torch::NoGradGuard no_grad;
    if (native) {
      native->prepare(edge_vec, types, edge_index, n);
      x = native->x();
    } else if (n > 0) {
      attr = model.edge_features(edge_vec, types, edge_index);
      x = model.inject(types, edge_index, attr, n);
    } else {
      x = torch::zeros({0, d}, fopt);
    }
  }
  res.time.edge_features = seconds_since(t0);

  // 2. forward solve: z_all holds the iterate on local rows and its ghost copies on the others
  t0 = Clock::now();
  torch::Tensor z_all = torch::zeros({n_all, d}, fopt);
  auto step = [&](const torch::Tensor &z) -> torch::Tensor {
    torch::NoGradGuard no_grad;
    z_all.narrow(0, 0, n).copy_(z);
    halo.forward(z_all);
    if (n == 0) return torch::zeros({0, d}, fopt);
    return native ? native->step(z_all) : model.step(z_all, x, edge_index, attr, n);
  };
  torch::Tensor zs = fixed_point(model, halo, step, start_value(z0, s.reuse, n, d, fopt, "z0"), s.kind, s.tol,
                                 s.max_iter, s.memory, s.beta, s.lam, res.forward, native != nullptr);
  // ghost rows of z*: the best iterate is not necessarily the last one communicated
  {
    torch::NoGradGuard no_grad;
    z_all.narrow(0, 0, n).copy_(zs);
    halo.forward(z_all);
  }
  res.time.forward = seconds_since(t0);
  if (!res.forward.converged && s.nonconvergence == NonConvergence::ERROR)
    throw NotConverged("deqformer: " + describe("forward", res.forward, s.tol));

  // 3. energies
  t0 = Clock::now();
  torch::Tensor e;
  {
    torch::NoGradGuard no_grad;
    // readout of the fixed point plus the core repulsion below the training data's closest contacts
    if (n == 0)
      e = torch::zeros({0}, fopt);
    else if (native)
      e = native->atomic_energy(zs, types_local) + native->pair_energy(edge_vec, types, edge_index, n);
    else
      e = model.atomic_energy(zs, types_local) + model.pair_energy(edge_vec, types, edge_index, n);
  }
  res.atomic_energy = e.to(torch::kFloat64).contiguous();
  res.energy = halo.allreduce_sum(res.atomic_energy.sum().item<double>());
  res.z = zs.contiguous();
  if (!s.compute_forces) {
    res.time.energy = seconds_since(t0);
    res.time.total = seconds_since(t_start);
    return res;
  }

  // 4. adjoint solve u = g + J^T u. TorchScript: f(z*) is evaluated once with its autograd graph and
  //    every iteration is one vector-Jacobian product through that retained graph, the value of
  //    adjoint_step(z*_all, ..., u) without re-running the forward pass (docs/contract.md). Native: the
  //    block's activations at z* are kept (linearize) and the product is written by hand.
  torch::AutoGradMode grad_on(native == nullptr);
  torch::Tensor g;
  if (n == 0)
    g = torch::zeros({0, d}, fopt);
  else
    g = (native ? native->energy_grad_z(zs, types_local) : model.energy_grad_z(zs, types_local)).detach();
  res.time.energy = seconds_since(t0);
  t0 = Clock::now();
  torch::Tensor z_req, f_graph;
  if (n > 0) {
    if (native) {
      native->linearize(z_all);
    } else {
      z_req = z_all.detach().clone().requires_grad_(true);
      f_graph = model.step(z_req, x, edge_index, attr, n);
    }
  }
  auto adjoint = [&](const torch::Tensor &u) -> torch::Tensor {
    torch::Tensor v_all;
    if (n > 0 && native) {
      v_all = native->vjp(u);
    } else if (n > 0) {
      auto grads = torch::autograd::grad({f_graph}, {z_req}, {u}, /*retain_graph=*/true, /*create_graph=*/false,
                                         /*allow_unused=*/true);
      v_all = grads[0].defined() ? grads[0].detach().contiguous() : torch::zeros({n_all, d}, fopt);
    } else {
      v_all = torch::zeros({n_all, d}, fopt);
    }
    halo.reverse(v_all);
    torch::NoGradGuard no_grad;
    return g + v_all.narrow(0, 0, n);
  };
  torch::Tensor us = fixed_point(model, halo, adjoint, start_value(u0, s.reuse, n, d, fopt, "u0"), s.kind,
                                 s.adjoint_tol, s.max_iter, s.memory, s.beta, s.lam, res.adjoint, native != nullptr);
  f_graph = torch::Tensor();    // frees the retained graph
  res.time.adjoint = seconds_since(t0);
  if (!res.adjoint.converged && s.nonconvergence == NonConvergence::ERROR)
    throw NotConverged("deqformer: " + describe("adjoint", res.adjoint, s.adjoint_tol));

  // 5. dE/d(edge_vec)
  t0 = Clock::now();
  torch::Tensor dvec;
  if (n > 0 && n_edges > 0)
    dvec = (native ? native->edge_grad(us) : model.edge_grad(z_all, us, types, edge_index, edge_vec, n)).detach();
  else
    dvec = torch::zeros({n_edges, 3}, fopt);
  res.edge_grad = dvec.to(torch::kFloat64).contiguous();
  res.u = us.detach().contiguous();
  res.time.edge_grad = seconds_since(t0);
  res.time.total = seconds_since(t_start);
  return res;
}

}    // namespace deqformer
