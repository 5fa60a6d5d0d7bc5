// docs/contract.md, checked from C++: the metadata and methods of a deployed file, and the error text
// for every kind of bad file.
#include "test_common.h"

#include <gmock/gmock.h>
#include <torch/cuda.h>

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
  EXPECT_EQ(m.meta("contract_version"), "1");
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
  EXPECT_THAT(msg, HasSubstr("reads contract version 1 only"));
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
