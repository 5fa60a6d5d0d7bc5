// docs/contract.md, checked from C++: the metadata and methods of a deployed file, and the error text
// for every kind of bad file.
#include "test_common.h"

#include <gmock/gmock.h>
#include <torch/cuda.h>

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <random>

using deqformer::Error;
using deqformer::Model;
using deqtest::model_path;
using ::testing::HasSubstr;

namespace {

// The message of the deqformer::Error that loading `path` throws ("" if it loads).
std::string load_error(const std::string &path)
{
  try {
    Model m(path);
  } catch (const Error &e) {
    return e.what();
  } catch (const std::exception &e) {
    return std::string("UNEXPECTED EXCEPTION TYPE: ") + e.what();
  }
  return "";
}

}    // namespace

TEST(Contract, MetadataOfTestModel)
{
  Model m(model_path("model_f64.pt"));
  EXPECT_EQ(m.meta("contract_version"), "2");
  EXPECT_EQ(m.meta("repulsion"), "zbl");
  EXPECT_DOUBLE_EQ(m.r_max(), 4.0);
  EXPECT_EQ(m.num_types(), 3);
  EXPECT_EQ(m.type_names(), (std::vector<std::string>{"H", "C", "O"}));
  EXPECT_EQ(m.type_names_joined(), "H C O");
  EXPECT_EQ(m.type_index("C"), 1);
  EXPECT_EQ(m.type_index("N"), -1);
  EXPECT_EQ(m.state_dim(), 8 + 3 * 4 + 5 * 4);    // 8x0e+4x1o+4x2e
  EXPECT_EQ(m.meta("irreps"), "8x0e+4x1o+4x2e");
  EXPECT_EQ(m.dtype(), torch::kFloat64);
  EXPECT_EQ(m.dtype_name(), "float64");
  EXPECT_EQ(m.energy_unit(), "eV");
  EXPECT_EQ(m.length_unit(), "Angstrom");
  EXPECT_EQ(m.lammps_units(), "metal");
  EXPECT_EQ(m.meta("mode"), "deq");
  const auto &s = m.default_settings();
  EXPECT_EQ(s.kind, deqformer::ANDERSON);
  EXPECT_EQ(m.meta("solver"), "anderson");
  EXPECT_DOUBLE_EQ(s.tol, 1e-6);
  EXPECT_DOUBLE_EQ(s.adjoint_tol, 1e-6);
  EXPECT_EQ(s.max_iter, 100);
  EXPECT_EQ(s.memory, 5);
  EXPECT_DOUBLE_EQ(s.beta, 1.0);
  EXPECT_DOUBLE_EQ(s.lam, 1e-6);
  for (const char *key : {"deqformer_version", "num_types", "edge_attr_dim", "solver_code"})
    EXPECT_EQ(m.metadata().count(key), 1u) << key;
  EXPECT_THROW(m.meta("no_such_key"), Error);
}

TEST(Contract, Float32Model)
{
  Model m(model_path("model_f32.pt"));
  EXPECT_EQ(m.dtype(), torch::kFloat32);
  EXPECT_EQ(m.dtype_name(), "float32");
  EXPECT_EQ(m.state_dim(), 40);
}

// The argument names of every contract method, as the table in docs/contract.md lists them.
TEST(Contract, MethodSignatures)
{
  Model m(model_path("model_f64.pt"));
  const std::map<std::string, std::vector<std::string>> expected = {
      {"metadata", {}},
      {"edge_features", {"edge_vec", "types", "edge_index"}},
      {"inject", {"types", "edge_index", "edge_attr", "n_local"}},
      {"step", {"z", "x", "edge_index", "edge_attr", "n_local"}},
      {"atomic_energy", {"z", "types"}},
      {"pair_energy", {"edge_vec", "types", "edge_index", "n_local"}},
      {"energy_grad_z", {"z", "types"}},
      {"adjoint_step", {"z", "x", "edge_index", "edge_attr", "u", "n_local"}},
      {"edge_grad", {"z", "u", "types", "edge_index", "edge_vec", "n_local"}},
      {"solver_init", {"z", "kind", "memory"}},
      {"solver_update", {"kind", "z", "fz", "state", "k", "beta", "lam"}},
  };
  for (const auto &kv : expected) {
    auto method = m.module().find_method(kv.first);
    ASSERT_TRUE(method.has_value()) << kv.first;
    const auto &args = method->function().getSchema().arguments();
    std::vector<std::string> names;
    for (size_t i = 1; i < args.size(); ++i) names.push_back(args[i].name());    // 0 is self
    EXPECT_EQ(names, kv.second) << kv.first;
  }
}

