"""Cross-validation folds: stratified, group-aware, made once per workspace.

Every model of an experiment must see the same folds, otherwise out-of-fold
predictions of different models are not comparable and ensembles fitted on them
leak. So the fold table is written once and later runs only read it.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from ..errors import DataError, format_list
from .samples import SampleTable


def _group_keys(frame: pd.DataFrame) -> np.ndarray:
    """A key per sample: its group, or its own id when it has none."""
    group = frame["group"]
    return np.where(
        group.isna().to_numpy(), frame["sample_id"].to_numpy(), group.to_numpy()
    ).astype(str)


def check_fold_feasible(table: SampleTable, k: int) -> None:
    """Refuse K-fold when some class cannot appear in every validation fold."""
    if k < 2:
        raise DataError(f"folds must be at least 2, got {k}.")
    frame = table.frame
    if (frame["label"] < 0).any():
        raise DataError("Folds need labels, but some samples are unlabelled (label -1).")
    keys = _group_keys(frame)
    per_class = pd.Series(keys).groupby(frame["label"].to_numpy()).nunique()
    small = per_class[per_class < k]
    if len(small):
        items = [f"{table.classes[c]!r}: {n} independent sample(s)" for c, n in small.items()]
        largest_k = int(per_class.min())
        hint = f"use folds <= {largest_k}" if largest_k >= 2 else "merge or drop these classes"
        raise DataError(
            f"{len(small)} class(es) have fewer than {k} independent samples (groups count "
            f"once), so they cannot appear in every one of the {k} folds:\n{format_list(items)}\n"
            f"Fix: {hint}, or merge these classes, or add images."
        )


def make_folds(table: SampleTable, k: int = 5, seed: int = 0) -> pd.DataFrame:
    """Assign each sample a fold in ``0..k-1``; returns ``sample_id, fold, label, group``.

    Without groups this is :class:`~sklearn.model_selection.StratifiedKFold`;
    with groups (user-given or exact duplicates) it is
    :class:`~sklearn.model_selection.StratifiedGroupKFold`, so no group ever
    straddles a train/validation boundary.
    """
    check_fold_feasible(table, k)
    frame = table.frame
    y = frame["label"].to_numpy()
    keys = _group_keys(frame)
    fold = np.full(len(frame), -1, dtype=np.int64)
    has_groups = len(np.unique(keys)) < len(keys)
    with warnings.catch_warnings():
        # sklearn warns when a class has fewer members than folds; we already checked.
        warnings.simplefilter("ignore", UserWarning)
        if has_groups:
            splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
            splits = splitter.split(np.zeros(len(y)), y, groups=keys)
        else:
            splits = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(
                np.zeros(len(y)), y
            )
        for i, (_, val) in enumerate(splits):
            fold[val] = i
    return pd.DataFrame(
        {
            "sample_id": frame["sample_id"].to_numpy(),
            "fold": fold,
            "label": y,
            "group": frame["group"].to_numpy(),
        }
    )


def save_folds(folds: pd.DataFrame, path: Path) -> None:
    folds.to_parquet(path, index=False)


def load_folds(path: Path, table: SampleTable | None = None) -> pd.DataFrame:
    """Read a saved fold table; with ``table``, check it still describes that dataset."""
    folds = pd.read_parquet(path)
    if table is not None:
        saved, current = set(folds["sample_id"]), set(table.frame["sample_id"])
        if saved != current:
            added, removed = sorted(current - saved), sorted(saved - current)
            raise DataError(
                f"The fold table {path} was made for a different set of samples "
                f"({len(added)} new, {len(removed)} gone), e.g.:\n"
                f"{format_list([f'new: {s}' for s in added[:5]] + [f'gone: {s}' for s in removed[:5]])}\n"
                "Models trained on different folds cannot be ensembled honestly. Use a new "
                "workspace, or delete folds.parquet there on purpose to re-split."
            )
    return folds
