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


def timed_run(lmp: Path, inp: Path, log: Path, ranks: int, work: Path, omp_threads: int = 1) -> dict:
    """Runs LAMMPS on `inp` (ranks MPI processes, omp_threads each) under GNU time, one resident-set figure
    per rank. Returns the last run's loop_s, ranks, steps and atoms, the last thermo line before it
    (`thermo`, split), the log after it (`after`: the timing breakdown) and max_rss_mb (largest rank).
    RuntimeError with the tails of stderr and the log when LAMMPS fails or the log has no second run."""
    for f in work.glob("rss.*"):
        f.unlink()
    # mpirun sets OMPI_COMM_WORLD_RANK; the sh -c below expands it
    rss = f"{work}/rss.$OMPI_COMM_WORLD_RANK" if ranks > 1 else f"{work}/rss.0"
    cmd = ["/usr/bin/time", "-f", "%M", "-o", rss, str(lmp), "-nocite", "-in", str(inp), "-log", str(log),
           "-screen", "none"]
    if ranks > 1:
        cmd = mpirun_prefix(ranks) + ["sh", "-c", " ".join(cmd)]
    p = subprocess.run(cmd, capture_output=True, text=True, env=one_thread_env(omp_threads))
    text = log.read_text() if log.exists() else ""
    if p.returncode != 0:
        raise RuntimeError((p.stderr[-1500:] + text[-1500:]).strip())
    loops = list(LOOP_RE.finditer(text))
    if len(loops) < 2:
        raise RuntimeError("no timed run in the log (expected a warm-up run and a timed run)")
    last = loops[-1]
    mems = [int(f.read_text().split()[-1]) for f in work.glob("rss.*") if f.read_text().strip()]
    return {"loop_s": float(last.group(1)), "ranks": int(last.group(2)), "steps": int(last.group(3)),
            "atoms": int(last.group(4)), "thermo": text[:last.start()].rstrip().splitlines()[-1].split(),
            "after": text[last.end():], "max_rss_mb": max(mems) / 1024 if mems else float("nan")}
