"""Test-only stand-ins for the data side of issue 12 (label readers and detection folds).

The detection training code imports ``ensemblecv.tasks.detect.read`` and
``ensemblecv.tasks.detect.folds``, which another branch delivers. Until it is
merged, :func:`install` registers these minimal versions (YOLO only, simple
grouped folds) under those names; once the real modules exist, ``install``
leaves them alone, so the tests then run against the real readers.

:func:`make_yolo_dataset` writes a small YOLO-layout dataset of coloured
rectangles (one class per colour) that any reader of the format can read.
"""

from __future__ import annotations

import importlib
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

CLASSES = ["red", "green", "blue"]
COLOURS = [(220, 40, 40), (40, 200, 40), (40, 60, 230)]


def make_yolo_dataset(root: Path, n: int = 24, size: int = 64, seed: int = 0) -> Path:
    """``root/images/*.png``, ``root/labels/*.txt`` (class cx cy w h, normalised), data.yaml.

    Every fifth image is background (no boxes, no label file); the others hold 1-2
    rectangles of 14-30 px. Image sizes vary around ``size`` so resize geometry matters.
    """
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    (root / "data.yaml").write_text(
        "names:\n" + "".join(f"  {i}: {c}\n" for i, c in enumerate(CLASSES)), encoding="utf-8"
    )
    for i in range(n):
        w, h = int(size + rng.integers(0, size // 2)), int(size)
        img = rng.integers(90, 140, (h, w, 3)).astype(np.uint8)
        lines = []
        count = 0 if i % 5 == 4 else int(rng.integers(1, 3))
        for j in range(count):
            k = (i + j) % len(CLASSES)
            bw, bh = int(rng.integers(14, 30)), int(rng.integers(14, 30))
            x1, y1 = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
            img[y1 : y1 + bh, x1 : x1 + bw] = COLOURS[k]
            cx, cy = (x1 + bw / 2) / w, (y1 + bh / 2) / h
            lines.append(f"{k} {cx:.6f} {cy:.6f} {bw / w:.6f} {bh / h:.6f}")
        Image.fromarray(img).save(root / "images" / f"img{i:03d}.png")
        if lines:
            (root / "labels" / f"img{i:03d}.txt").write_text("\n".join(lines) + "\n")
    return root


@dataclass
class DetectionData:
    images: pd.DataFrame
    boxes: pd.DataFrame
    classes: list[str]
    bad: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=["file", "line", "reason"])
    )
    format: str = "yolo"


def read_detection(path, format=None, strict=False) -> DetectionData:  # noqa: A002
    import yaml

    root = Path(path).resolve()
    names = yaml.safe_load((root / "data.yaml").read_text())["names"]
    classes = [names[k] for k in sorted(names)] if isinstance(names, dict) else list(names)
    images, boxes = [], []
    for p in sorted((root / "images").iterdir()):
        w, h = Image.open(p).size
        sid = p.relative_to(root).as_posix()
        images.append({"sample_id": sid, "path": str(p), "width": w, "height": h, "group": None})
        label = root / "labels" / (p.stem + ".txt")
        for line in label.read_text().splitlines() if label.is_file() else []:
            k, cx, cy, bw, bh = line.split()
            k, cx, cy, bw, bh = int(k), float(cx) * w, float(cy) * h, float(bw) * w, float(bh) * h
            boxes.append(
                {"sample_id": sid, "label": k, "class_name": classes[k],
                 "x1": cx - bw / 2, "y1": cy - bh / 2, "x2": cx + bw / 2, "y2": cy + bh / 2,
                 "iscrowd": 0, "difficult": False}
            )  # fmt: skip
    cols = ["sample_id", "label", "class_name", "x1", "y1", "x2", "y2", "iscrowd", "difficult"]
    return DetectionData(pd.DataFrame(images), pd.DataFrame(boxes, columns=cols), classes)


def detection_folds(images, boxes, n_folds, seed, groups=None) -> pd.DataFrame:
    """Groups dealt round-robin in a seeded order (the real one stratifies on class presence)."""
    ids = images["sample_id"].astype(str).to_numpy()
    keys = np.array(
        [
            g if g is not None else s
            for g, s in zip(groups if groups is not None else [None] * len(ids), ids)
        ]
    )
    unique = np.random.default_rng(seed).permutation(np.unique(keys))
    fold_of = {k: i % n_folds for i, k in enumerate(unique)}
    return pd.DataFrame({"sample_id": ids, "fold": [fold_of[k] for k in keys]})


def install() -> None:
    """Register the stand-ins unless the real modules are importable."""
    for name, attrs in (
        ("read", {"read_detection": read_detection, "DetectionData": DetectionData}),
        ("folds", {"detection_folds": detection_folds}),
    ):
        full = f"ensemblecv.tasks.detect.{name}"
        try:
            importlib.import_module(full)
            continue
        except ModuleNotFoundError as exc:
            if exc.name != full:
                raise
        module = types.ModuleType(full)
        module.__dict__.update(attrs)
        sys.modules[full] = module


if __name__ == "__main__":  # python tests/detect_standin.py ARGS...: the CLI with the stand-ins
    install()
    from ensemblecv.cli import main

    sys.argv = ["ensemblecv", *sys.argv[1:]]
    main()
