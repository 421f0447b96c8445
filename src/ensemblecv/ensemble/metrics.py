"""Metrics for choosing and scoring ensembles, each with its direction.

Greedy selection calls a metric thousands of times, so each metric also has a
fast path that works from the quantities the search already maintains (the
probability of the true class for log loss) instead of the full (N, C) matrix.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import EnsembleCVError, unknown_name_message

EPS = 1e-15


@dataclass(frozen=True)
class Metric:
    name: str
    greater_is_better: bool

    def __call__(self, y: np.ndarray, proba: np.ndarray) -> float:
        return _SCORERS[self.name](y, proba)

    def better(self, a: float, b: float) -> bool:
        """True when score ``a`` is strictly better than ``b``."""
        return a > b if self.greater_is_better else a < b


def accuracy(y: np.ndarray, proba: np.ndarray) -> float:
    return float((proba.argmax(1) == y).mean())


def balanced_accuracy(y: np.ndarray, proba: np.ndarray) -> float:
    """Mean per-class recall over the classes present in ``y`` (as scikit-learn)."""
    pred = proba.argmax(1)
    classes = np.unique(y)
    hits = np.bincount(y[pred == y], minlength=proba.shape[1])[classes]
    return float((hits / np.bincount(y, minlength=proba.shape[1])[classes]).mean())


def log_loss(y: np.ndarray, proba: np.ndarray) -> float:
    """Mean negative log-probability of the true class; rows are renormalised first."""
    p_true = proba[np.arange(len(y)), y] / np.maximum(proba.sum(1), EPS)
    return float(-np.log(np.clip(p_true, EPS, 1.0)).mean())


_SCORERS = {"accuracy": accuracy, "balanced_accuracy": balanced_accuracy, "log_loss": log_loss}
METRICS = {
    "accuracy": Metric("accuracy", True),
    "balanced_accuracy": Metric("balanced_accuracy", True),
    "log_loss": Metric("log_loss", False),
}


def get_metric(name: str) -> Metric:
    if name not in METRICS:
        raise EnsembleCVError(unknown_name_message("metric", name, METRICS))
    return METRICS[name]


def all_scores(y: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    return {name: m(y, proba) for name, m in METRICS.items()}
