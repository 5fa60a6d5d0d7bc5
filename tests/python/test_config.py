"""Config parsing: nequip keys, defaults, several datasets, and errors for bad values."""
import warnings
from pathlib import Path

import pytest

from deqformer.config import ConfigError, ConfigWarning, load_config, parse_config

NEQUIP_YAML = """
root: results
run_name: aspirin
seed: 123
dataset_seed: 456
dataset: npz
dataset_file_name: data/aspirin.npz
key_mapping:
  z: atomic_numbers
  E: total_energy
  F: forces
  R: pos
npz_fixed_field_keys:
  - atomic_numbers
chemical_symbols:
  - H
  - O
  - C
r_max: 4.0
n_train: 950
n_val: 50
batch_size: 5
validation_batch_size: 10
learning_rate: 0.005
max_epochs: 100000
loss_coeffs:
  forces: 1.0
  total_energy:
    - 1.0
    - PerAtomMSELoss
use_ema: true
ema_decay: 0.99
ema_use_num_updates: true
lr_scheduler_name: ReduceLROnPlateau
lr_scheduler_patience: 100
lr_scheduler_factor: 0.5
early_stopping_patiences:
  validation_loss: 50
early_stopping_lower_bounds:
  LR: 1.0e-5
default_dtype: float32
model_dtype: float64
optimizer_name: Adam
optimizer_amsgrad: true
# nequip model keys: ignored with a warning
num_layers: 4
l_max: 1
parity: true
num_features: 32
wandb: false
model_builders:
  - SimpleIrrepsConfig
model:
  irreps: 8x0e+4x1o+4x2e
"""


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_nequip_yaml(tmp_path):
    path = write(tmp_path, NEQUIP_YAML)
    with pytest.warns(ConfigWarning) as rec:
        cfg = load_config(path)
    msg = str(rec[0].message)
    for key in ("num_layers", "l_max", "parity", "num_features", "wandb", "model_builders"):
        assert key in msg
    assert cfg.ignored_keys == sorted(["num_layers", "l_max", "parity", "num_features", "wandb", "model_builders"])
    assert len(cfg.datasets) == 1
    ds = cfg.datasets[0]
    assert ds.kind == "npz"
    assert ds.file_name == (tmp_path / "data" / "aspirin.npz").resolve()  # relative to the YAML's folder
    assert ds.key_mapping == {"z": "atomic_numbers", "E": "total_energy", "F": "forces", "R": "pos"}
    assert ds.npz_fixed_field_keys == ["atomic_numbers"]
    assert (ds.n_train, ds.n_val) == (950, 50)
    assert (ds.energy_unit, ds.length_unit) == ("eV", "Angstrom")
    assert cfg.type_names == ["H", "O", "C"]
    assert cfg.r_max == 4.0
    assert (cfg.batch_size, cfg.validation_batch_size) == (5, 10)
    assert cfg.learning_rate == 0.005 and cfg.max_epochs == 100000
    assert (cfg.seed, cfg.dataset_seed) == (123, 456)
    assert cfg.loss.forces == 1.0 and cfg.loss.energy == 1.0 and cfg.loss.energy_per_atom
    assert cfg.use_ema and cfg.ema_decay == 0.99
    assert cfg.lr_scheduler_name == "ReduceLROnPlateau"
    assert (cfg.lr_scheduler_patience, cfg.lr_scheduler_factor) == (100, 0.5)
    assert cfg.early_stopping_patiences == {"validation_loss": 50}
    assert cfg.early_stopping_lower_bounds == {"LR": 1e-5}
    assert (cfg.default_dtype, cfg.model_dtype) == ("float32", "float64")
    assert cfg.optimizer_amsgrad
    assert cfg.run_dir == (tmp_path / "results" / "aspirin").resolve()
    assert cfg.model == {"irreps": "8x0e+4x1o+4x2e"}
    import torch
    assert cfg.torch_dtype == torch.float64


def test_defaults_and_numeric_strings(tmp_path):
    raw = {"dataset": "npz", "dataset_file_name": "x.npz", "chemical_symbols": ["H"], "r_max": 5,
           "n_train": 10, "n_val": 2, "learning_rate": "1e-3"}  # PyYAML reads 1e-3 as a string
    cfg = parse_config(raw, tmp_path)
    assert cfg.learning_rate == 1e-3
    assert cfg.dataset_seed == cfg.seed == 0
    assert cfg.validation_batch_size == cfg.batch_size == 5
    assert cfg.model_dtype == "float64" and cfg.use_ema and cfg.ema_decay == 0.99
    assert cfg.lr_scheduler_name == "none"
    assert cfg.max_time_minutes is None
    assert cfg.loss.energy_per_atom and cfg.loss.forces == 1.0
    assert cfg.datasets[0].name == "x"


