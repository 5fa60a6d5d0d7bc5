"""The training loss: MSE and L1 (nequip's MSELoss / L1Loss / PerAtom*Loss), missing labels, the split of a
batch into data-parallel parts, and the epoch loss the metric accumulator reports."""
import math

import pytest
import torch

from deqformer import keys as K
from deqformer.config import LossCoeffs
from deqformer.train.loss import EnergyForceLoss, MetricAccumulator


def _batch_and_output():
    g = torch.Generator().manual_seed(3)
    num_atoms = torch.tensor([3, 5, 4])
    n = int(num_atoms.sum())
    batch = {
        K.TOTAL_ENERGY: torch.tensor([-10.0, float("nan"), -7.5], dtype=torch.float64),
        K.NUM_ATOMS: num_atoms,
        K.FORCES: torch.randn(n, 3, generator=g, dtype=torch.float64),
        K.BATCH: torch.repeat_interleave(torch.arange(3), num_atoms),
        K.DATASET_ID: torch.zeros(3, dtype=torch.long),
    }
    batch[K.FORCES][4] = float("nan")          # one atom without a force label
    out = {"energy": torch.tensor([-10.3, -4.0, -7.1], dtype=torch.float64),
           K.FORCES: batch[K.FORCES].nan_to_num(0.0) + 0.1 * torch.randn(n, 3, generator=g, dtype=torch.float64)}
    return batch, out


def _by_hand(coeffs: LossCoeffs, batch, out) -> float:
    e_err = torch.tensor([-10.3 + 10.0, -7.1 + 7.5], dtype=torch.float64)
    if coeffs.energy_per_atom:
        e_err = e_err / torch.tensor([3.0, 4.0], dtype=torch.float64)
    keep = torch.ones(batch[K.FORCES].shape[0], dtype=torch.bool)
    keep[4] = False
    f_err = out[K.FORCES][keep] - batch[K.FORCES][keep]
    e_term = e_err.abs().mean() if coeffs.energy_l1 else (e_err ** 2).mean()
    f_term = f_err.abs().mean() if coeffs.forces_l1 else (f_err ** 2).mean()
    return float(coeffs.energy * e_term + coeffs.forces * f_term)


@pytest.mark.parametrize("energy_l1, forces_l1, per_atom", [(False, False, True), (True, True, True),
                                                            (False, True, False), (True, False, False)])
def test_loss_matches_hand_computation_and_metrics(energy_l1, forces_l1, per_atom):
    coeffs = LossCoeffs(energy=2.0, energy_per_atom=per_atom, forces=1.0, energy_l1=energy_l1, forces_l1=forces_l1)
    batch, out = _batch_and_output()
    loss, parts = EnergyForceLoss(coeffs)(out, batch)
    expect = _by_hand(coeffs, batch, out)
    assert float(loss) == pytest.approx(expect, rel=1e-12)
    assert ("l1_f" in parts) == forces_l1 and ("l1_e" in parts) == energy_l1
    acc = MetricAccumulator(coeffs)
    acc.update(out, batch)
    assert acc.results()["loss"] == pytest.approx(expect, rel=1e-12)


def test_l1_loss_gradient_is_the_sign_of_the_error():
    coeffs = LossCoeffs(energy=0.0, forces=1.0, forces_l1=True)
    batch, out = _batch_and_output()
    f = out[K.FORCES].clone().requires_grad_(True)
    loss, _ = EnergyForceLoss(coeffs)({"energy": out["energy"], K.FORCES: f}, batch)
    loss.backward()
    diff = (f.detach() - batch[K.FORCES]).nan_to_num(0.0)
    m = 3 * (batch[K.FORCES].shape[0] - 1)
    assert torch.allclose(f.grad, torch.sign(diff) / m)
    assert math.isfinite(float(loss))


@pytest.mark.parametrize("l1", [False, True])
def test_parts_with_whole_batch_counts_sum_to_the_batch_loss(l1):
    """Data-parallel training gives each process a part of the batch and the whole batch's label counts."""
    coeffs = LossCoeffs(energy=1.0, energy_per_atom=True, forces=1.0, energy_l1=l1, forces_l1=l1)
    batch, out = _batch_and_output()
    whole, _ = EnergyForceLoss(coeffs)(out, batch)
    counts = (2, 11, 3)                         # labelled energies, labelled force atoms, frames
    total = 0.0
    for frames in ([0], [1, 2]):
        atoms = torch.cat([torch.nonzero(batch[K.BATCH] == f)[:, 0] for f in frames])
        sub_b = {K.TOTAL_ENERGY: batch[K.TOTAL_ENERGY][frames], K.NUM_ATOMS: batch[K.NUM_ATOMS][frames],
                 K.FORCES: batch[K.FORCES][atoms], K.DATASET_ID: batch[K.DATASET_ID][frames]}
        sub_o = {"energy": out["energy"][frames], K.FORCES: out[K.FORCES][atoms]}
        part, _ = EnergyForceLoss(coeffs)(sub_o, sub_b, counts)
        total += float(part)
    assert total == pytest.approx(float(whole), rel=1e-12)
