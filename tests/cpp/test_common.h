// Helpers shared by the C++ unit tests of the deqformer core: file locations (from the environment
// ctest sets), reference files written by tests/fixtures/make_references.py, structure readers and a
// brute-force neighbour search that splits the atoms between "ranks" with local + ghost rows.
#pragma once

#include "deqformer_driver.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace deqtest {

inline std::string env_dir(const char *name)
{
  const char *v = std::getenv(name);
  if (!v || !*v) {
    ADD_FAILURE() << "environment variable " << name << " is not set (run the tests with ctest)";
    return ".";
  }
  return v;
}
inline std::string model_path(const std::string &f) { return env_dir("DEQ_TEST_MODELS") + "/" + f; }
inline std::string data_path(const std::string &f) { return env_dir("DEQ_TEST_DATA") + "/" + f; }
inline std::string ref_path(const std::string &f) { return env_dir("DEQ_TEST_REFS") + "/" + f; }

using Ref = std::map<std::string, std::vector<double>>;

inline Ref read_ref(const std::string &name)
{
  Ref ref;
  std::ifstream in(ref_path(name + ".ref"));
  EXPECT_TRUE(in.good()) << "reference " << ref_path(name + ".ref") << " missing (make_references fixture)";
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string key;
    ls >> key;
    double v;
    while (ls >> v) ref[key].push_back(v);
  }
  return ref;
}

// max |a - b| / max |b|
inline double rel_diff(const std::vector<double> &a, const std::vector<double> &b)
{
  EXPECT_EQ(a.size(), b.size());
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    num = std::max(num, std::abs(a[i] - b[i]));
    den = std::max(den, std::abs(b[i]));
  }
  return den > 0 ? num / den : num;
}

struct Structure {
  std::vector<std::array<double, 3>> pos;
  std::vector<int64_t> types;    // model type index (H C O -> 0 1 2)
  bool periodic = false;
  double cell[3][3] = {{0, 0, 0}, {0, 0, 0}, {0, 0, 0}};    // rows are lattice vectors
  size_t size() const { return pos.size(); }
};

inline int64_t element_type(const std::string &e)
{
  if (e == "H") return 0;
  if (e == "C") return 1;
  if (e == "O") return 2;
  ADD_FAILURE() << "unknown element " << e;
  return 0;
}

inline Structure read_xyz(const std::string &path)
{
  Structure s;
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << path;
  size_t n = 0;
  in >> n;
  std::string line;
  std::getline(in, line);
  std::getline(in, line);
  for (size_t i = 0; i < n; ++i) {
    std::string e;
    std::array<double, 3> p;
    in >> e >> p[0] >> p[1] >> p[2];
    s.types.push_back(element_type(e));
    s.pos.push_back(p);
  }
  return s;
}

// atom_style atomic data files with types 1=H 2=C 3=O; atoms sorted by ID
inline Structure read_lammps_data(const std::string &path)
{
  Structure s;
  s.periodic = true;
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << path;
  std::string line;
  size_t natoms = 0;
  double lo[3] = {0, 0, 0}, hi[3] = {0, 0, 0}, tilt[3] = {0, 0, 0};
  std::map<long, std::pair<int64_t, std::array<double, 3>>> atoms;
  std::getline(in, line);
  while (std::getline(in, line)) {
    std::istringstream ls(line.substr(0, line.find('#')));
    std::vector<std::string> w;
    std::string t;
    while (ls >> t) w.push_back(t);
    if (w.size() == 2 && w[1] == "atoms") natoms = std::stoul(w[0]);
    const char *names[3][2] = {{"xlo", "xhi"}, {"ylo", "yhi"}, {"zlo", "zhi"}};
    for (int d = 0; d < 3; ++d)
      if (w.size() == 4 && w[2] == names[d][0] && w[3] == names[d][1]) {
        lo[d] = std::stod(w[0]);
        hi[d] = std::stod(w[1]);
      }
    if (w.size() == 6 && w[3] == "xy")
      for (int d = 0; d < 3; ++d) tilt[d] = std::stod(w[d]);
    if (line.rfind("Atoms", 0) == 0) {
      std::getline(in, line);
      while (atoms.size() < natoms && std::getline(in, line)) {
        std::istringstream as(line);
        long id;
        int type;
        std::array<double, 3> p;
        as >> id >> type >> p[0] >> p[1] >> p[2];
        atoms[id] = {type - 1, p};
      }
    }
  }
  for (auto &a : atoms) {
    s.types.push_back(a.second.first);
    s.pos.push_back(a.second.second);
  }
  double c[3][3] = {{hi[0] - lo[0], 0, 0}, {tilt[0], hi[1] - lo[1], 0}, {tilt[1], tilt[2], hi[2] - lo[2]}};
  std::copy(&c[0][0], &c[0][0] + 9, &s.cell[0][0]);
  return s;
}

