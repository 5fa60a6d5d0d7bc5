"""Data-parallel training on CPU cores: ``train_processes: N`` forks N-1 copies of the trainer.

LibTorch's intra-op threads do not speed up this model's many small operations (one thread trains
as fast as two on the development machine), so the second core is used by a second process instead.
Every process holds the same model, optimizer and EMA; each global batch (``batch_size`` frames, in
the same shuffled order as a one-process run) is cut into N contiguous parts, one per process. The
loss of each part is normalised by the label counts of the whole batch, the gradients are summed
over the processes (gloo all-reduce on the loopback interface), and every process then takes the
same optimizer step, so the result equals a one-process run up to the order of floating-point sums.

Process 0 is the trainer the user sees: it validates (with the others' share of the validation
frames), logs, writes checkpoints, decides when to stop and sends the learning rate of the next
epoch. The per-frame fixed points (warm starts) are exchanged after every step so that every process
holds all of them, whichever process solves a frame next epoch, and process 0 checkpoints them all.
"""
from __future__ import annotations

import ctypes
import datetime
import os
import signal
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
from .. import keys as K

__all__ = ["DataParallel", "ParallelError"]


class ParallelError(RuntimeError):
    """A training process failed or could not start."""


def _die_with_parent() -> None:
    """Linux: deliver SIGKILL to this process when its parent dies (a killed trainer leaves no workers)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)        # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def single_thread_blas() -> List[str]:
    """Limit the BLAS libraries already loaded into this process to one thread each (names of those set).

    ``torch.set_num_threads(1)`` covers LibTorch's OpenMP pool (and MKL), not Debian's pthread OpenBLAS,
    which starts one busy-waiting thread per core; two training processes would then run four threads
    on two cores (measured on the aspirin preset: 94 s per epoch instead of 64-71 s)."""
    done = []
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "/libopenblas" in line}
    except OSError:
        return done
    for path in sorted(p for p in paths if p.startswith("/")):
        try:
            lib = ctypes.CDLL(path)
            lib.openblas_set_num_threads(1)
            done.append(os.path.basename(path))
        except (OSError, AttributeError):
            pass
    return done


def _exit_code(status: int) -> int:
    return os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") else status


class DataParallel:
    """The process group of one training run. ``start`` forks; afterwards ``rank`` says who we are."""

    def __init__(self, world_size: int, timeout_s: float = 900.0):
        if world_size < 2:
            raise ValueError("DataParallel needs at least 2 processes")
        self.world_size = int(world_size)
        self.rank = 0
        self.timeout = datetime.timedelta(seconds=timeout_s)
        self._children: List[int] = []
        self._tmp: Optional[str] = None
        self._started = False

    # ------------------------------------------------------------------ life cycle

    def start(self) -> None:
        """Fork the workers (ranks 1..N-1) and join the gloo group. Call with one intra-op thread."""
        if not dist.is_available() or not dist.is_gloo_available():
            raise ParallelError("train_processes > 1 needs torch.distributed with the gloo backend, which this "
                                "PyTorch lacks; set train_processes: 1")
        self._tmp = tempfile.mkdtemp(prefix="deqformer-dp-")
        store_path = os.path.join(self._tmp, "store")
        sys.stdout.flush()
        sys.stderr.flush()
        parent = os.getpid()
        for r in range(1, self.world_size):
            pid = os.fork()
            if pid == 0:
                self.rank = r
                self._children = []
                _die_with_parent()
                if os.getppid() != parent:         # the parent died before prctl took effect
                    os._exit(1)
                break
            self._children.append(pid)
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
        try:
            store = dist.FileStore(store_path, self.world_size)
            dist.init_process_group("gloo", store=store, rank=self.rank, world_size=self.world_size,
                                    timeout=self.timeout)
        except Exception as e:
            if self.rank:
                os._exit(1)
            self.stop(kill=True)
            raise ParallelError(f"cannot start {self.world_size} training processes (gloo on the loopback "
                                f"interface): {e}; set train_processes: 1") from e
        self._started = True

    def stop(self, kill: bool = False) -> List[int]:
        """Process 0: leave the group and reap the workers (SIGKILL first when ``kill``); their exit codes."""
        if self._started:
            try:
                dist.destroy_process_group()
            except Exception:
                pass
            self._started = False
        codes = []
        for pid in self._children:
            if kill:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            _, status = os.waitpid(pid, 0)
            codes.append(_exit_code(status))
        self._children = []
        if self._tmp is not None:
            try:
                for name in os.listdir(self._tmp):
                    os.unlink(os.path.join(self._tmp, name))
                os.rmdir(self._tmp)
            except OSError:
                pass
            self._tmp = None
        return codes

    def failed_workers(self, wait_s: float = 2.0) -> List[Tuple[int, int]]:
        """Process 0, after a collective failed: (rank, exit code) of workers that exited with an error
        (waits up to ``wait_s`` for a dying worker to finish)."""
        failed = []
        t0 = time.time()
        pending = list(enumerate(self._children, start=1))
        while pending:
            still = []
            for rank, pid in pending:
                try:
                    done, status = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    continue
                if done:
                    code = _exit_code(status)
                    self._children.remove(pid)
                    if code != 0:
                        failed.append((rank, code))
                else:
                    still.append((rank, pid))
            pending = still
            if failed or time.time() - t0 > wait_s:
                break
            time.sleep(0.05)
        return failed

    def worker_exit(self, ok: bool) -> None:
        """Workers end here, never returning into the caller's code (which belongs to process 0)."""
        sys.stdout.flush()
        sys.stderr.flush()
        if self._started:
            try:
                dist.destroy_process_group()
            except Exception:
                pass
        os._exit(0 if ok else 1)

    # ------------------------------------------------------------------ collectives

    def reduce_gradients(self, params: Sequence[torch.nn.Parameter], loss: float, ok: bool) -> Tuple[float, bool]:
        """Sum the gradients (and the partial losses) over the processes; a parameter keeps ``grad = None``
        only if no process produced one. Returns (the batch's loss, whether every process had a finite one)."""
        flat = [p.grad.detach().reshape(-1).double() if p.grad is not None else torch.zeros(p.numel(), dtype=torch.float64)
                for p in params]
        have = torch.tensor([float(p.grad is not None) for p in params], dtype=torch.float64)
        tail = torch.tensor([loss if ok else 0.0, 0.0 if ok else 1.0], dtype=torch.float64)
        buf = torch.cat(flat + [have, tail])
        dist.all_reduce(buf)
        off = 0
        for p in params:
            n = p.numel()
            p.grad = buf[off:off + n].view(p.shape).to(p.dtype).clone()
            off += n
        for p, h in zip(params, buf[off:off + len(params)].tolist()):
            if h == 0.0:
                p.grad = None
        off += len(params)
        loss_sum, bad = buf[off].item(), buf[off + 1].item()
        return loss_sum, bad == 0.0

    def exchange_fixed_points(self, cache, batch: Optional[Dict[str, torch.Tensor]],
                              out: Optional[Dict[str, torch.Tensor]]) -> None:
        """Every process stores the fixed points every other process just computed (warm starts)."""
        mine = None
        if batch is not None and out is not None and K.SAMPLE_INDEX in batch:
            mine = ({K.SAMPLE_INDEX: batch[K.SAMPLE_INDEX], K.NUM_ATOMS: batch[K.NUM_ATOMS]},
                    {k: out[k].detach().cpu() for k in ("z", "u") if out.get(k) is not None})
        got: List[object] = [None] * self.world_size
        dist.all_gather_object(got, mine)
        for r, item in enumerate(got):
            if r != self.rank and item is not None:
                cache.store(item[0], item[1])

    def gather_metrics(self, acc) -> None:
        """Process 0's accumulator absorbs the others' (exact: they hold sums)."""
        got: List[object] = [None] * self.world_size
        dist.all_gather_object(got, acc.state() if self.rank else None)
        if self.rank == 0:
            for item in got[1:]:
                acc.merge_state(item)

    def send_control(self, optimizer: torch.optim.Optimizer, stop: bool) -> None:
        """Process 0, end of an epoch: the next epoch's learning rates, or stop."""
        self._control([g["lr"] for g in optimizer.param_groups] + [1.0 if stop else 0.0])

    def receive_control(self, optimizer: torch.optim.Optimizer) -> bool:
        """Workers, end of an epoch: take the learning rates; True when training stops."""
        vals = self._control([0.0] * (len(optimizer.param_groups) + 1))
        for g, lr in zip(optimizer.param_groups, vals[:-1]):
            g["lr"] = lr
        return vals[-1] != 0.0

    def _control(self, values: List[float]) -> List[float]:
        t = torch.tensor(values, dtype=torch.float64)
        dist.broadcast(t, src=0)
        return t.tolist()
