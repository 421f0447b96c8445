"""A detection workspace with fabricated runs, laid out as the trainer writes it.

Ground truth is random boxes on images of 80-120 px; each fabricated run sees
each true box with its own recall, jitters it by its own noise, adds false
positives, and writes ``oof_detections.parquet`` per fold (exactly the fold's
images), test detections per fold, the test split's sizes and boxes, and
``done.json`` — what :class:`~ensemblecv.tasks.detect.store.DetectionStore` reads.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

CLASSES = ["cat", "dog <b>"]  # a name that must be escaped in the report
DET = ["sample_id", "label", "class_name", "score", "x1", "y1", "x2", "y2"]


def _truth(rng, n: int, prefix: str):
    images, boxes = [], []
    for i in range(n):
        sid = f"{prefix}img_{i:03d}.png"
        w, h = int(rng.integers(80, 121)), int(rng.integers(80, 121))
        images.append((sid, f"/nowhere/{sid}", w, h))
        for _ in range(int(rng.integers(0, 4))):
            bw, bh = rng.integers(8, 40, 2)
            x1, y1 = rng.integers(0, w - bw), rng.integers(0, h - bh)
            k = int(rng.integers(len(CLASSES)))
            boxes.append((sid, k, CLASSES[k], float(x1), float(y1), float(x1 + bw),
                          float(y1 + bh), False, False))  # fmt: skip
    images = pd.DataFrame(images, columns=["sample_id", "path", "width", "height"])
    boxes = pd.DataFrame(
        boxes,
        columns=[
            "sample_id",
            "label",
            "class_name",
            "x1",
            "y1",
            "x2",
            "y2",
            "iscrowd",
            "difficult",
        ],
    )
    return images, boxes


def fake_detections(rng, images, boxes, recall: float, noise: float, fp: float) -> pd.DataFrame:
    rows = []
    sizes = images.set_index("sample_id")[["width", "height"]]
    for b in boxes.itertuples(index=False):
        if rng.random() < recall:
            j = rng.normal(0, noise, 4) * np.tile([b.x2 - b.x1, b.y2 - b.y1], 2)
            x1, y1, x2, y2 = np.array([b.x1, b.y1, b.x2, b.y2]) + j
            rows.append((b.sample_id, b.label, b.class_name, rng.uniform(0.3, 1.0),
                         x1, y1, max(x2, x1 + 1), max(y2, y1 + 1)))  # fmt: skip
    for sid, (w, h) in sizes.iterrows():
        for _ in range(rng.poisson(fp)):
            x1, y1 = rng.uniform(0, w - 10), rng.uniform(0, h - 10)
            k = int(rng.integers(len(CLASSES)))
            rows.append((sid, k, CLASSES[k], rng.uniform(0.0, 0.6), x1, y1,
                         min(w, x1 + rng.uniform(5, 30)), min(h, y1 + rng.uniform(5, 30))))  # fmt: skip
    frame = pd.DataFrame(rows, columns=DET)
    for c in ("x1", "x2"):
        frame[c] = frame[c].clip(0, frame["sample_id"].map(sizes["width"]))
    for c in ("y1", "y2"):
        frame[c] = frame[c].clip(0, frame["sample_id"].map(sizes["height"]))
    return frame.astype({"score": np.float32, "x1": np.float32, "y1": np.float32,
                         "x2": np.float32, "y2": np.float32})  # fmt: skip


#: run name → (recall, jitter, false positives per image)
RUNS = {"det_a": (0.8, 0.05, 1.0), "det_b": (0.7, 0.08, 0.7), "det_c": (0.6, 0.04, 1.5)}


def make_detect_workspace(root: Path, n: int = 36, folds: int = 3, n_test: int = 18,
                          runs: dict = RUNS, seed: int = 0, hflip: bool = False) -> Path:  # fmt: skip
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    images, boxes = _truth(rng, n, "images/")
    images["group"] = images["sample_id"]
    from PIL import Image

    paths = []
    for sid, w, h in zip(images["sample_id"], images["width"], images["height"]):
        path = root / "data" / sid
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(60, 200, (h, w, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    images["path"] = paths
    test_images, test_boxes = _truth(rng, n_test, "test/")
    fold_of = np.arange(n) % folds
    images.to_parquet(root / "samples.parquet", index=False)
    boxes.to_parquet(root / "boxes.parquet", index=False)
    pd.DataFrame({"sample_id": images["sample_id"], "fold": fold_of,
                  "group": images["sample_id"]}).to_parquet(root / "folds.parquet", index=False)  # fmt: skip
    (root / "classes.json").write_text(json.dumps(CLASSES))
    (root / "workspace.json").write_text(json.dumps({"task": "detect", "folds": folds}))
    for name, (recall, noise, fp) in runs.items():
        for k in range(folds):
            d = root / "runs" / name / f"fold_{k}"
            d.mkdir(parents=True, exist_ok=True)
            part = images[fold_of == k]
            pb = boxes[boxes["sample_id"].isin(set(part["sample_id"]))]
            variants = ["", "_hflip"] if hflip else [""]
            for v in variants:
                fake_detections(rng, part, pb, recall, noise, fp).to_parquet(
                    d / f"oof_detections{v}.parquet", index=False
                )
                fake_detections(rng, test_images, test_boxes, recall, noise, fp).to_parquet(
                    d / f"test_detections{v}.parquet", index=False
                )
            pd.DataFrame({"sample_id": part["sample_id"], "fold": k}).to_parquet(
                d / "oof_samples.parquet", index=False
            )
            test_images[["sample_id", "width", "height"]].to_parquet(
                d / "test_samples.parquet", index=False
            )
            test_boxes.to_parquet(d / "test_boxes.parquet", index=False)
            (d / "done.json").write_text(json.dumps({"fold": k}))
    return root
