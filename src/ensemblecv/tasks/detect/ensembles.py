"""``ensemblecv ensemble`` on a detection workspace: box ensembles fitted on OOF detections,
scored nested, on one leaderboard with the single runs.

Every method's CV mAP is *nested* (the classification rule, shared through
:func:`ensemblecv.ensemble.leaderboard.nested_predictions`): fold k's fused
detections come from a fit on the other folds' images only; the K pieces are
pooled and scored together, exactly as a single run's OOF detections are. The
in-sample score (``optimistic_map``) stands beside it, labelled. Test scores
(when the workspace has a labelled test split) apply the fit on all OOF images
to the members' test detections (:mod:`.store` says which those are).
"""

from __future__ import annotations

import copy
import inspect
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import yaml

from ..._io import atomic_write_text
from ...ensemble.boxes import DetectionTruth, MapScorer, get_box_method, list_box_methods, pack
from ...ensemble.leaderboard import nested_predictions
from ...errors import EnsembleCVError
from .leaderboard import LEADERBOARD_METRICS
from .store import DetectionStore

DEFAULT_BOX_METHODS = ["wbf", "nms", "soft_nms", "nmw"]
#: Shown beside the nested figures; the board keeps all of LEADERBOARD_METRICS.
SHOWN = ["map", "map50", "ar100"]


def _scores(scorer: MapScorer, dets: pd.DataFrame) -> dict:
    s = scorer.scores(pack(dets, scorer.images), max_detections=100)
    return {k: s[k] for k in LEADERBOARD_METRICS}


def _sorted(dets: pd.DataFrame) -> pd.DataFrame:
    """A member's detections ordered as fused ones are (image, descending score)."""
    return dets.sort_values(["sample_id", "score"], ascending=[True, False], kind="stable")


def build_method(name: str, metric: str, params: dict | None = None):
    cls = get_box_method(name)
    params = dict(params or {})
    if "metric" in inspect.signature(cls).parameters and "metric" not in params:
        params["metric"] = metric
    return cls(**params)


def fit_box_method(store: DetectionStore, name: str, members: list[str], metric: str,
                   params: dict | None = None, test: tuple | None = None) -> dict:  # fmt: skip
    """Nested CV, optimistic and test scores of method ``name`` over ``members``; the fit."""
    method = build_method(name, metric, params)
    truth = store.truth()
    images = truth.images.reset_index(drop=True)
    oof = [store.oof(m) for m in members]
    ids = images["sample_id"].to_numpy()

    def fit(est, inner):
        keep = set(ids[inner])
        return est.fit([d[d["sample_id"].isin(keep)] for d in oof], truth.subset(keep))

    def predict(est, outer):
        part = images[outer].reset_index(drop=True)
        return est.predict(oof, part)

    pieces = [p for _, _, p in nested_predictions(method, store.fold_of, fit, predict)]
    scorer = MapScorer(truth)
    nested = pd.concat(pieces, ignore_index=True)
    cv = _scores(scorer, nested)
    fitted = copy.deepcopy(method).fit(oof, truth)
    optimistic = _scores(scorer, fitted.predict(oof, images))
    result = {"cv": cv, "optimistic": optimistic, "fitted": fitted, "test": None, "oof": nested}
    if test is not None:
        test_truth, test_members = test
        fused = fitted.predict(test_members, test_truth.images)
        result["test"] = _scores(MapScorer(test_truth), fused)
        result["test_detections"] = fused
    return result


def _test_inputs(store: DetectionStore, names: list[str]):
    truth = store.test_truth()
    if truth is None:
        return None
    dets = [store.test(n, truth.images) for n in names]
    if any(d is None for d in dets):
        return None
    return truth, dets


