"""Evaluation from stored predictions: metrics, CV-vs-test gap and model complementarity.

Analysis objects read the prediction store (and, for a labelled test set,
the saved models' predictions); they never retrain.
"""

from .complementarity import Complementarity
from .evaluate import ensemble_oof, evaluate_workspace, write_evaluation
from .metrics import (
    classification_report,
    confusion_matrix,
    expected_calibration_error,
    most_confident_errors,
    most_confused,
)

__all__ = [
    "Complementarity", "classification_report", "confusion_matrix", "ensemble_oof",
    "evaluate_workspace", "expected_calibration_error", "most_confident_errors", "most_confused", "write_evaluation",
]  # fmt: skip
