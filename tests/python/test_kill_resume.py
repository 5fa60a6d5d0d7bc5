"""Training killed with SIGKILL at seeded random moments and resumed with --resume: no checkpoint is ever
half-written (each loads), at most one epoch is lost per kill, and the finished run's log has every epoch
exactly once. With train_processes: 2 the forked worker dies with the trainer (no orphan left behind)."""
import csv
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from deqformer.train import load_checkpoint

HERE = Path(__file__).resolve()
DATA = HERE.parents[1] / "data"
MODELS = HERE.parents[2] / "models"
EPOCHS = 10


def _config(tmp_path, processes: int = 1) -> Path:
    cfg = {
        "root": str(tmp_path / "runs"), "run_name": "killed", "seed": 3,
        "dataset": "npz", "dataset_file_name": str(DATA / "aspirin_monomer_30.npz"),
        "key_mapping": {"nuclear_charges": "atomic_numbers", "coords": "pos", "energies": "total_energy",
                        "forces": "forces"},
        "npz_fixed_field_keys": ["atomic_numbers"], "chemical_symbols": ["H", "C", "O"],
        "r_max": 3.5, "n_train": 12, "n_val": 4, "batch_size": 4, "validation_batch_size": 4,
        "learning_rate": 0.003, "max_epochs": EPOCHS, "use_ema": True, "train_processes": processes,
        "model": {"irreps": "4x0e+2x1o+2x2e", "msg_channels": 4, "num_heads": 2, "attn_hidden": 4,
                  "radial_hidden": 8, "type_embed_dim": 4, "readout_hidden": 8, "num_basis": 4,
                  "solver_max_iter": 15},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _epochs_logged(csv_path: Path):
    if not csv_path.exists():
        return []
    with open(csv_path, newline="") as f:
        rows = list(csv.reader(f))
    return [int(r[0]) for r in rows[1:] if r and r[0].isdigit()]


def _wait(proc: subprocess.Popen, run_dir: Path, n_epochs: int, max_s: float) -> None:
    """Until the run has logged n_epochs epochs, has ended, or max_s seconds have passed."""
    t0 = time.time()
    while proc.poll() is None and len(_epochs_logged(run_dir / "metrics_epoch.csv")) < n_epochs \
            and time.time() - t0 < max_s:
        time.sleep(0.02)


def _start(cfg: Path, resume: bool) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(MODELS), OMP_NUM_THREADS="1")
    args = [sys.executable, "-m", "deqformer.cli.train", str(cfg), "--no-progress"] + (["--resume"] if resume else [])
    return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _processes_running(cfg: Path):
    """PIDs whose command line names this config (the trainer and its forked workers)."""
    pids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    if str(cfg).encode() in f.read():
                        pids.append(int(d))
            except OSError:
                pass
    return pids


@pytest.mark.parametrize("processes", [1, 2])
def test_sigkill_and_resume(tmp_path, processes):
    cfg = _config(tmp_path, processes)
    run_dir = tmp_path / "runs" / "killed"
    last = run_dir / "last.pth"
    rng = random.Random(11)
    kills = 0
    resume = False
    deadline = time.time() + 240
    while kills < 5 and time.time() < deadline:
        before = len(_epochs_logged(run_dir / "metrics_epoch.csv"))
        proc = _start(cfg, resume)
        # each cycle lets at most two epochs through, however fast the machine, so that the run cannot
        # finish before it has been killed a few times
        if rng.random() < 0.25:  # during start-up (loading data, building or restoring the model)
            _wait(proc, run_dir, before + 1, rng.uniform(0.5, 3.0))
        else:  # once this run has logged an epoch, at a random point of the next one
            _wait(proc, run_dir, before + 1, 120)
            _wait(proc, run_dir, before + 2, rng.uniform(0.0, 1.5))
        if proc.poll() is not None:  # finished before the kill
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        t_kill = time.time()
        while _processes_running(cfg) and time.time() - t_kill < 10:
            time.sleep(0.05)
        assert not _processes_running(cfg), "a training process outlived the killed trainer"
        kills += 1
        resume = True
        logged = _epochs_logged(run_dir / "metrics_epoch.csv")
        print(f"kill {kills}: epochs logged {logged}, last.pth {'yes' if last.exists() else 'no'}")
        if last.exists():
            ckpt = load_checkpoint(last)  # raises if half-written
            assert ckpt["epoch"] >= (max(logged) if logged else 0) - 1, (ckpt["epoch"], logged)
            for name in ("best.pth",):
                if (run_dir / name).exists():
                    load_checkpoint(run_dir / name)
    assert kills >= 3, "the runs finished before they could be killed: make them longer"
    # finish the run
    proc = _start(cfg, resume=True)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert _epochs_logged(run_dir / "metrics_epoch.csv") == list(range(1, EPOCHS + 1))
    assert load_checkpoint(last)["epoch"] == EPOCHS
