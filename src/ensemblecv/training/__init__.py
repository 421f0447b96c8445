"""Training engine: one config × every fold → checkpoints, history, OOF and test probabilities."""

from .losses import FocalLoss, SoftCrossEntropy, build_loss, list_losses
from .module import ClassifierModule, NonFiniteLossError
from .runner import FoldResult, predict_probs, train

__all__ = [
    "ClassifierModule", "FocalLoss", "FoldResult", "NonFiniteLossError", "SoftCrossEntropy",
    "build_loss", "list_losses", "predict_probs", "train",
]  # fmt: skip
