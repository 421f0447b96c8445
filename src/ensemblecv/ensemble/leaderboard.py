"""Honest scores for single models and ensembles, and the leaderboard.

An ensemble's weights are fitted on out-of-fold predictions; scoring it on
the same predictions would reward overfitting to the validation folds. So the
CV score of every method is *nested*: for each fold k, the method is fitted on
the other folds' OOF rows and predicts fold k; the K pieces are scored
together. The in-sample ("optimistic") score is kept beside it, labelled.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .methods import get_method
from .metrics import METRICS, all_scores, get_metric
from .store import PredictionStore

DEFAULT_METHODS = [
    "ensemble_selection",
    "soft_voting",
    "weighted_average",
    "geometric_mean",
    "hard_voting",
    "stacking",
]


def build_method(name: str, metric: str, params: dict | None = None):
    cls = get_method(name)
    params = dict(params or {})
    import inspect

    if "metric" in inspect.signature(cls).parameters and "metric" not in params:
        params["metric"] = metric
    return cls(**params)


def nested_predictions(method, fold_of: np.ndarray, fit, predict):
    """For each fold k: ``(k, outer_mask, predict(fit(copy of method, inner_mask), outer_mask))``.

    The one nesting rule every task shares: fold k's prediction comes from a copy of
    ``method`` fitted without fold k. ``fit(est, inner)`` returns the fitted estimator;
    what rows are (samples, images) and predictions (arrays, tables) is the caller's."""
    for k in np.unique(fold_of):
        inner, outer = fold_of != k, fold_of == k
        est = fit(copy.deepcopy(method), inner)
        yield int(k), outer, predict(est, outer)


def nested_oof(method, members: list[np.ndarray], y: np.ndarray, fold_of: np.ndarray) -> np.ndarray:
    """OOF ensemble probabilities where fold k's rows come from a fit without fold k."""
    out = np.zeros(members[0].shape, dtype=np.float64)
    parts = nested_predictions(
        method,
        fold_of,
        lambda est, inner: est.fit([m[inner] for m in members], y[inner]),
        lambda est, outer: est.predict_proba([m[outer] for m in members]),
    )
    for _, outer, proba in parts:
        out[outer] = proba
    return out


@dataclass
class EnsembleResult:
    name: str
    method: str
    params: dict
    members: list[str]
    weights: list[float] | None
    cv: dict[str, float]
    optimistic: dict[str, float]
    test: dict[str, float] | None
    test_proba: np.ndarray | None


def _test_inputs(store: PredictionStore, names: list[str]):
    """Per-run test probabilities and labels (if the test set is labelled), or None."""
    tests = [store.test(n) for n in names]
    if any(t is None for t in tests):
        return None, None
    y = tests[0][1]["target"].to_numpy(dtype=np.int64)
    return [t[0] for t in tests], (y if (y >= 0).all() else None)


def fit_method(
    store: PredictionStore,
    method_name: str,
    metric: str,
    names: list[str],
    params: dict | None = None,
) -> EnsembleResult:
    members = store.oof_list(names)
    method = build_method(method_name, metric, params)
    cv = all_scores(store.y, nested_oof(method, members, store.y, store.fold_of))
    fitted = copy.deepcopy(method).fit(members, store.y)
    optimistic = all_scores(store.y, fitted.predict_proba(members))
    weights = getattr(fitted, "weights_", None)
    used = names if weights is None else [n for n, w in zip(names, weights) if w > 0]
    test_members, test_y = _test_inputs(store, names)
    test_proba = fitted.predict_proba(test_members) if test_members is not None else None
    test = all_scores(test_y, test_proba) if test_y is not None else None
    return EnsembleResult(
        method_name,
        method_name,
        fitted.get_params(),
        used,
        None if weights is None else [float(w) for n, w in zip(names, weights) if w > 0],
        cv,
        optimistic,
        test,
        test_proba,
    )


def single_model_rows(store: PredictionStore) -> list[dict]:
    rows = []
    test_members, test_y = _test_inputs(store, store.names)
    for i, name in enumerate(store.names):
        row = {
            "name": name,
            "kind": "model",
            "method": "single",
            "members": name,
            "weights": "1",
            **all_scores(store.y, store.oof(name)),
        }
        if test_y is not None:
            row.update({f"test_{k}": v for k, v in all_scores(test_y, test_members[i]).items()})
        rows.append(row)
    return rows


def ensemble_row(result: EnsembleResult) -> dict:
    weights = "" if result.weights is None else " ".join(f"{w:.3f}" for w in result.weights)
    row = {
        "name": result.name,
        "kind": "ensemble",
        "method": result.method,
        "members": " ".join(result.members),
        "weights": weights,
        **result.cv,
    }
    row.update({f"optimistic_{k}": v for k, v in result.optimistic.items()})
    if result.test is not None:
        row.update({f"test_{k}": v for k, v in result.test.items()})
    return row


def rank(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Best first by the honest CV ``metric``; ties keep single models first (simpler wins)."""
    m = get_metric(metric)
    order = frame.sort_values(
        [metric, "kind"], ascending=[not m.greater_is_better, False], kind="stable"
    )
    return order.reset_index(drop=True)


__all__ = [
    "DEFAULT_METHODS",
    "METRICS",
    "EnsembleResult",
    "fit_method",
    "nested_oof",
    "nested_predictions",
    "rank",
    "single_model_rows",
    "ensemble_row",
]
