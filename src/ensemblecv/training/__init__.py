"""Training engine: one config × every fold → checkpoints, history, OOF and test probabilities."""

from .algorithms import CORAL, ERM, list_algorithms
from .losses import FocalLoss, SoftCrossEntropy, build_loss, coral_penalty, list_losses
from .module import ClassifierModule, NonFiniteLossError
from .runner import FoldResult, predict_probs, train
from .weight_averaging import WeightAveraging, recompute_batchnorm

__all__ = [
    "CORAL", "ClassifierModule", "ERM", "FocalLoss", "FoldResult", "NonFiniteLossError",
    "SoftCrossEntropy", "WeightAveraging", "build_loss", "coral_penalty", "list_algorithms",
    "list_losses", "predict_probs", "recompute_batchnorm", "train",
]  # fmt: skip