@pytest.mark.parametrize("coeffs, expect", [
    ({"forces": 1.0, "total_energy": [1.0, "PerAtomMSELoss"]}, (1.0, True, 1.0, False, False)),
    ({"forces": 10, "total_energy": 0.5}, (0.5, False, 10.0, False, False)),
    ({"total_energy": [2.0, "MSELoss"]}, (2.0, False, 0.0, False, False)),
    ("forces", (0.0, False, 1.0, False, False)),
    (["forces", "total_energy"], (1.0, False, 1.0, False, False)),
    ({"forces": [3.0]}, (0.0, False, 3.0, False, False)),
    ({"forces": [1.0, "L1Loss"], "total_energy": [2.0, "PerAtomL1Loss"]}, (2.0, True, 1.0, True, True)),
    ({"forces": [1.0, "MSELoss"], "total_energy": [1.0, "L1Loss"]}, (1.0, False, 1.0, True, False)),
])
def test_loss_coeffs_forms(tmp_path, coeffs, expect):
    raw = {"dataset": "npz", "dataset_file_name": "x.npz", "chemical_symbols": ["H"], "r_max": 5,
           "n_train": 1, "n_val": 1, "loss_coeffs": coeffs}
    c = parse_config(raw, tmp_path).loss
    assert (c.energy, c.energy_per_atom, c.forces, c.energy_l1, c.forces_l1) == expect


def test_units_and_dtype_names(tmp_path):
    raw = {"dataset": "ase", "dataset_file_name": "x.extxyz", "chemical_symbols": ["H"], "r_max": 5,
           "n_train": 1, "n_val": 1, "dataset_energy_unit": "kcal/mol", "dataset_length_unit": "bohr",
           "model_dtype": "float32"}
    cfg = parse_config(raw, tmp_path)
    assert cfg.datasets[0].energy_unit == "kcal/mol" and cfg.datasets[0].length_unit == "Bohr"
    assert cfg.model_dtype == "float32"


def test_several_datasets(tmp_path):
    text = """
datasets:
  - name: monomer
    dataset: npz
    dataset_file_name: mono.npz
    n_train: 100
    n_val: 10
  - dataset: ase
    dataset_file_name: /abs/dimer.extxyz
    key_mapping: {REF_energy: total_energy}
    n_val: 5
    dataset_energy_unit: kcal/mol
key_mapping: {coords: pos, nuclear_charges: atomic_numbers}
n_train: 7
chemical_symbols: [H, C, O]
r_max: 5.0
"""
    cfg = load_config(write(tmp_path, text))
    a, b = cfg.datasets
    assert a.name == "monomer" and a.file_name == (tmp_path / "mono.npz").resolve()
    assert a.key_mapping == {"coords": "pos", "nuclear_charges": "atomic_numbers"}  # top-level default
    assert (a.n_train, a.n_val) == (100, 10)
    assert b.name == "dimer" and b.kind == "ase" and str(b.file_name) == "/abs/dimer.extxyz"
    assert b.key_mapping == {"REF_energy": "total_energy"}  # the block's own mapping wins
    assert (b.n_train, b.n_val) == (7, 5) and b.energy_unit == "kcal/mol"
    assert cfg.dataset_names == ["monomer", "dimer"]
    raw = cfg.resolved_raw()
    assert raw["datasets"][0]["dataset_file_name"] == str((tmp_path / "mono.npz").resolve())


BASE = {"dataset": "npz", "dataset_file_name": "x.npz", "chemical_symbols": ["H", "C"], "r_max": 5.0,
        "n_train": 10, "n_val": 2}