// ---------------------------------------------------------------- graphs split between ranks

// One "rank": its local atoms (global indices), ghost rows (global atom + periodic image) and graph.
struct RankGraph {
  std::vector<int64_t> local;           // global index of local row i
  std::vector<int64_t> ghost_atom;      // global index of the atom ghost g is an image of
  std::vector<std::array<int, 3>> ghost_image;
  std::vector<int64_t> edge_j_global;   // global index of each edge's neighbour
  deqformer::Graph graph;
};

// Splits the atoms by owner[] (rank of each atom) and builds every rank's full neighbour list within
// r_max with ghost rows for neighbours that are periodic images or owned by another rank.
inline std::vector<RankGraph> build_rank_graphs(const Structure &s, double r_max, const std::vector<int> &owner,
                                                int nranks)
{
  const int64_t n = static_cast<int64_t>(s.size());
  int nimg[3] = {0, 0, 0};
  if (s.periodic) {
    // plane spacing h_k = V / |a_l x a_m|
    auto cross = [](const double *a, const double *b, double *c) {
      c[0] = a[1] * b[2] - a[2] * b[1];
      c[1] = a[2] * b[0] - a[0] * b[2];
      c[2] = a[0] * b[1] - a[1] * b[0];
    };
    double x[3];
    cross(s.cell[1], s.cell[2], x);
    double vol = std::abs(s.cell[0][0] * x[0] + s.cell[0][1] * x[1] + s.cell[0][2] * x[2]);
    for (int k = 0; k < 3; ++k) {
      cross(s.cell[(k + 1) % 3], s.cell[(k + 2) % 3], x);
      nimg[k] = static_cast<int>(std::ceil(r_max / (vol / std::sqrt(x[0] * x[0] + x[1] * x[1] + x[2] * x[2]))));
    }
  }
  std::vector<RankGraph> out(nranks);
  std::vector<int64_t> row_of(n, -1);
  for (int r = 0; r < nranks; ++r) {
    RankGraph &rg = out[r];
    for (int64_t i = 0; i < n; ++i)
      if (owner[i] == r) {
        row_of[i] = static_cast<int64_t>(rg.local.size());
        rg.local.push_back(i);
      }
  }
  for (int r = 0; r < nranks; ++r) {
    RankGraph &rg = out[r];
    const int64_t nl = static_cast<int64_t>(rg.local.size());
    std::map<std::array<int64_t, 4>, int64_t> ghost_row;
    std::vector<int64_t> ei, ej;
    std::vector<double> vec;
    for (int64_t li = 0; li < nl; ++li) {
      const int64_t i = rg.local[li];
      for (int64_t j = 0; j < n; ++j)
        for (int a = -nimg[0]; a <= nimg[0]; ++a)
          for (int b = -nimg[1]; b <= nimg[1]; ++b)
            for (int c = -nimg[2]; c <= nimg[2]; ++c) {
              double v[3];
              for (int d = 0; d < 3; ++d)
                v[d] = s.pos[j][d] - s.pos[i][d] + a * s.cell[0][d] + b * s.cell[1][d] + c * s.cell[2][d];
              double r2 = v[0] * v[0] + v[1] * v[1] + v[2] * v[2];
              if (!(r2 > 0.0) || !(std::sqrt(r2) < r_max)) continue;
              int64_t row;
              if (a == 0 && b == 0 && c == 0 && owner[j] == r) {
                row = row_of[j];
              } else {
                std::array<int64_t, 4> key = {j, a, b, c};
                auto it = ghost_row.find(key);
                if (it == ghost_row.end()) {
                  row = nl + static_cast<int64_t>(rg.ghost_atom.size());
                  ghost_row[key] = row;
                  rg.ghost_atom.push_back(j);
                  rg.ghost_image.push_back({a, b, c});
                } else {
                  row = it->second;
                }
              }
              ei.push_back(li);
              ej.push_back(row);
              rg.edge_j_global.push_back(j);
              vec.insert(vec.end(), v, v + 3);
            }
    }
    const int64_t ne = static_cast<int64_t>(ei.size());
    std::vector<int64_t> types;
    for (int64_t i : rg.local) types.push_back(s.types[i]);
    for (int64_t j : rg.ghost_atom) types.push_back(s.types[j]);
    rg.graph.n_local = nl;
    rg.graph.n_all = static_cast<int64_t>(types.size());
    rg.graph.types = torch::tensor(types, torch::kInt64);
    auto idx = torch::empty({2, ne}, torch::kInt64);
    for (int64_t e = 0; e < ne; ++e) {
      idx[0][e] = ei[e];
      idx[1][e] = ej[e];
    }
    rg.graph.edge_index = idx;
    rg.graph.edge_vec = torch::from_blob(vec.data(), {ne, 3}, torch::kFloat64).clone();
  }
  return out;
}