def build_box_ensembles(
    workspace: str | Path,
    methods: list[str] | None = None,
    metric: str | None = None,
    runs: list[str] | None = None,
    params: dict[str, dict] | None = None,
) -> pd.DataFrame:
    """Score every run and every box method; write ``leaderboard.csv`` and ``ensembles/*.yaml``.

    ``params``: per method, constructor arguments (e.g. a smaller grid). Returns the
    leaderboard, best first by the nested ``metric`` (default ``map``)."""
    import warnings

    metric = metric or "map"
    if metric not in LEADERBOARD_METRICS:
        raise EnsembleCVError(
            f"Unknown detection metric {metric!r}; choose one of {', '.join(LEADERBOARD_METRICS)}."
        )
    store = DetectionStore(workspace)
    for name, why in store.incomplete.items():
        warnings.warn(f"Run {name!r} is left out: {why}.", UserWarning, stacklevel=2)
    names = list(runs or store.names)
    for n in names:
        store.run(n)  # unknown names fail listing the runs
    if not names:
        raise EnsembleCVError(
            f"No finished detection runs in {store.root}; run `ensemblecv train`."
        )
    methods = list(methods or DEFAULT_BOX_METHODS)
    unknown = [m for m in methods if m not in list_box_methods()]
    if unknown:
        raise EnsembleCVError(
            f"Unknown box ensemble method(s) {unknown}; available: {', '.join(list_box_methods())}."
        )
    clash = sorted(set(names) & (set(methods) | {"best"}))
    if clash:
        raise EnsembleCVError(f"Run name(s) {clash} collide with ensemble names; rename the runs.")
    truth = store.truth()
    scorer = MapScorer(truth)
    test = _test_inputs(store, names)
    rows, specs, oof_frames = [], {}, {}
    for i, n in enumerate(names):
        row = {"name": n, "kind": "model", "method": "single", "members": n, "weights": "1"}
        row.update(_scores(scorer, _sorted(store.oof(n))))
        if test is not None:
            t = _scores(MapScorer(test[0]), _sorted(test[1][i]))
            row.update({f"test_{k}": v for k, v in t.items()})
        rows.append(row)
        specs[n] = _spec(n, "single", {}, {}, [n], [1.0], row, [n])
    if len(names) >= 2:
        for method in methods:
            res = fit_box_method(store, method, names, metric, (params or {}).get(method), test)
            fitted = res["fitted"]
            used = [(n, float(w)) for n, w in zip(names, fitted.weights_) if w > 0]
            row = {
                "name": method,
                "kind": "ensemble",
                "method": method,
                "members": " ".join(n for n, _ in used),
                "weights": " ".join(f"{w:.3f}" for _, w in used),
                **res["cv"],
                **{f"optimistic_{k}": v for k, v in res["optimistic"].items()},
            }
            if res["test"] is not None:
                row.update({f"test_{k}": v for k, v in res["test"].items()})
            rows.append(row)
            oof_frames[method] = res["oof"]
            fp = fitted.fitted_params()
            fp["weights"] = [w for _, w in used]
            specs[method] = _spec(
                method, method, fitted.get_params(), fp, [n for n, _ in used],
                [w for _, w in used], row, names,
            )  # fmt: skip
    board = rank_board(pd.DataFrame(rows), metric)
    root = store.root
    atomic_write_text(root / "leaderboard.csv", board.to_csv(index=False))
    ens = root / "ensembles"
    ens.mkdir(exist_ok=True)
    for name, spec in specs.items():
        atomic_write_text(ens / f"{name}.yaml", yaml.safe_dump(spec, sort_keys=False))
    for name, frame in oof_frames.items():  # the nested OOF detections: what the report shows
        frame.to_parquet(ens / f"{name}.oof_detections.parquet", index=False)
    best = dict(specs[board.loc[0, "name"]], alias="best")
    atomic_write_text(ens / "best.yaml", yaml.safe_dump(best, sort_keys=False))
    return board


def rank_board(board: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Best first by the honest ``metric``; ties keep single models first (simpler wins)."""
    order = board.assign(_single=(board["kind"] == "model").astype(int))
    order = order.sort_values([metric, "_single"], ascending=[False, False], kind="stable")
    return order.drop(columns="_single").reset_index(drop=True)


def _spec(name, method, params, fitted, members, weights, row, candidates) -> dict:
    """What ``predict`` needs: the method, its fitted settings and the members in order."""
    scores = {"cv": {}, "optimistic": {}, "test": {}}
    for k, v in row.items():
        if k in LEADERBOARD_METRICS:
            scores["cv"][k] = float(v)
        elif k.startswith("optimistic_"):
            scores["optimistic"][k[11:]] = float(v)
        elif k.startswith("test_"):
            scores["test"][k[5:]] = float(v)
    keep = (int, float, str, bool, list, tuple, type(None))
    return {
        "name": name,
        "task": "detect",
        "method": method,
        "params": {
            k: list(v) if isinstance(v, tuple) else v
            for k, v in params.items()
            if isinstance(v, keep)
        },  # fmt: skip
        "fitted": fitted,
        "members": list(members),
        "weights": {m: float(w) for m, w in zip(members, weights)},
        "candidates": list(candidates),
        "scores": {k: v for k, v in scores.items() if v},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def leaderboard_view(board: pd.DataFrame) -> pd.DataFrame:
    """The board as the CLI shows it: nested mAP, mAP@.5, AR@100, the optimistic mAP of each
    ensemble beside its nested one, and test mAP when there is a labelled test split."""
    from ..._tables import board_view

    return board_view(board, {"mAP (nested)": "map", "mAP@.5": "map50", "AR@100": "ar100",
                              "mAP (optimistic)": "optimistic_map", "test mAP": "test_map"})  # fmt: skip


def ensemble_from_spec(spec: dict):
    """The fitted estimator a spec describes (None for a single run)."""
    if spec["method"] == "single":
        return None
    cls = get_box_method(spec["method"])
    params = {k: tuple(v) if isinstance(v, list) and k != "weights" else v
              for k, v in spec.get("params", {}).items()}  # fmt: skip
    return cls.from_fitted(spec["fitted"], **params)


def fuse_members(spec: dict, members: list[pd.DataFrame], images: pd.DataFrame) -> pd.DataFrame:
    """Apply a spec's fitted ensemble to its members' detections of ``images``."""
    est = ensemble_from_spec(spec)
    if est is None:
        return members[0]
    return est.predict(members, images)


__all__ = [
    "DEFAULT_BOX_METHODS", "DetectionTruth", "build_box_ensembles", "ensemble_from_spec",
    "fit_box_method", "fuse_members", "leaderboard_view", "rank_board",
]  # fmt: skip
