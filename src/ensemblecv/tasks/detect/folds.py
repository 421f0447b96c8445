"""Detection folds: multi-label iterative stratification on which classes each image holds.

An image holds several classes, so the classification splitter (one label per
sample) does not apply; iterative stratification (Sechidis et al., 2011, the
``iterative-stratification`` package) balances every class's presence across
folds at once, rarest class first, which is what keeps a rare class in every
validation fold. Groups (exact duplicates, user groups) are split as units:
the stratification runs over groups, each with the union of its members'
classes, and every member takes its group's fold. Background images count as
one more "class", so they are spread across folds too.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from ...data.scan import _file_hash
from ...errors import DataError, format_list
from ._common import main_label


def _presence(images: pd.DataFrame, boxes: pd.DataFrame, keys: np.ndarray, n_classes: int):
    """Per-group class presence (groups sorted by key) plus a background column."""
    groups, inverse = np.unique(keys, return_inverse=True)
    row_of = pd.Series(np.arange(len(images)), index=images["sample_id"].to_numpy())
    present = np.zeros((len(groups), n_classes + 1), dtype=np.int64)
    if len(boxes):
        rows = row_of.reindex(boxes["sample_id"].to_numpy()).to_numpy()
        known = ~np.isnan(rows)
        rows = rows[known].astype(np.int64)
        present[inverse[rows], boxes["label"].to_numpy()[known]] = 1
    has_box = np.zeros(len(images), dtype=bool)
    if len(boxes):
        has_box[rows] = True
    group_has_box = np.bincount(inverse, weights=has_box, minlength=len(groups)) > 0
    present[~group_has_box, n_classes] = 1
    return groups, inverse, present


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
    if n_folds < 2:
        raise DataError(f"folds must be at least 2, got {n_folds}.")
    if groups is None:
        groups = images["group"] if "group" in images else images["sample_id"]
    groups = pd.Series(np.asarray(groups, dtype=object), index=images.index)
    keys = np.where(
        groups.isna().to_numpy(), images["sample_id"].to_numpy(), groups.to_numpy()
    ).astype(str)
    n_classes = int(boxes["label"].max()) + 1 if len(boxes) else 0
    if classes is not None:
        n_classes = max(n_classes, len(classes))
    group_keys, inverse, present = _presence(images, boxes, keys, n_classes)
    if len(group_keys) < n_folds:
        raise DataError(
            f"{len(group_keys)} independent image group(s) cannot fill {n_folds} folds; "
            f"use folds <= {len(group_keys)} or add images."
        )
    per_class = present[:, :n_classes].sum(0)
    short = [c for c in range(n_classes) if 0 < per_class[c] < n_folds]
    if short:
        names = classes or [str(c) for c in range(n_classes)]
        warnings.warn(
            f"{len(short)} class(es) are in fewer than {n_folds} independent images (groups count "
            f"once), so some validation folds will have none of them:\n"
            + format_list([f"{names[c]!r}: {per_class[c]}" for c in short]),
            UserWarning,
            stacklevel=2,
        )
    group_fold = _stratify(present[:, present.sum(0) > 0], n_folds, seed)
    fold = group_fold[inverse]
    return pd.DataFrame(
        {
            "sample_id": images["sample_id"].to_numpy(),
            "fold": fold.astype(np.int64),
            "label": main_label(images, boxes),
            # As in the classification table: None for an image that is a group of its own.
            "group": np.where(pd.Series(keys).duplicated(keep=False), keys, None),
        }
    )


def _stratify(y: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

    if y.shape[1] < 2:
        # One column (one class, no background, or background only) is "binary" to
        # sklearn's target check; its complement makes it multi-label and changes nothing.
        y = np.column_stack([y, 1 - y[:, :1]]) if y.shape[1] else np.ones((len(y), 2), np.int64)
    fold = np.full(len(y), -1, dtype=np.int64)
    splitter = MultilabelStratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for i, (_, val) in enumerate(splitter.split(np.zeros((len(y), 1)), y)):
        fold[val] = i
    return fold


def content_groups(images: pd.DataFrame) -> pd.Series:
    """A group per image: byte-identical files share the smallest sample id among them.

    Pass it as ``groups`` so exact duplicates never straddle a train/validation
    split (their boxes would be scored on an image the model trained on).
    """
    digests = pd.Series([_file_hash(p) for p in images["path"]], index=images.index)
    first = images["sample_id"].groupby(digests.to_numpy()).transform("min")
    return pd.Series(first.to_numpy(), index=images.index, name="group")


__all__ = ["content_groups", "detection_folds"]
