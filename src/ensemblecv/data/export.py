"""Write a built-in dataset as PNG files, as a folder tree or a CSV index.

Useful to try ensemblecv on "real files", to benchmark decoding, and to make
the sketch-competition layout (``train.csv`` with ``class_name,image_path,target``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from ..errors import DataError
from . import builtin
from .split import safe_dirname


def balanced_subset(labels: np.ndarray, limit: int | None) -> np.ndarray:
    """Indices of at most ``limit`` samples taking classes in turn (deterministic)."""
    if limit is None or limit >= len(labels):
        return np.arange(len(labels))
    order = np.argsort(labels, kind="stable")
    rank = np.empty(len(labels), dtype=np.int64)
    for c in np.unique(labels):
        members = order[labels[order] == c]
        rank[members] = np.arange(len(members))
    chosen = np.lexsort((np.arange(len(labels)), rank))[:limit]
    return np.sort(chosen)


def export_builtin(
    name: str,
    out: Path,
    layout: str = "folder",
    limit: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Export ``name`` (``fashion-mnist``, ``digits:test``...) under ``out``; returns the index or root.

    ``folder``: ``out/<class>/<split>_<index>.png``. ``csv``: ``out/images/...png`` plus
    ``out/train.csv`` (``class_name,image_path,target``) or, for a test split,
    ``out/test.csv`` (``ID,image_path,class_name,target``).
    """
    parsed = builtin.parse_builtin(name)
    if parsed is None:
        raise DataError(
            f"Unknown built-in dataset {name!r}; available: {', '.join(builtin.list_datasets())}."
        )
    if layout not in ("folder", "csv"):
        raise DataError(f"--layout must be 'folder' or 'csv', got {layout!r}.")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise DataError(f"Output folder {out} is not empty; refusing to overwrite files in it.")
    base, split = parsed
    data = builtin.load_split(base, split)
    rows = []
    for n, i in enumerate(balanced_subset(data.labels, limit)):
        cls = data.classes[int(data.labels[i])]
        fname = f"{split}_{i:05d}.png"
        rel = Path(safe_dirname(cls)) / fname if layout == "folder" else Path("images") / fname
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(data.images[i]).save(out / rel)
        rows.append((f"{split}_{i:05d}", rel.as_posix(), cls, int(data.labels[i])))
        if progress and n % 500 == 499:
            progress(500)
    if layout == "folder":
        return out
    index = pd.DataFrame(rows, columns=["ID", "image_path", "class_name", "target"])
    if split == "train":
        path = out / "train.csv"
        index[["class_name", "image_path", "target"]].to_csv(path, index=False)
    else:
        path = out / "test.csv"
        index.to_csv(path, index=False)
    return path
