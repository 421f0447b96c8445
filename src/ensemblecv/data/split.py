"""Write a dataset as train/val/test folders (what the ``splitfolders`` tool does), safely.

Source files are only read: the output is copies or links in a new folder,
never inside the source, and an existing non-empty output folder is refused so
no user file is overwritten.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from ..errors import DataError
from .imageio import is_virtual, load_image
from .samples import SampleTable

SPLIT_NAMES = ("train", "val", "test")


def parse_ratios(text: str) -> list[float]:
    try:
        ratios = [float(x) for x in str(text).split(",")]
    except ValueError:
        raise DataError(
            f"--ratios must be comma-separated numbers like 0.8,0.1,0.1, got {text!r}."
        ) from None
    if not 2 <= len(ratios) <= 3 or any(r < 0 for r in ratios) or abs(sum(ratios) - 1) > 1e-6:
        raise DataError(f"--ratios needs 2 or 3 non-negative numbers summing to 1, got {text!r}.")
    return ratios


def assign_splits(table: SampleTable, ratios: list[float], seed: int = 0) -> np.ndarray:
    """Split name per sample, stratified by class and keeping each group in one split.

    Groups are split as units, stratified by their majority label; when a class
    has too few groups to stratify, the split falls back to unstratified for
    the whole set rather than failing (small sets still get a split).
    """
    frame = table.frame
    keys = np.where(frame["group"].isna(), frame["sample_id"], frame["group"]).astype(str)
    per_group = pd.DataFrame({"key": keys, "label": frame["label"].to_numpy()})
    groups = per_group.groupby("key")["label"].agg(lambda s: s.mode().iloc[0])
    names = np.array(groups.index)
    labels = groups.to_numpy()
    remaining, assignment = np.arange(len(names)), {}
    left = 1.0
    for split, ratio in zip(SPLIT_NAMES[: len(ratios) - 1], ratios[:-1]):
        frac = ratio / left if left > 0 else 0.0
        if frac <= 0 or len(remaining) == 0:
            continue
        if frac >= 1:
            take, rest = remaining, np.array([], dtype=int)
        else:
            take, rest = _split_once(remaining, labels[remaining], frac, seed)
        assignment.update({names[i]: split for i in take})
        remaining, left = rest, left - ratio
    last = SPLIT_NAMES[len(ratios) - 1]
    assignment.update({names[i]: last for i in remaining})
    return np.array([assignment[k] for k in keys])


def _split_once(idx: np.ndarray, y: np.ndarray, frac: float, seed: int):
    counts = np.bincount(y - y.min()) if len(y) else np.array([])
    stratify = y if len(counts) and counts[counts > 0].min() >= 2 else None
    try:
        return train_test_split(idx, train_size=frac, stratify=stratify, random_state=seed)
    except ValueError:
        return train_test_split(idx, train_size=frac, stratify=None, random_state=seed)


def _is_within(child: Path, parent: Path) -> bool:
    try:
        child.resolve().relative_to(parent.resolve())
        return True
    except ValueError:
        return False


def check_output_dir(out: Path, source_root: Path | None) -> None:
    if source_root is not None and (_is_within(out, source_root) or _is_within(source_root, out)):
        raise DataError(
            f"Refusing to write into {out}: it overlaps the source dataset {source_root}. "
            "Choose an output folder outside the dataset."
        )
    if out.exists() and any(out.iterdir()):
        raise DataError(f"Output folder {out} is not empty; refusing to overwrite files in it.")


def write_split(
    table: SampleTable, out: Path, splits: np.ndarray, mode: str = "copy"
) -> pd.DataFrame:
    """Materialise ``out/<split>/<class>/<relative path>``; returns the written index.

    ``mode`` is ``copy`` or ``link`` (symbolic links to the absolute source).
    Built-in datasets are written as PNG files whatever the mode.
    """
    if mode not in ("copy", "link"):
        raise DataError(f"mode must be 'copy' or 'link', got {mode!r}.")
    if not table.labelled:
        raise DataError("Splitting into class folders needs a labelled dataset.")
    out = Path(out).absolute()
    check_output_dir(out, table.root)
    rows = []
    for (_, sample), split in zip(table.frame.iterrows(), splits):
        src = sample["path"]
        class_dir = out / split / safe_dirname(sample["class_name"])
        if is_virtual(src):
            dest = class_dir / f"{Path(sample['sample_id']).name}.png"
            dest.parent.mkdir(parents=True, exist_ok=True)
            save_png(src, dest)
            rows.append((sample["sample_id"], split, sample["class_name"], str(dest)))
            continue
        dest = class_dir / _relative_in_class(sample)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if mode == "link":
            os.symlink(os.path.abspath(src), dest)
        else:
            shutil.copy2(src, dest)
        rows.append((sample["sample_id"], split, sample["class_name"], str(dest)))
    index = pd.DataFrame(rows, columns=["sample_id", "split", "class_name", "path"])
    index.to_csv(out / "split_index.csv", index=False)
    return index


def _relative_in_class(sample: pd.Series) -> Path:
    """Keep the sub-path below the class folder so same-named files do not collide."""
    parts = Path(sample["sample_id"]).parts
    if len(parts) > 1 and parts[0] == sample["class_name"]:
        return Path(*parts[1:])
    return Path(*parts) if parts else Path(f"{sample['row']}.png")


def save_png(src: str, dest: Path) -> None:
    """Write a decoded image as PNG, grayscale kept grayscale."""
    from PIL import Image

    arr = load_image(src, channels=3)
    if (arr[:, :, 0] == arr[:, :, 1]).all() and (arr[:, :, 1] == arr[:, :, 2]).all():
        Image.fromarray(arr[:, :, 0], mode="L").save(dest)
    else:
        Image.fromarray(arr).save(dest)


def safe_dirname(name: str) -> str:
    return str(name).replace("/", "_").replace("\\", "_").strip() or "_"
