"""Detection folds: multi-label iterative stratification on which classes each image holds.

The stratification itself is shared with segmentation
(:func:`ensemblecv.data.presence_folds.presence_folds`); here an image's
classes are those it has a box of, and background images count as one more
"class", so they are spread across folds too. Groups (exact duplicates, user
groups) are split as units.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ...data.presence_folds import group_keys, presence_folds, shared_group_column
from ...data.scan import _file_hash
from ._common import main_label


def _presence(images: pd.DataFrame, boxes: pd.DataFrame, n_classes: int) -> np.ndarray:
    """Per-image class presence plus a background column, ``(N, n_classes + 1)``."""
    row_of = pd.Series(np.arange(len(images)), index=images["sample_id"].to_numpy())
    present = np.zeros((len(images), n_classes + 1), dtype=np.int64)
    if len(boxes):
        rows = row_of.reindex(boxes["sample_id"].to_numpy()).to_numpy()
        known = ~np.isnan(rows)
        present[rows[known].astype(np.int64), boxes["label"].to_numpy()[known]] = 1
    present[present.sum(1) == 0, n_classes] = 1
    return present


def detection_folds(
    images: pd.DataFrame,
    boxes: pd.DataFrame,
    n_folds: int = 5,
    seed: int = 0,
    groups=None,
    classes: list[str] | None = None,
) -> pd.DataFrame:
    """Assign every image a fold in ``0..n_folds-1``; returns ``sample_id, fold, label, group``.

    The columns are those of the classification fold table (:func:`ensemblecv.data.folds.make_folds`);
    ``label`` is the image's most frequent class (the lowest on ties), -1 for a
    background image, so class counts per fold can be printed the same way.
    ``groups`` (aligned with ``images``; default its ``group`` column) are kept
    in one fold. A class found in fewer groups than folds cannot be in every
    fold: that is warned once, listing them. Same seed, same folds.
    """
    if groups is None:
        groups = images["group"] if "group" in images else images["sample_id"]
    keys = group_keys(images["sample_id"].to_numpy(), groups)
    n_classes = int(boxes["label"].max()) + 1 if len(boxes) else 0
    if classes is not None:
        n_classes = max(n_classes, len(classes))
    names = list(classes or [str(c) for c in range(n_classes)])[:n_classes]
    names += [str(c) for c in range(len(names), n_classes)]
    fold = presence_folds(_presence(images, boxes, n_classes), keys, n_folds, seed, names)
    return pd.DataFrame(
        {
            "sample_id": images["sample_id"].to_numpy(),
            "fold": fold,
            "label": main_label(images, boxes),
            # As in the classification table: None for an image that is a group of its own.
            "group": shared_group_column(keys),
        }
    )


def content_groups(images: pd.DataFrame) -> pd.Series:
    """A group per image: byte-identical files share the smallest sample id among them.

    Pass it as ``groups`` so exact duplicates never straddle a train/validation
    split (their boxes would be scored on an image the model trained on).
    """
    digests = pd.Series([_file_hash(p) for p in images["path"]], index=images.index)
    first = images["sample_id"].groupby(digests.to_numpy()).transform("min")
    return pd.Series(first.to_numpy(), index=images.index, name="group")


__all__ = ["content_groups", "detection_folds"]