@pytest.mark.parametrize("key, value, words", [
    ("r_max", "five", ["r_max", "'five'", "positive number"]),
    ("r_max", -1.0, ["r_max", "-1.0", "positive number"]),
    ("r_max", float("nan"), ["r_max", "finite"]),
    ("n_train", -3, ["n_train", "-3", "integer >= 0"]),
    ("n_train", 2.5, ["n_train", "2.5", "integer"]),
    ("n_val", True, ["n_val", "True", "integer"]),
    ("batch_size", 0, ["batch_size", "0", "integer >= 1"]),
    ("validation_batch_size", "x", ["validation_batch_size", "'x'"]),
    ("learning_rate", 0, ["learning_rate", "positive"]),
    ("max_epochs", -1, ["max_epochs", "-1"]),
    ("dataset", "hdf5", ["dataset", "'hdf5'", "ase, npz"]),
    ("dataset_file_name", 3, ["dataset_file_name", "3", "string"]),
    ("key_mapping", ["z", "R"], ["key_mapping", "mapping"]),
    ("chemical_symbols", ["H", "Xx"], ["chemical_symbols", "'Xx'", "element"]),
    ("chemical_symbols", ["H", "H"], ["chemical_symbols", "duplicate"]),
    ("chemical_symbols", "H C", ["chemical_symbols", "'H C'", "element"]),
    ("model_dtype", "float16", ["model_dtype", "'float16'", "float32, float64"]),
    ("use_ema", "maybe", ["use_ema", "'maybe'", "true or false"]),
    ("ema_decay", 1.5, ["ema_decay", "1.5", "[0, 1)"]),
    ("lr_scheduler_name", "StepLR", ["lr_scheduler_name", "'StepLR'", "CosineAnnealingLR"]),
    ("lr_scheduler_factor", 2.0, ["lr_scheduler_factor", "2.0"]),
    ("loss_coeffs", {"forces": [1.0, "HuberLoss"]}, ["loss_coeffs", "'HuberLoss'", "MSELoss or L1Loss"]),
    ("loss_coeffs", {"forces": [1.0, "PerAtomL1Loss"]}, ["loss_coeffs", "'PerAtomL1Loss'", "for forces"]),
    ("loss_coeffs", {"stress": 1.0}, ["loss_coeffs", "'stress'"]),
    ("loss_coeffs", {"forces": -1.0}, ["loss_coeffs", "-1.0", "non-negative"]),
    ("loss_coeffs", {"forces": 0.0}, ["loss_coeffs", "positive weight"]),
    ("early_stopping_patiences", {"validation_loss": 0}, ["early_stopping_patiences", "0"]),
    ("max_time_minutes", "soon", ["max_time_minutes", "'soon'"]),
    ("dataset_energy_unit", "kcal", ["dataset_energy_unit", "'kcal'", "kcal/mol"]),
    ("dataset_length_unit", "pm", ["dataset_length_unit", "'pm'", "Bohr"]),
    ("model", [1, 2], ["model", "mapping"]),
    ("run_name", "a/b", ["run_name", "'a/b'"]),
])
def test_bad_values(tmp_path, key, value, words):
    raw = dict(BASE, **{key: value})
    with pytest.raises(ConfigError) as e:
        parse_config(raw, tmp_path)
    assert isinstance(e.value, ValueError)
    for w in words:
        assert w in str(e.value), (w, str(e.value))


@pytest.mark.parametrize("missing", ["r_max", "chemical_symbols", "dataset", "dataset_file_name", "n_train"])
def test_missing_required(tmp_path, missing):
    raw = {k: v for k, v in BASE.items() if k != missing}
    with pytest.raises(ConfigError, match=missing):
        parse_config(raw, tmp_path)


def test_bad_dataset_block_names_its_index(tmp_path):
    raw = dict(BASE)
    del raw["dataset_file_name"]
    raw["datasets"] = [{"dataset": "npz", "dataset_file_name": "a.npz"}, {"dataset": "npz", "dataset_file_name": "b.npz",
                                                                        "n_train": -1}]
    with pytest.raises(ConfigError, match=r"n_train.*datasets\[1\].*-1"):
        parse_config(raw, tmp_path)


def test_type_names_alternatives(tmp_path):
    raw = {k: v for k, v in BASE.items() if k != "chemical_symbols"}
    assert parse_config(dict(raw, type_names=["O", "H"]), tmp_path).type_names == ["O", "H"]
    cfg = parse_config(dict(raw, chemical_symbol_to_type={"H": 1, "O": 0}), tmp_path)
    assert cfg.type_names == ["O", "H"]
    with pytest.raises(ConfigError, match="disagree"):
        parse_config(dict(raw, type_names=["O", "H"], chemical_symbols=["H", "O"]), tmp_path)


def test_yaml_errors(tmp_path):
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "a: [1, 2\n"))
    with pytest.raises(ConfigError, match="empty"):
        load_config(write(tmp_path, ""))
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(write(tmp_path, "- 1\n- 2\n"))


