"""Irreps strings in e3nn notation, restricted to what the model uses: one block each of l = 0, 1, 2."""
import re
from typing import List, Tuple

_TERM = re.compile(r"^\s*(\d+)x(\d)([eo])\s*$")
_PARITY = {0: "e", 1: "o", 2: "e"}


def parse_irreps(text: str) -> Tuple[int, int, int]:
    """'64x0e+32x1o+16x2e' -> (64, 32, 16). Raises ValueError naming the problem."""
    muls = {}
    for term in str(text).split("+"):
        m = _TERM.match(term)
        if not m:
            raise ValueError(f"irreps '{text}': term '{term}' is not of the form 'MULxLp' (e.g. 32x1o)")
        mul, l, p = int(m.group(1)), int(m.group(2)), m.group(3)
        if l > 2:
            raise ValueError(f"irreps '{text}': l = {l} > Lmax = 2 is not supported")
        if p != _PARITY[l]:
            raise ValueError(
                f"irreps '{text}': {l}{p} has the wrong parity; features built from spherical harmonics "
                f"of edge vectors are {l}{_PARITY[l]}")
        if l in muls:
            raise ValueError(f"irreps '{text}': l = {l} appears twice")
        if mul <= 0:
            raise ValueError(f"irreps '{text}': multiplicity must be positive")
        muls[l] = mul
    if sorted(muls) != [0, 1, 2]:
        raise ValueError(f"irreps '{text}': need exactly one block each of l = 0, 1, 2")
    return muls[0], muls[1], muls[2]


def irreps_string(muls: Tuple[int, int, int]) -> str:
    return "+".join(f"{m}x{l}{_PARITY[l]}" for l, m in enumerate(muls))


def irreps_dim(muls: Tuple[int, int, int]) -> int:
    return muls[0] + 3 * muls[1] + 5 * muls[2]


def block_slices(muls: Tuple[int, int, int]) -> List[Tuple[int, int]]:
    a = muls[0]
    b = a + 3 * muls[1]
    c = b + 5 * muls[2]
    return [(0, a), (a, b), (b, c)]
