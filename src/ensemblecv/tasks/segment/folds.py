"""Segmentation folds: stratified on which classes each image has pixels of, groups kept.

The same multi-label stratification as detection
(:func:`ensemblecv.data.presence_folds.presence_folds`), with presence read
from the masks (:meth:`SegmentationData.presence`): a class that covers a few
pixels of a few images still reaches every validation fold when it can.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ...data.presence_folds import group_keys, presence_folds, shared_group_column


def main_class(counts: np.ndarray) -> np.ndarray:
    """Per image the class with most pixels other than 0 (background), 0 if it holds no other."""
    counts = np.asarray(counts)
    if counts.shape[1] < 2:
        return np.zeros(len(counts), dtype=np.int64)
    rest = counts[:, 1:]
    return np.where(rest.max(1) > 0, rest.argmax(1) + 1, 0).astype(np.int64)


def segmentation_folds(
    data,
    n_folds: int = 5,
    seed: int = 0,
    groups=None,
) -> pd.DataFrame:
    """A fold per image of ``data`` (a :class:`~.read.SegmentationData`): ``sample_id, fold, label, group``.

    The columns are those of the classification and detection fold tables;
    ``label`` is :func:`main_class` (for class counts per fold). ``groups``
    (aligned with ``data.images``; default its ``group`` column, None = the
    image alone) are kept in one fold. A class present in fewer groups than
    folds is warned about once, listing them. Same seed, same folds.
    """
    images = data.images
    if groups is None:
        groups = images["group"] if "group" in images else None
    keys = group_keys(images["sample_id"].to_numpy(), groups)
    counts = data.pixel_counts()
    fold = presence_folds(counts > 0, keys, n_folds, seed, list(data.classes))
    return pd.DataFrame(
        {
            "sample_id": images["sample_id"].to_numpy(),
            "fold": fold,
            "label": main_class(counts),
            "group": shared_group_column(keys),
        }
    )


__all__ = ["main_class", "segmentation_folds"]