def test_no_warning_without_unknown_keys(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        parse_config(BASE, tmp_path)


def test_units_module():
    from deqformer import units
    assert units.energy_factor("kcal/mol") == pytest.approx(0.04336410424, rel=1e-9)
    assert units.energy_factor("kcal/mol") == pytest.approx(4184 / 96485.3321233100184, rel=1e-14)
    assert units.energy_factor("Hartree") == 27.211386245988
    assert units.energy_factor("meV") == 1e-3
    assert units.length_factor("Bohr") == 0.529177210903
    assert units.force_factor("Hartree", "Bohr") == pytest.approx(27.211386245988 / 0.529177210903)
    with pytest.raises(ValueError):
        units.energy_factor("furlong")


def test_command_line_overrides(tmp_path):
    text = "dataset: npz\ndataset_file_name: d.npz\nchemical_symbols: [H, C, O]\nr_max: 4.0\nrun_name: a\nn_train: 5\nn_val: 2\n" \
           "model: {irreps: 8x0e+4x1o+2x2e}\n"
    path = write(tmp_path, text)
    cfg = load_config(path, overrides=["run_name=explicit", "model.mode=explicit", "model.explicit_layers=3",
                                       "learning_rate=1e-3"])
    assert cfg.run_name == "explicit" and cfg.learning_rate == pytest.approx(1e-3)
    assert cfg.model == {"irreps": "8x0e+4x1o+2x2e", "mode": "explicit", "explicit_layers": 3}
    for bad, msg in (("run_name", "KEY=VALUE"), ("=3", "KEY=VALUE"), ("r_max=[1", "not valid YAML"),
                     ("r_max.x=1", "not a mapping")):
        with pytest.raises(ConfigError, match=msg):
            load_config(path, overrides=[bad])


# ---------------------------------------------------------------- fuzzing (seeded, reproducible)
_GARBAGE = [None, True, False, 0, -1, 1, 2**70, -3.5, 0.0, 1e300, float("nan"), float("inf"), "", " ", "abc",
            "1e-3", "-1", "nan", [], [1, 2], ["H", "H"], {}, {"a": 1}, [None], {"forces": "x"}, b"bytes", "\x00\xff"]


def _mutant(rng, base):
    import copy
    raw = copy.deepcopy(base)
    for _ in range(rng.randint(1, 3)):
        op = rng.random()
        target = raw
        if isinstance(raw.get("model"), dict) and rng.random() < 0.3:
            target = raw["model"]
        key = rng.choice(sorted(target)) if target else "r_max"
        if op < 0.2:
            target.pop(key, None)
        elif op < 0.3:
            target[f"fuzz_{rng.randint(0, 9)}"] = rng.choice(_GARBAGE)
        else:
            target[key] = rng.choice(_GARBAGE)
    return raw


def test_fuzz_config_parser(tmp_path):
    """3,000 mutated configs (values replaced by garbage of every type, keys removed or added): each is
    parsed or refused with a ConfigError (or DataError for the data files); no other exception escapes."""
    import random
    import yaml
    from deqformer.data.dataset import DataError

    base = yaml.safe_load(NEQUIP_YAML)
    base["model"] = {"irreps": "8x0e+4x1o", "msg_channels": 4, "solver": "anderson", "solver_tol": 1e-4}
    rng = random.Random(20261127)
    outcomes = {"parsed": 0, "refused": 0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(3000):
            raw = _mutant(rng, base)
            try:
                parse_config(raw, base_dir=tmp_path)
                outcomes["parsed"] += 1
            except (ConfigError, DataError) as e:
                assert str(e)
                outcomes["refused"] += 1
    print(f"config fuzz: {outcomes}")
    assert outcomes["parsed"] > 0 and outcomes["refused"] > 0


def test_fuzz_model_block():
    """600 model blocks with one or two values replaced by garbage: build_model either builds a model
    whose settings are usable or raises ValueError naming the key (the trainer turns that into a
    ConfigError); no other exception escapes."""
    import random
    import torch
    from deqformer.model import DEFAULTS, build_model

    values = _GARBAGE + ["8x0e+4x1o+4x2e", "0x0e", "-2x0e", "cg", "so2", "dot", "gaussian", "expnormal",
                         "deq", "explicit", "anderson", "picard", "implicit", "phantom", 2, 3, 16, 0.5]
    base = {"irreps": "8x0e+4x1o+4x2e", "msg_channels": 4, "num_heads": 2, "attn_hidden": 8, "radial_hidden": 8,
            "type_embed_dim": 4, "readout_hidden": 8, "num_basis": 4}
    stats = {"energy_per_atom_shift": [-0.3, 0.2, 0.1], "force_rms": 1.0}
    rng = random.Random(7)
    outcomes = {"built": 0, "refused": 0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(600):
            cfg = dict(base)
            for _ in range(rng.randint(1, 2)):
                key = rng.choice(sorted(DEFAULTS))
                cfg[key] = rng.choice(values)
                if key in ("msg_channels", "num_heads", "explicit_layers") and isinstance(cfg[key], int) \
                        and cfg[key] > 64:
                    cfg[key] = 64   # keep accepted models small
            try:
                model = build_model(cfg, ["H", "C", "O"], 4.0, stats, torch.float64)
            except ValueError as e:
                assert any(k in str(e) for k in DEFAULTS), f"message names no model key: {e}"
                outcomes["refused"] += 1
                continue
            outcomes["built"] += 1
            c = model.cfg
            assert c["solver_tol"] > 0 and c["solver_max_iter"] >= 1 and c["solver_memory"] >= 1
    print(f"model block fuzz: {outcomes}")
    assert outcomes["built"] > 0 and outcomes["refused"] > 0
