"""Training: loss and metrics, EMA, checkpoints, and the trainer loop."""
from .checkpoint import (CheckpointError, build_model_from_checkpoint, load_checkpoint, load_model_from_checkpoint,
                         save_checkpoint)
from .ema import ExponentialMovingAverage
from .loss import EnergyForceLoss, MetricAccumulator
from .trainer import Trainer, TrainingError

__all__ = [
    "CheckpointError", "build_model_from_checkpoint", "load_checkpoint", "load_model_from_checkpoint",
    "save_checkpoint", "ExponentialMovingAverage", "EnergyForceLoss", "MetricAccumulator", "Trainer",
    "TrainingError",
]
