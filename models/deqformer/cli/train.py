"""``deqformer-train config.yaml [--resume] [--max-time-minutes M] [--device cpu] [--set KEY=VALUE ...]``."""
from __future__ import annotations

import argparse
import sys
import warnings
from typing import List, Optional

from . import THREADS_HELP, positive_int

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="deqformer-train",
        description="Train a deqformer potential from a nequip-style YAML config. Writes root/run_name/: "
                    "last.pth, best.pth, metrics_epoch.csv, config.yaml, train.log.")
    p.add_argument("config", help="YAML config file")
    p.add_argument("--resume", action="store_true",
                   help="continue from root/run_name/last.pth (a new run if there is none yet)")
    p.add_argument("--max-time-minutes", type=float, default=None,
                   help="wall-time budget: no epoch starts that would end past it, judged by the last epoch's "
                        "duration (overrides max_time_minutes)")
    p.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda (default: config 'device' or cpu)")
    p.add_argument("--threads", type=positive_int, default=None, help=THREADS_HELP)
    p.add_argument("--max-epochs", type=int, default=None, help="override max_epochs")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (VALUE in YAML; model.KEY for the model block), e.g. "
                        "--set run_name=explicit --set model.mode=explicit; repeatable")
    p.add_argument("--no-progress", action="store_true", help="no tqdm progress bars")
    return p


def _short_warning(message, category, filename, lineno, line=None) -> str:
    return f"warning: {message}\n"


def main(argv: Optional[List[str]] = None) -> int:
    """Console entry point; returns the exit status (0 ok, 2 bad config or data, 1 other errors)."""
    args = build_parser().parse_args(argv)
    warnings.formatwarning = _short_warning
    from ..config import ConfigError, load_config
    from ..data import DataError
    from ..train import CheckpointError, Trainer, TrainingError
    from ..train.trainer import set_threads

    try:
        set_threads(args.threads)
        cfg = load_config(args.config, overrides=args.set)
        if args.max_epochs is not None:
            if args.max_epochs < 0:
                raise ConfigError(f"--max-epochs: got {args.max_epochs}, expected an integer >= 0")
            cfg.max_epochs = args.max_epochs
        if args.max_time_minutes is not None and not args.max_time_minutes > 0:
            raise ConfigError(f"--max-time-minutes: got {args.max_time_minutes}, expected a positive number")
        trainer = Trainer(cfg, device=args.device, resume=args.resume, max_time_minutes=args.max_time_minutes,
                          progress=not args.no_progress and sys.stderr.isatty())
        trainer.run()
    except (ConfigError, DataError) as e:
        print(f"deqformer-train: error: {e}", file=sys.stderr)
        return 2
    except (TrainingError, CheckpointError) as e:
        print(f"deqformer-train: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("deqformer-train: interrupted; resume with --resume (last.pth holds the last finished epoch)",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
