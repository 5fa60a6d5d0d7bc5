"""Running LAMMPS for measurements, one way for every script that compares potentials
(examples/aspirin/compare.py, benchmarks/vs_allegro.py): one thread per MPI rank for LibTorch, OpenMP
and the BLAS alike, the mpirun line, the log's timing line, and atoms held in place."""
import os
import re
from typing import List, Tuple

# one thread per rank for every code: LibTorch and OpenMP, and the BLAS (OpenBLAS reads its own variable)
ONE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

# the motion of a timing run whose potential would blow the system up: atoms held in place (its cost
# does not depend on motion)
FROZEN = "fix nve all nve\nfix hold all setforce 0.0 0.0 0.0"

LOOP_RE = re.compile(r"^Loop time of ([\d.eE+-]+) on (\d+) procs for (\d+) steps with (\d+) atoms", re.M)


def one_thread_env() -> dict:
    return dict(os.environ, **ONE_THREAD_ENV)


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