TEST(Contract, SolverNames)
{
  EXPECT_EQ(deqformer::solver_code("anderson"), 0);
  EXPECT_EQ(deqformer::solver_code("broyden"), 1);
  EXPECT_EQ(deqformer::solver_code("picard"), 2);
  EXPECT_EQ(deqformer::solver_name(1), "broyden");
  try {
    deqformer::solver_code("newton");
    FAIL() << "no error for an unknown solver";
  } catch (const Error &e) {
    EXPECT_THAT(e.what(), HasSubstr("'newton'"));
    EXPECT_THAT(e.what(), HasSubstr("anderson, broyden or picard"));
  }
}

TEST(Contract, DeviceSelection)
{
  // the model starts on the CPU; to(cpu) is a no-op; names other than cpu/cuda[:N] and CUDA without a
  // CUDA LibTorch are refused with a message saying why
  Model m(model_path("model_f64.pt"));
  EXPECT_TRUE(m.device().is_cpu());
  m.to(deqformer::parse_device("cpu"));
  EXPECT_TRUE(m.device().is_cpu());
  auto error_of = [](const std::string &name) -> std::string {
    try {
      deqformer::parse_device(name, 3);
    } catch (const Error &e) {
      return e.what();
    }
    return "";
  };
  EXPECT_THAT(error_of("gpu"), HasSubstr("unknown device 'gpu': use cpu, cuda or cuda:N"));
  if (!torch::cuda::is_available()) {
    EXPECT_THAT(error_of("cuda"), HasSubstr("needs a LibTorch built with CUDA and a visible GPU"));
    EXPECT_THAT(error_of("cuda:1"), HasSubstr("needs a LibTorch built with CUDA"));
  } else {
    EXPECT_EQ(error_of("cuda"), "");
    EXPECT_THAT(error_of("cuda:x"), HasSubstr("must be an integer"));
  }
}

TEST(BadFiles, MissingFile)
{
  std::string p = model_path("does_not_exist.pt");
  auto msg = load_error(p);
  EXPECT_THAT(msg, HasSubstr("'" + p + "'"));
  EXPECT_THAT(msg, HasSubstr("No such file or directory"));
  EXPECT_THAT(msg, HasSubstr("deqformer-deploy"));
}

TEST(BadFiles, Directory)
{
  auto msg = load_error(deqtest::env_dir("DEQ_TEST_MODELS"));
  EXPECT_THAT(msg, HasSubstr("is not a regular file"));
}

TEST(BadFiles, EmptyFile)
{
  auto msg = load_error(model_path("empty.pt"));
  EXPECT_THAT(msg, HasSubstr("empty.pt' is empty"));
  EXPECT_THAT(msg, HasSubstr("deqformer-deploy"));
}

TEST(BadFiles, Truncated)
{
  auto msg = load_error(model_path("truncated.pt"));
  EXPECT_THAT(msg, HasSubstr("truncated.pt' is not a readable TorchScript archive"));
  EXPECT_THAT(msg, HasSubstr("deqformer-deploy"));
}

TEST(BadFiles, RandomBytes)
{
  auto msg = load_error(model_path("random_bytes.pt"));
  EXPECT_THAT(msg, HasSubstr("random_bytes.pt' is not a readable TorchScript archive"));
  EXPECT_THAT(msg, HasSubstr("deqformer-deploy"));
}

TEST(BadFiles, TorchScriptWithoutMetadata)
{
  auto msg = load_error(model_path("no_metadata.pt"));
  EXPECT_THAT(msg, HasSubstr("no_metadata.pt' is a TorchScript file but not a deqformer model"));
  EXPECT_THAT(msg, HasSubstr("no metadata() method"));
}

TEST(BadFiles, ContractVersion)
{
  auto msg = load_error(model_path("contract_999.pt"));
  EXPECT_THAT(msg, HasSubstr("contract_999.pt' has contract version 999"));
  EXPECT_THAT(msg, HasSubstr("reads contract version 2 only"));
  EXPECT_THAT(msg, HasSubstr("redeploy"));
}

TEST(BadFiles, MissingKeys)
{
  auto msg = load_error(model_path("missing_keys.pt"));
  EXPECT_THAT(msg, HasSubstr("missing_keys.pt': metadata lacks the keys r_max, num_types"));
  EXPECT_THAT(msg, HasSubstr("deqformer-deploy"));
}

TEST(BadFiles, Dtype)
{
  auto msg = load_error(model_path("bad_dtype.pt"));
  EXPECT_THAT(msg, HasSubstr("bad_dtype.pt': dtype 'float16' is not supported (float64 or float32)"));
}

