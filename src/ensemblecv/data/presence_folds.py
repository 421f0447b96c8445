"""Folds for images that hold several classes: iterative stratification on class presence, groups kept.

Shared by detection (classes that have a box in the image) and segmentation
(classes that have a pixel in it). One label per sample does not describe such
images, so the classification splitter does not apply; iterative
stratification (Sechidis et al., 2011, the ``iterative-stratification``
package) balances every class's presence across folds at once, rarest class
first, which is what keeps a rare class in every validation fold. Groups
(exact duplicates, user groups) are split as units: the stratification runs
over groups, each with the union of its members' classes, and every member
takes its group's fold.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from ..errors import DataError, format_list


def group_keys(sample_ids, groups=None) -> np.ndarray:
    """One key per sample: its group, or its own sample id where the group is missing."""
    ids = np.asarray(sample_ids, dtype=object)
    if groups is None:
        return ids.astype(str)
    groups = pd.Series(np.asarray(groups, dtype=object))
    return np.where(groups.isna().to_numpy(), ids, groups.to_numpy()).astype(str)


def presence_folds(
    presence: np.ndarray,
    keys: np.ndarray,
    n_folds: int = 5,
    seed: int = 0,
    names: list[str] | None = None,
    what: str = "independent images",
) -> np.ndarray:
    """A fold in ``0..n_folds-1`` per row of ``presence`` (``(N, K)``, nonzero = holds column k).

    ``keys`` (from :func:`group_keys`) puts rows with the same key in one fold.
    The first ``len(names)`` columns are classes: one found in fewer groups
    than folds cannot be in every validation fold, which is warned once,
    listing them; further columns (detection's "background image") are
    balanced too but not warned about. Same seed, same folds; the row order of
    the input does not matter.
    """
    if n_folds < 2:
        raise DataError(f"folds must be at least 2, got {n_folds}.")
    presence = np.asarray(presence)
    uniq, inverse = np.unique(np.asarray(keys, dtype=str), return_inverse=True)
    if len(uniq) < n_folds:
        raise DataError(
            f"{len(uniq)} {what} (groups count once) cannot fill {n_folds} folds; "
            f"use folds <= {len(uniq)} or add images."
        )
    grouped = np.zeros((len(uniq), presence.shape[1]), dtype=np.int64)
    np.maximum.at(grouped, inverse, (presence != 0).astype(np.int64))
    names = list(names or [])
    per_class = grouped[:, : len(names)].sum(0)
    short = [c for c in range(len(names)) if 0 < per_class[c] < n_folds]
    if short:
        warnings.warn(
            f"{len(short)} class(es) are in fewer than {n_folds} {what} (groups count "
            f"once), so some validation folds will have none of them:\n"
            + format_list([f"{names[c]!r}: {per_class[c]}" for c in short]),
            UserWarning,
            stacklevel=3,
        )
    group_fold = _stratify(grouped[:, grouped.sum(0) > 0], n_folds, seed)
    return group_fold[inverse].astype(np.int64)


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


def shared_group_column(keys: np.ndarray) -> np.ndarray:
    """The fold table's ``group`` column: the key where several rows share it, else None."""
    return np.where(pd.Series(keys).duplicated(keep=False).to_numpy(), keys, None)


__all__ = ["group_keys", "presence_folds", "shared_group_column"]
