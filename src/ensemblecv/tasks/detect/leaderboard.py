"""Scores of finished detection runs: COCO metrics pooled over all OOF detections, and per fold.

Pooling scores the whole dataset at once — every image was predicted by the
one model that did not train on it — which is the honest single-number
summary of a run (averaging per-fold mAPs weights small folds too much and
is noisier). Both are written to ``runs/<name>/oof_metrics.json``; the pooled
figures become the run's row in ``leaderboard.csv``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ..._io import atomic_write, atomic_write_text
from .metrics import STAT_NAMES, coco_scores, detections_to_dicts, truth_to_dicts

#: Leaderboard columns after name/kind/method/members/weights, best first by ``map``.
LEADERBOARD_METRICS = ["map", "map50", "map75", "map_small", "map_medium", "map_large", "ar100"]


def _fold_dirs(run_dir: Path, n_folds: int) -> list[Path] | None:
    dirs = [run_dir / f"fold_{k}" for k in range(n_folds)]
    return dirs if all((d / "done.json").is_file() for d in dirs) else None


def pooled_oof_metrics(ws_root: Path, run_dir: Path, n_folds: int) -> dict:
    """``{pooled: {...}, per_class: {class: AP}, folds: {k: {...}}}`` of a run's OOF detections."""
    from ...data.samples import load_classes

    ws_root, run_dir = Path(ws_root), Path(run_dir)
    images = pd.read_parquet(ws_root / "samples.parquet")
    boxes = pd.read_parquet(ws_root / "boxes.parquet")
    classes = load_classes(ws_root / "classes.json")
    dirs = _fold_dirs(run_dir, n_folds)
    if dirs is None:
        raise FileNotFoundError(f"{run_dir} has unfinished folds")
    all_dets, all_ids, folds = [], [], {}
    for k, d in enumerate(dirs):
        ids = pd.read_parquet(d / "oof_samples.parquet")["sample_id"].astype(str).to_numpy()
        dets = pd.read_parquet(d / "oof_detections.parquet")
        part = images[images["sample_id"].isin(set(ids))]
        truth = truth_to_dicts(boxes[boxes["sample_id"].isin(set(ids))], part)
        scores = coco_scores(
            truth, detections_to_dicts(dets, part["sample_id"]), len(classes), False
        )
        folds[str(k)] = {key: scores[key] for key in STAT_NAMES}
        all_dets.append(dets)
        all_ids += list(ids)
    part = images[images["sample_id"].isin(set(all_ids))]
    truth = truth_to_dicts(boxes[boxes["sample_id"].isin(set(all_ids))], part)
    dets = pd.concat(all_dets, ignore_index=True)
    scores = coco_scores(truth, detections_to_dicts(dets, part["sample_id"]), len(classes))
    per_class = dict(zip(classes, scores.pop("ap_per_class")))
    return {"pooled": scores, "per_class": per_class, "folds": folds, "images": len(part)}


def summarize_detection_run(workspace, run_name: str) -> dict | None:
    """Write ``oof_metrics.json`` and the run's leaderboard row once all its folds are done."""
    ws_root = Path(workspace.root)
    folds = pd.read_parquet(ws_root / "folds.parquet")
    n_folds = int(folds["fold"].max()) + 1
    run_dir = ws_root / "runs" / run_name
    if _fold_dirs(run_dir, n_folds) is None:
        return None  # e.g. `train --folds 0`: nothing pooled until every fold exists
    result = pooled_oof_metrics(ws_root, run_dir, n_folds)
    atomic_write_text(run_dir / "oof_metrics.json", json.dumps(result, indent=1))
    update_leaderboard(ws_root, run_name, result["pooled"])
    return result


def update_leaderboard(ws_root: Path, run_name: str, pooled: dict) -> pd.DataFrame:
    """Replace ``run_name``'s row in ``leaderboard.csv`` and re-rank by pooled OOF ``map``."""
    path = Path(ws_root) / "leaderboard.csv"
    row = {
        "name": run_name,
        "kind": "model",
        "method": "single",
        "members": run_name,
        "weights": "1",
        **{k: float(pooled[k]) for k in LEADERBOARD_METRICS},
    }
    board = pd.read_csv(path) if path.is_file() else pd.DataFrame(columns=list(row))
    board = board[board["name"] != run_name]
    board = pd.concat([board, pd.DataFrame([row])], ignore_index=True)
    board = board.sort_values("map", ascending=False, kind="stable").reset_index(drop=True)
    atomic_write(path, lambda p: board.to_csv(p, index=False))
    return board


__all__ = [
    "LEADERBOARD_METRICS",
    "pooled_oof_metrics",
    "summarize_detection_run",
    "update_leaderboard",
]
