"""A stand-in for the data half of task: segment (reader + workspace) until it is merged.

Reads only an ``images/`` + ``masks/`` folder pair (grey/palette PNG masks of
class ids); folds are a seeded shuffle, not presence-stratified. Delete this
file when ``ensemblecv.tasks.segment.read`` / ``.workspace`` exist.
"""

from __future__ import annotations

import json
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd


@dataclass
class SegmentationData:
    images: pd.DataFrame
    classes: list[str]
    palette: np.ndarray | None = None
    ignore_index: int = 255
    bad: pd.DataFrame = field(default_factory=pd.DataFrame)

    def load_mask(self, i: int) -> np.ndarray:
        from PIL import Image

        return np.asarray(Image.open(self.images["mask_path"].iloc[i]))


def read_segmentation(path, format=None, classes=None, ignore_index=255, strict=False):
    from PIL import Image

    root = Path(path)
    rows = []
    for img in sorted((root / "images").iterdir()):
        mask = root / "masks" / (img.stem + ".png")
        w, h = Image.open(img).size
        rows.append(
            dict(
                sample_id=img.stem,
                image_path=str(img),
                mask_path=str(mask) if mask.is_file() else None,
                width=w,
                height=h,
            )
        )
    names = classes
    if names is None and (root / "classes.txt").is_file():
        names = (root / "classes.txt").read_text().split()
    return SegmentationData(pd.DataFrame(rows), list(names), None, ignore_index)


def segment_source_id(data) -> str:
    return str(Path(data.train).expanduser().resolve())


def create_segment_workspace(config, root, progress):
    from ensemblecv.data.samples import save_classes
    from ensemblecv.workspace import Workspace

    ws = Workspace(Path(root))
    ws.root.mkdir(parents=True, exist_ok=True)
    data = read_segmentation(config.data.train)
    images = data.images.copy()
    if config.data.limit:
        images = images.iloc[: config.data.limit]
    images["group"] = np.arange(len(images))
    rng = np.random.default_rng(config.data.fold_seed)
    fold = np.empty(len(images), np.int64)
    fold[rng.permutation(len(images))] = np.arange(len(images)) % config.data.folds
    folds = pd.DataFrame({"sample_id": images["sample_id"], "fold": fold, "group": images["group"]})
    ws.stats_path.write_text(json.dumps({"rgb": {"mean": [0.5] * 3, "std": [0.25] * 3}}))
    info = {"task": "segment", "source": segment_source_id(config.data), "folds": config.data.folds,
            "ignore_index": data.ignore_index}  # fmt: skip
    ws.info_path.write_text(json.dumps(info))
    save_classes(data.classes, ws.classes_path)
    images.to_parquet(ws.samples_path, index=False)
    folds.to_parquet(ws.folds_path, index=False)
    return ws


def install() -> None:
    """Put this module in place of the missing data-side modules (no-op once they exist)."""
    import importlib.util

    for name in ("read", "workspace"):
        full = f"ensemblecv.tasks.segment.{name}"
        if full not in sys.modules and importlib.util.find_spec(full) is None:
            mod = types.ModuleType(full)
            mod.__dict__.update(
                read_segmentation=read_segmentation,
                SegmentationData=SegmentationData,
                create_segment_workspace=create_segment_workspace,
                segment_source_id=segment_source_id,
            )
            sys.modules[full] = mod
