"""A fold's OOF / test probability maps into the store, and a finished run's pooled scores.

Pooled OOF scores sum the folds' confusion matrices: every image was
predicted by the one model that did not train on it, and mIoU over the
pooled matrix is the dataset-level figure (averaging per-fold mIoUs would
weight small folds too much). ``runs/<name>/oof_metrics.json`` holds both
``stored`` (from the maps in the store; what ensembles see) and ``full``
(the model's full-resolution prediction) scores, per class too; the stored
figures make the run's row in ``leaderboard.csv`` (and ``<name>+tta`` when
the run stored TTA maps).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..._io import atomic_write, atomic_write_text
from .metrics import scores_from_confusion
from .store import MapWriter, frame_probs, store_side, to_original

#: Leaderboard columns after name/kind/method/members/weights, best first by ``miou``.
LEADERBOARD_METRICS = ["miou", "pixel_acc", "mean_dice", "miou_full"]


def predict_into(
    module, source, rows, config, device, writers: dict[str, MapWriter], label: bool
) -> None:
    """Predict ``rows`` of ``source`` (plain and, for writer ``tta``, with TTA) into the writers."""
    from ...training.data import make_loader
    from .data import SegmentDataset

    seg = config.segment
    loader = make_loader(
        SegmentDataset(source, rows), config.train.batch_size, 0, False, 0, device.type == "cuda"
    )
    module.eval().to(device)
    pos = 0
    with torch.no_grad():
        for x, _, batch_rows in loader:
            x = x.to(device)
            outs = {"plain": frame_probs(module.model, x, [], [1.0])}
            if "tta" in writers:
                outs["tta"] = frame_probs(module.model, x, seg.tta, seg.tta_scales)
            for j, row in enumerate(batch_rows.tolist()):
                h, w = source.original_size(row)
                truth = source.raw_mask(row) if label else None
                for key, probs in outs.items():
                    full = to_original(probs[j].float().cpu(), source.content_box(row), h, w)
                    writers[key].add(pos, full, truth)
                pos += 1


def write_maps(module, inputs, config, fold, fold_dir: Path, rows, device) -> dict[str, float]:
    """OOF maps of the fold's validation ``rows`` (+ test maps); the fold's scores."""
    from ...training.distributed import is_rank_zero

    seg = config.segment
    k = inputs.num_classes
    # Storing finer than the model's own input frame would add bytes, not information.
    side = min(
        store_side(k, seg.store_bytes, seg.store_dtype, seg.store_size), config.data.image_size
    )
    metrics: dict[str, float] = {}
    if not is_rank_zero():
        return metrics  # rank 0 predicts every row; the maps are written once
    jobs = []
    if len(rows):
        jobs.append(("oof", inputs.source, np.asarray(rows), True))
    if inputs.test_source is not None:
        jobs.append(("test", inputs.test_source, np.arange(len(inputs.test_source)), True))
    for prefix, source, job_rows, label in jobs:
        suffixes = {"plain": ""} | ({"tta": "_tta"} if seg.tta else {})
        writers = {
            key: MapWriter(
                fold_dir / f"{prefix}_maps{suf}.npy",
                len(job_rows),
                k,
                side,
                seg.store_dtype,
                inputs.ignore_index,
            )  # fmt: skip
            for key, suf in suffixes.items()
        }
        predict_into(module, source, job_rows, config, device, writers, label)
        for key, suf in suffixes.items():
            writers[key].close(fold_dir / f"{prefix}_confusion{suf}.json")
            cm = writers[key].cm
            if cm["full"].sum() == 0:
                continue
            name = f"{prefix}_" if prefix == "test" else ""
            tag = "_tta" if suf else ""
            metrics[f"{name}miou{tag}"] = scores_from_confusion(cm["stored"])["miou"]
            metrics[f"{name}miou_full{tag}"] = scores_from_confusion(cm["full"])["miou"]
        ids = [source.sample_ids[r] for r in job_rows]
        sizes = [source.original_size(r) for r in job_rows]
        frame = pd.DataFrame(
            {
                "sample_id": ids,
                "fold": fold if prefix == "oof" else -1,
                "height": [s[0] for s in sizes],
                "width": [s[1] for s in sizes],
            }
        )
        frame.to_parquet(fold_dir / f"{prefix}_samples.parquet", index=False)
    return metrics


def fold_dirs(run_dir: Path, n_folds: int) -> list[Path] | None:
    dirs = [run_dir / f"fold_{k}" for k in range(n_folds)]
    return dirs if all((d / "done.json").is_file() for d in dirs) else None


def pooled_oof_metrics(run_dir: Path, n_folds: int, classes: list[str], tta: bool = False) -> dict:
    """``{stored: {...}, full: {...}, per_class: {...}, folds: {k: miou}}`` of a run."""
    from .store import read_confusion

    dirs = fold_dirs(Path(run_dir), n_folds)
    if dirs is None:
        raise FileNotFoundError(f"{run_dir} has unfinished folds")
    k = len(classes)
    total = {"full": np.zeros((k, k), np.int64), "stored": np.zeros((k, k), np.int64)}
    folds = {}
    suffix = "_tta" if tta else ""
    for i, d in enumerate(dirs):
        cm = read_confusion(d / f"oof_confusion{suffix}.json")
        folds[str(i)] = scores_from_confusion(cm["stored"])["miou"]
        for key in total:
            total[key] += cm[key]
    out = {}
    for key, cm in total.items():
        s = scores_from_confusion(cm)
        out[key] = {m: s[m] for m in ("miou", "pixel_acc", "mean_dice", "mean_acc")}
        out[f"{key}_iou"] = dict(zip(classes, map(_nan_none, s["iou"])))
    out["folds"] = folds
    out["confusion"] = total["stored"].tolist()
    return out


def _nan_none(v: float):
    return None if np.isnan(v) else float(v)


def summarize_segment_run(workspace, run_name: str) -> dict | None:
    """``oof_metrics.json`` and the run's leaderboard row(s) once all its folds are done."""
    from ...data.samples import load_classes

    root = Path(workspace.root)
    n_folds = int(pd.read_parquet(root / "folds.parquet")["fold"].max()) + 1
    run_dir = root / "runs" / run_name
    if fold_dirs(run_dir, n_folds) is None:
        return None
    classes = load_classes(root / "classes.json")
    result = pooled_oof_metrics(run_dir, n_folds, classes)
    atomic_write_text(run_dir / "oof_metrics.json", json.dumps(result, indent=1))
    update_leaderboard(root, run_name, result)
    if (run_dir / "fold_0" / "oof_maps_tta.npy").is_file():
        tta = pooled_oof_metrics(run_dir, n_folds, classes, tta=True)
        atomic_write_text(run_dir / "oof_metrics_tta.json", json.dumps(tta, indent=1))
        update_leaderboard(root, f"{run_name}+tta", tta)
    return result


def update_leaderboard(root: Path, name: str, result: dict) -> pd.DataFrame:
    """Replace ``name``'s single-model row in ``leaderboard.csv``; re-rank by stored OOF mIoU."""
    path = Path(root) / "leaderboard.csv"
    row = {
        "name": name, "kind": "model", "method": "single", "members": name, "weights": "1",
        "miou": result["stored"]["miou"], "pixel_acc": result["stored"]["pixel_acc"],
        "mean_dice": result["stored"]["mean_dice"], "miou_full": result["full"]["miou"],
    }  # fmt: skip
    board = pd.read_csv(path) if path.is_file() else pd.DataFrame(columns=list(row))
    board = board[board["name"] != name]
    board = pd.concat([board, pd.DataFrame([row])], ignore_index=True)
    board = board.sort_values("miou", ascending=False, kind="stable").reset_index(drop=True)
    atomic_write(path, lambda p: board.to_csv(p, index=False))
    return board


__all__ = [
    "LEADERBOARD_METRICS",
    "pooled_oof_metrics",
    "summarize_segment_run",
    "update_leaderboard",
    "write_maps",
]
