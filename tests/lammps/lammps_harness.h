// Pieces shared by the LAMMPS integration tests of deqformer and deqformer/kk: solver settings, the
// entries of the solver statistics (deqformer_solver_stats.h), a scratch folder, and the per-run result
// record.
#pragma once

#include "compute.h"
#include "deqformer_solver_stats.h"
#include "lammps.h"
#include "modify.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <vector>

namespace deqtest {

inline const char *const TIGHT = "tol 1e-12 adjoint_tol 1e-12 max_iter 100";
using namespace deqformer::solver_stats;

// The pair_style line with the backend chosen by the environment (DEQ_TEST_BACKEND=native|torchscript,
// set by ctest for the two runs of each LAMMPS test): " backend X" after "deqformer" (and its model
// file, if it names one). Other lines, and every line when the variable is unset, stay as they are.
inline std::string with_backend(const std::string &line)
{
  const char *b = std::getenv("DEQ_TEST_BACKEND");
  if (!b || !*b || line.rfind("pair_style", 0) != 0) return line;
  const std::string key = " deqformer";
  size_t pos = line.find(key);
  if (pos == std::string::npos) pos = line.find(" deqformer/kk");
  if (pos == std::string::npos) return line;
  pos = line.find_first_of(" ", pos + 1);    // end of the style name
  if (pos == std::string::npos) return line + " backend " + b;
  const size_t start = line.find_first_not_of(" ", pos);
  if (start != std::string::npos) {
    const size_t end = std::min(line.find(' ', start), line.size());
    if (end - start > 3 && line.compare(end - 3, 3, ".pt") == 0) pos = end;
  }
  return line.substr(0, pos) + " backend " + b + line.substr(pos);
}

inline std::string tmpdir()
{
  const char *t = std::getenv("DEQ_TEST_TMP");
  std::string d = t ? t : "/tmp";
  std::string cmd = "mkdir -p '" + d + "'";
  if (std::system(cmd.c_str()) != 0) ADD_FAILURE() << "cannot create " << d;
  return d;
}

// Everything a test compares, gathered over the ranks of a run, in atom-ID order.
struct Snapshot {
  double energy = 0.0;
  std::vector<double> eatom, f, x, vatom, virial, stats;
  std::string error, pair_style;
  std::vector<double> flat() const
  {
    std::vector<double> v = {energy};
    for (auto *a : {&eatom, &f, &x, &vatom, &virial, &stats}) {
      v.push_back(static_cast<double>(a->size()));
      v.insert(v.end(), a->begin(), a->end());
    }
    return v;
  }
  void unflat(const std::vector<double> &v)
  {
    size_t k = 0;
    energy = v[k++];
    for (auto *a : {&eatom, &f, &x, &vatom, &virial, &stats}) {
      size_t n = static_cast<size_t>(v[k++]);
      a->assign(v.begin() + k, v.begin() + k + n);
      k += n;
    }
  }
};

inline LAMMPS_NS::Compute *find_compute(LAMMPS_NS::LAMMPS *lmp, const char *id)
{
  int i = lmp->modify->find_compute(id);
  return i >= 0 ? lmp->modify->compute[i] : nullptr;
}

}    // namespace deqtest
