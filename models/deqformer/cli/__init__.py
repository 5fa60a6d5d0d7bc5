"""Command-line entry points: deqformer-train, deqformer-evaluate, deqformer-deploy."""


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        import argparse
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


THREADS_HELP = "LibTorch intra-op threads of this process (default: PyTorch's, one per core)"
