"""Ensembles fitted on out-of-fold predictions and scored with nested folds.

The estimator names and signatures here are a public contract (scikit-learn
style: ``fit(probas, y)`` returns self, learned attributes end in ``_``).
"""

from .box_fusion import Boxes, BoxFusionError, fuse
from .boxes import (
    NMS,
    DetectionTruth,
    NonMaximumWeighted,
    SoftNMS,
    WeightedBoxesFusion,
    get_box_method,
    list_box_methods,
)
from .build import build_ensembles, build_named_ensemble, load_spec
from .leaderboard import nested_oof, nested_predictions
from .methods import (
    EnsembleSelection,
    GeometricMean,
    HardVoting,
    SoftVoting,
    Stacking,
    WeightedAverage,
    get_method,
    list_methods,
)
from .metrics import accuracy, balanced_accuracy, log_loss
from .store import PredictionStore

__all__ = [
    "NMS", "BoxFusionError", "Boxes", "DetectionTruth", "NonMaximumWeighted", "SoftNMS",
    "WeightedBoxesFusion", "fuse", "get_box_method", "list_box_methods", "nested_predictions",
    "EnsembleSelection", "GeometricMean", "HardVoting", "PredictionStore", "SoftVoting", "Stacking",
    "WeightedAverage", "accuracy", "balanced_accuracy", "build_ensembles", "build_named_ensemble",
    "get_method", "list_methods", "load_spec", "log_loss", "nested_oof",
]  # fmt: skip