inline std::vector<int> owners_by_x(const Structure &s, int nranks)
{
  std::vector<int> owner(s.size());
  double xmin = 1e300, xmax = -1e300;
  for (auto &p : s.pos) {
    xmin = std::min(xmin, p[0]);
    xmax = std::max(xmax, p[0]);
  }
  for (size_t i = 0; i < s.size(); ++i)
    owner[i] = std::min(nranks - 1, static_cast<int>((s.pos[i][0] - xmin) / (xmax - xmin + 1e-9) * nranks));
  return owner;
}

// Accumulated per-atom results of one evaluation (all ranks), in global atom order.
struct Totals {
  double energy = 0.0;
  std::vector<double> atomic_energy, forces, virial = std::vector<double>(6, 0.0);
  int iters = 0, adjoint_iters = 0;
};

inline void accumulate(const RankGraph &rg, const deqformer::Result &r, Totals &t)
{
  auto e = r.atomic_energy.accessor<double, 1>();
  for (size_t li = 0; li < rg.local.size(); ++li) t.atomic_energy[rg.local[li]] = e[li];
  auto ei = rg.graph.edge_index.accessor<int64_t, 2>();
  auto v = rg.graph.edge_vec.accessor<double, 2>();
  auto g = r.edge_grad.accessor<double, 2>();
  for (int64_t k = 0; k < rg.graph.edge_vec.size(0); ++k) {
    const int64_t i = rg.local[ei[0][k]], j = rg.edge_j_global[k];
    for (int d = 0; d < 3; ++d) {
      t.forces[3 * i + d] += g[k][d];
      t.forces[3 * j + d] -= g[k][d];
    }
    t.virial[0] -= v[k][0] * g[k][0];
    t.virial[1] -= v[k][1] * g[k][1];
    t.virial[2] -= v[k][2] * g[k][2];
    t.virial[3] -= v[k][0] * g[k][1];
    t.virial[4] -= v[k][0] * g[k][2];
    t.virial[5] -= v[k][1] * g[k][2];
  }
  t.energy = r.energy;
  t.iters = r.forward.iters;
  t.adjoint_iters = r.adjoint.iters;
}

}    // namespace deqtest
