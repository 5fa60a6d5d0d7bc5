"""Our SO(3) conventions against e3nn itself: spherical harmonics, Clebsch-Gordan (Wigner 3j) tensors,
the irreps layout, and how 0e/1o/2e features of the model rotate and reflect.

e3nn is not a dependency and nothing is installed for this test. It runs when ``import e3nn`` works (a
venv made by ``../shared/peers/allegro/setup.sh``, or ``PYTHONPATH`` to an unpacked e3nn 0.5 source tree
with opt_einsum and opt_einsum_fx), or when ``DEQFORMER_E3NN_TARBALLS`` names a folder holding the source
tarballs ``e3nn-*.tar.gz``, ``opt_einsum-*.tar.gz`` and ``opt_einsum_fx-*.tar.gz``: they are unpacked into
a temporary folder for this process only. Otherwise the whole module is skipped with the reason.
"""
import glob
import os
import sys
import tarfile
import tempfile

import numpy as np
import pytest
import torch

from deqformer.nn import so3
from deqformer.nn.attention import flatten_components
from deqformer.nn.irreps import block_slices, irreps_dim, irreps_string, parse_irreps
from modelkit import aspirin_geometry, make_batch, random_rotation, tiny_model

TARBALLS = ("e3nn", "opt_einsum", "opt_einsum_fx")


def _unpack_sources(folder: str) -> str:
    """Unpack the source tarballs in ``folder`` into a temporary folder; return why not, or ''."""
    dest = tempfile.mkdtemp(prefix="deqformer-e3nn-")
    for name in TARBALLS:
        found = sorted(glob.glob(os.path.join(folder, f"{name}-[0-9]*.tar.gz")))
        if not found:
            return f"DEQFORMER_E3NN_TARBALLS={folder} has no {name}-*.tar.gz"
        with tarfile.open(found[-1]) as tar:
            top = tar.getnames()[0].split("/")[0]
            tar.extractall(dest)
        sys.path.insert(0, os.path.join(dest, top))
    return ""


def _import_e3nn():
    try:
        import e3nn  # noqa: F401
        return None
    except ImportError:
        pass
    folder = os.environ.get("DEQFORMER_E3NN_TARBALLS")
    if not folder:
        return ("e3nn is not importable and DEQFORMER_E3NN_TARBALLS is not set: run with a venv from "
                "../shared/peers/allegro/setup.sh, PYTHONPATH to e3nn 0.5's source, or "
                "DEQFORMER_E3NN_TARBALLS=../shared/peers/allegro/sources")
    why = _unpack_sources(folder)
    if why:
        return why
    try:
        import e3nn  # noqa: F401,F811
    except ImportError as err:
        return f"e3nn unpacked from {folder} does not import: {err}"
    return None


_why = _import_e3nn()
if _why:
    pytest.skip(_why, allow_module_level=True)

import e3nn  # noqa: E402
from e3nn import o3  # noqa: E402


def test_e3nn_version_is_the_one_we_check_against():
    assert e3nn.__version__.startswith("0.5."), e3nn.__version__


