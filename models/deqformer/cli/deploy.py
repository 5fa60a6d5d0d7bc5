"""deqformer-deploy: turn a training checkpoint into one TorchScript file for LAMMPS (docs/contract.md)."""
import argparse
import json
import sys

import torch


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="deqformer-deploy", description=__doc__)
    p.add_argument("checkpoint", help="best.pth or last.pth written by deqformer-train")
    p.add_argument("output", help="deployed model file, e.g. aspirin.pt")
    p.add_argument("--dtype", choices=["float32", "float64"], default=None,
                   help="precision of the deployed model (default: the training dtype)")
    p.add_argument("--no-ema", action="store_true", help="deploy the raw weights instead of the EMA weights")
    p.add_argument("--tol", type=float, default=None, help="default solver tolerance written into the file")
    p.add_argument("--max-iter", type=int, default=None, help="default maximum solver iterations")
    p.add_argument("--solver", choices=["anderson", "broyden", "picard"], default=None)
    args = p.parse_args(argv)

    from ..deploy import deploy
    from ..solvers import solver_kind
    from ..train.checkpoint import load_model_from_checkpoint

    try:
        model = load_model_from_checkpoint(args.checkpoint, use_ema=not args.no_ema)
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"deqformer-deploy: cannot load checkpoint '{args.checkpoint}': {exc}", file=sys.stderr)
        return 2
    over = {}
    if args.tol is not None:
        over["solver_tol"] = over["adjoint_tol"] = repr(args.tol)
    if args.max_iter is not None:
        over["solver_max_iter"] = str(args.max_iter)
    if args.solver is not None:
        over["solver"] = args.solver
        over["solver_code"] = str(solver_kind(args.solver))
    dtype = {"float32": torch.float32, "float64": torch.float64}.get(args.dtype or "")
    meta = deploy(model, args.output, dtype=dtype, overrides=over)
    print(f"deployed {args.checkpoint} -> {args.output}")
    print(json.dumps(meta, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
