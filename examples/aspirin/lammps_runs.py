"""Running LAMMPS for measurements, one way for every script that times potentials
(examples/aspirin/compare.py, benchmarks/vs_allegro.py, benchmarks/lammps_speed.py): one thread per MPI
rank for LibTorch, OpenMP and the BLAS alike, the mpirun line, the log's timing line, the resident set
of every rank, and atoms held in place."""
import os
import re
import subprocess
from pathlib import Path
from typing import List, Tuple

# one thread per rank for every code: LibTorch and OpenMP, and the BLAS (OpenBLAS reads its own variable)
ONE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

# the motion of a timing run whose potential would blow the system up: atoms held in place (its cost
# does not depend on motion)
FROZEN = "fix nve all nve\nfix hold all setforce 0.0 0.0 0.0"

LOOP_RE = re.compile(r"^Loop time of ([\d.eE+-]+) on (\d+) procs for (\d+) steps with (\d+) atoms", re.M)


def one_thread_env(omp_threads: int = 1) -> dict:
    """The environment with ONE_THREAD_ENV (OpenMP/LibTorch threads per rank: omp_threads)."""
    env = dict(os.environ, **ONE_THREAD_ENV)
    env["OMP_NUM_THREADS"] = str(omp_threads)
    return env


def mpirun_prefix(ranks: int) -> List[str]:
    """mpirun for `ranks` processes passing ONE_THREAD_ENV on ([] for one process)."""
    if ranks <= 1:
        return []
    cmd = ["mpirun", "-np", str(ranks), "--oversubscribe"]
    for name in ONE_THREAD_ENV:
        cmd += ["-x", name]
    if os.geteuid() == 0:
        cmd.append("--allow-run-as-root")
    return cmd


def last_loop(text: str) -> Tuple[float, int, int]:
    """(seconds, steps, atoms) of the last run in a LAMMPS log."""
    loops = list(LOOP_RE.finditer(text))
    if not loops:
        raise RuntimeError("no 'Loop time' in the LAMMPS log")
    t, _, steps, atoms = loops[-1].groups()
    return float(t), int(steps), int(atoms)


def run_lammps(lmp: Path, inp: Path, log: Path, ranks: int = 1, omp_threads: int = 1, cwd: Path = None,
               prefix: List[str] = ()) -> str:
    """Runs LAMMPS on `inp` (ranks MPI processes, omp_threads each, every process started as
    prefix + lmp ...) and returns its log. RuntimeError with the command and the tails of stderr and the
    log when LAMMPS fails."""
    cmd = list(prefix) + [str(lmp), "-nocite", "-in", str(inp), "-log", str(log), "-screen", "none"]
    if ranks > 1:
        # one shell per rank, so that $OMPI_COMM_WORLD_RANK in the prefix is that rank's
        cmd = mpirun_prefix(ranks) + ["sh", "-c", " ".join(cmd)]
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=one_thread_env(omp_threads))
    text = log.read_text() if log.exists() else ""
    if p.returncode != 0:
        raise RuntimeError(f"LAMMPS failed ({' '.join(cmd)}):\n{p.stderr[-2000:]}\n{text[-3000:]}")
    return text


def timed_run(lmp: Path, inp: Path, log: Path, ranks: int, work: Path, omp_threads: int = 1) -> dict:
    """run_lammps under GNU time, one resident-set figure per rank (files rss.RANK in `work`). Returns the
    last run's loop_s, ranks, steps and atoms, the last thermo line before it (`thermo`, split), the log
    after it (`after`: the timing breakdown) and max_rss_mb (largest rank). RuntimeError also when the
    log has no second run (a warm-up and a timed run are expected)."""
    for f in work.glob("rss.*"):
        f.unlink()
    rss = f"{work}/rss.$OMPI_COMM_WORLD_RANK" if ranks > 1 else f"{work}/rss.0"
    text = run_lammps(lmp, inp, log, ranks, omp_threads, prefix=["/usr/bin/time", "-f", "%M", "-o", rss])
    loops = list(LOOP_RE.finditer(text))
    if len(loops) < 2:
        raise RuntimeError("no timed run in the log (expected a warm-up run and a timed run)")
    last = loops[-1]
    mems = [int(f.read_text().split()[-1]) for f in work.glob("rss.*") if f.read_text().strip()]
    return {"loop_s": float(last.group(1)), "ranks": int(last.group(2)), "steps": int(last.group(3)),
            "atoms": int(last.group(4)), "thermo": text[:last.start()].rstrip().splitlines()[-1].split(),
            "after": text[last.end():], "max_rss_mb": max(mems) / 1024 if mems else float("nan")}