def test_spherical_harmonics_equal_e3nn_component_normalised():
    vec = torch.randn(200, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    ours = so3.spherical_harmonics(vec / vec.norm(dim=1, keepdim=True))
    theirs = o3.spherical_harmonics([0, 1, 2], vec, normalize=True, normalization="component")
    assert ours.shape == theirs.shape == (200, 9)
    assert (ours - theirs).abs().max().item() < 1e-13
    np.testing.assert_allclose(so3.spherical_harmonics_np(vec.numpy() / np.linalg.norm(vec.numpy(), axis=1)[:, None]),
                               theirs.numpy(), atol=1e-13)


# paths whose coupling tensor has the opposite overall sign to e3nn's (so3.wigner_3j_np's sign rule);
# the sign of a path is absorbed by its learned per-channel weight
OPPOSITE_SIGN = {(1, 1, 2), (2, 2, 2)}


@pytest.mark.parametrize("path", so3.PATHS, ids=lambda p: "%d%d%d" % p)
def test_clebsch_gordan_equal_e3nn_wigner_3j(path):
    ours = so3.wigner_3j_np(*path)
    theirs = o3.wigner_3j(*path, dtype=torch.float64).numpy()
    assert ours.shape == theirs.shape
    sign = -1.0 if path in OPPOSITE_SIGN else 1.0
    np.testing.assert_allclose(ours, sign * theirs, atol=1e-12)


def test_paths_are_e3nn_parity_allowed_couplings_of_0e_1o_2e():
    """Every (l1, l2, l3) with l <= 2 that e3nn's FullTensorProduct of 0e+1o+2e with Y (0e+1o+2e) makes
    into 0e/1o/2e, and no other."""
    feats, sh = o3.Irreps("1x0e+1x1o+1x2e"), o3.Irreps.spherical_harmonics(2)
    tp = o3.FullTensorProduct(feats, sh)
    wanted = (o3.Irrep("0e"), o3.Irrep("1o"), o3.Irrep("2e"))
    theirs = sorted((feats[ins.i_in1].ir.l, sh[ins.i_in2].ir.l, tp.irreps_out[ins.i_out].ir.l)
                    for ins in tp.instructions if tp.irreps_out[ins.i_out].ir in wanted)
    assert sorted(so3.PATHS) == theirs


@pytest.mark.parametrize("text", ["8x0e+4x1o+4x2e", "48x0e+24x1o+12x2e"])
def test_irreps_layout_equals_e3nn(text):
    muls = parse_irreps(text)
    ir = o3.Irreps(text)
    assert irreps_string(muls) == str(ir)
    assert irreps_dim(muls) == ir.dim
    assert [(s.start, s.stop) for s in ir.slices()] == block_slices(muls)
    # [n, C, 9] per-channel components -> flat layout: channel-major, m fastest within each l block
    c = 3
    comp = torch.arange(c * 9, dtype=torch.float64).reshape(1, c, 9)
    flat = flatten_components(comp)[0]
    layout = o3.Irreps(f"{c}x0e+{c}x1o+{c}x2e")
    for (mul, irr), sl in zip(layout, layout.slices()):
        block = flat[sl].reshape(mul, irr.dim)
        first = {0: 0, 1: 1, 2: 4}[irr.l]
        assert torch.equal(block, comp[0, :, first:first + irr.dim])


def _e3nn_D(irreps: str, rot: np.ndarray) -> torch.Tensor:
    """e3nn's D(R) for ``irreps``; e3nn builds its so(3) generators in the default dtype, so float64
    must be the default while it does (in float32 its D is good to ~1e-7 only)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        return o3.Irreps(irreps).D_from_matrix(torch.tensor(rot))
    finally:
        torch.set_default_dtype(old)


@pytest.mark.parametrize("reflect", [False, True], ids=["rotation", "rotation+reflection"])
def test_model_features_transform_with_e3nn_D(reflect):
    """The injection x and the fixed point z* of a rotated (and mirrored) molecule are e3nn's
    ``Irreps.D_from_matrix`` (parity included: 1o changes sign under inversion, 0e and 2e do not)
    applied to those of the original."""
    model = tiny_model()
    pos = aspirin_geometry()
    rot = random_rotation(5, reflect)
    a = model(make_batch(pos), compute_forces=False)
    b = model(make_batch(pos @ rot.T), compute_forces=False)
    d = _e3nn_D(irreps_string(model.muls), rot)
    assert d.shape == (model.dim, model.dim)
    err = (b["z"] - a["z"] @ d.T).abs().max().item()
    assert err < 1e-9, err
    # and not by accident: without the parity sign the mirrored 1o features would not match
    if reflect:
        d_no_parity = _e3nn_D(irreps_string(model.muls), rot * np.linalg.det(rot))
        assert (b["z"] - a["z"] @ d_no_parity.T).abs().max().item() > 1e-3