// ---------------------------------------------------------------- fuzzing (seeded, reproducible)
namespace {

std::string random_string(std::mt19937_64 &rng)
{
  static const std::vector<std::string> nasty = {
      "", " ", "nan", "NaN", "inf", "-inf", "-1", "0", "-0", "1e400", "1e-400", "0x10", "3abc", "  7", "7 ",
      "1.5", "2", "1", "999999999999999999999", "-999999999999999999999", "float16", "float32", "float64",
      "eV", "kcal/mol", "Angstrom", "H C O", "H C", "deq", "explicit", std::string(300, '9'), "1e-12"};
  switch (rng() % 3) {
    case 0: return nasty[rng() % nasty.size()];
    case 1: return std::to_string(static_cast<double>(static_cast<int64_t>(rng() % 2001) - 1000) / 7.0);
    default: {
      std::string s(rng() % 12, ' ');
      for (auto &c : s) c = static_cast<char>(rng() % 256);
      return s;
    }
  }
}

}    // namespace

// Mutated metadata (values replaced by garbage, keys removed or added): parse_metadata either accepts it,
// and then every value it returns is usable, or throws deqformer::Error naming the file; nothing else.
TEST(Fuzz, MetadataParser)
{
  Model m(model_path("model_f64.pt"));
  const auto base = m.metadata();
  std::vector<std::string> keys;
  for (const auto &kv : base) keys.push_back(kv.first);
  std::mt19937_64 rng(20261127);
  int accepted = 0, refused = 0;
  for (int trial = 0; trial < 20000; ++trial) {
    auto meta = base;
    const int mutations = 1 + static_cast<int>(rng() % 3);
    for (int k = 0; k < mutations; ++k) {
      const std::string &key = keys[rng() % keys.size()];
      switch (rng() % 5) {
        case 0: meta.erase(key); break;
        case 1: meta["fuzz_" + std::to_string(rng() % 100)] = random_string(rng); break;
        default: meta[key] = random_string(rng); break;
      }
    }
    try {
      deqformer::ModelInfo info = deqformer::parse_metadata("fuzz.pt", meta);
      ++accepted;
      EXPECT_TRUE(std::isfinite(info.r_max) && info.r_max > 0.0);
      EXPECT_GE(info.state_dim, 1);
      EXPECT_FALSE(info.type_names.empty());
      EXPECT_EQ(static_cast<long>(info.type_names.size()), std::stol(meta.at("num_types")));
      const auto &d = info.defaults;
      EXPECT_TRUE(d.kind >= 0 && d.kind <= 2);
      EXPECT_TRUE(std::isfinite(d.tol) && d.tol > 0.0);
      EXPECT_TRUE(std::isfinite(d.adjoint_tol) && d.adjoint_tol > 0.0);
      EXPECT_TRUE(std::isfinite(d.beta) && d.beta > 0.0);
      EXPECT_TRUE(std::isfinite(d.lam) && d.lam >= 0.0);
      EXPECT_GE(d.max_iter, 1);
      EXPECT_GE(d.memory, 1);
    } catch (const Error &e) {
      ++refused;
      EXPECT_THAT(e.what(), HasSubstr("fuzz.pt"));
    }
    // any other exception escapes and fails the test
  }
  std::printf("[ fuzz ] metadata: 20000 mutants, %d accepted, %d refused with a deqformer error\n", accepted,
              refused);
  EXPECT_GT(accepted, 0);
  EXPECT_GT(refused, 0);
}

// Byte-level damage to a deployed file (bytes overwritten, the file cut short): loading either succeeds
// (a byte the archive does not check) or throws deqformer::Error; it never crashes or hangs.
TEST(Fuzz, DamagedModelFile)
{
  std::ifstream in(model_path("model_f64.pt"), std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_GT(bytes.size(), 1000u);
  const char *tmp = std::getenv("DEQ_TEST_TMP");
  const std::string path = std::string(tmp && *tmp ? tmp : "/tmp") + "/fuzz_model_" +
                           std::to_string(static_cast<long>(::getpid())) + ".pt";
  std::mt19937_64 rng(7);
  int loaded = 0, refused = 0;
  for (int trial = 0; trial < 60; ++trial) {
    std::string damaged = bytes;
    if (trial % 4 == 3) {
      damaged.resize(rng() % damaged.size());
    } else {
      const int n = 1 + static_cast<int>(rng() % 16);
      for (int k = 0; k < n; ++k) damaged[rng() % damaged.size()] = static_cast<char>(rng() % 256);
    }
    {
      std::ofstream out(path, std::ios::binary | std::ios::trunc);
      out.write(damaged.data(), static_cast<std::streamsize>(damaged.size()));
    }
    try {
      Model m(path);
      ++loaded;
    } catch (const Error &e) {
      ++refused;
      EXPECT_THAT(e.what(), HasSubstr(path));
    }
  }
  std::remove(path.c_str());
  std::printf("[ fuzz ] damaged files: 60 mutants, %d loaded, %d refused with a deqformer error\n", loaded,
              refused);
  EXPECT_GT(refused, 0);
}
