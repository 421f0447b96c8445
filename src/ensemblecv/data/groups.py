"""Groups of samples that must stay in one fold: user groups joined with duplicate groups.

This is fold-safety, a data-layer concern: the workspace applies a
``duplicates.csv`` from ``ensemblecv dedup`` without depending on how the
duplicates were found (``ensemblecv.dedup`` finds them and writes the file).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError
from .samples import SampleTable


def union_find(n: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Component root of each of ``n`` nodes joined by edges ``(i, j)``."""
    parent = np.arange(n)

    def find(x: int) -> int:
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    for a, b in zip(i.tolist(), j.tolist()):
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return np.array([find(x) for x in range(n)])


def read_duplicates(path: str | os.PathLike) -> pd.DataFrame:
    """``duplicates.csv`` of a dedup output folder (or the folder itself)."""
    path = Path(path)
    if path.is_dir():
        path = path / "duplicates.csv"
    if not path.is_file():
        raise DataError(f"No duplicate table at {path} (run `ensemblecv dedup DATA --out DIR`).")
    df = pd.read_csv(path, dtype={"sample_id": str, "group": str})
    missing = [c for c in ("group", "sample_id") if c not in df.columns]
    if missing:
        raise DataError(
            f"{path} lacks column(s) {', '.join(missing)}; columns: {', '.join(df.columns)}."
        )
    return df


def apply_groups(table: SampleTable, duplicates) -> SampleTable:
    """``table`` with duplicate groups merged into its ``group`` column (fold-safe).

    ``duplicates``: a members DataFrame, a ``duplicates.csv`` path or its folder.
    Existing groups are kept and joined with duplicate groups (connected
    components), so :func:`~ensemblecv.data.folds.make_folds` keeps every
    duplicate group, and everything linked to it, in one fold.
    """
    dup = duplicates if isinstance(duplicates, pd.DataFrame) else read_duplicates(duplicates)
    frame = table.frame.reset_index(drop=True)
    n = len(frame)
    index = pd.Series(np.arange(n), index=frame["sample_id"].to_numpy())
    edges = []
    for key_series in (
        frame["group"],
        pd.Series(dup["group"].to_numpy(), index=index.reindex(dup["sample_id"]).to_numpy()),
    ):
        s = key_series.dropna()
        s = s[s.astype(str) != ""]
        s = s[pd.notna(s.index)]
        rows = np.asarray(s.index, dtype=np.float64).astype(np.int64)
        for _, idx in pd.Series(rows).groupby(s.to_numpy()):
            idx = idx.to_numpy()
            edges += [(int(idx[0]), int(k)) for k in idx[1:]]
    if not edges:
        return table
    e = np.array(edges, dtype=np.int64)
    roots = union_find(n, e[:, 0], e[:, 1])
    ids = frame["sample_id"].to_numpy()
    smallest = pd.Series(ids).groupby(roots).transform("min").to_numpy()
    sizes = pd.Series(roots).map(pd.Series(roots).value_counts()).to_numpy()
    frame["group"] = pd.Series(np.where(sizes > 1, smallest, None), index=frame.index, dtype=object)
    return SampleTable(frame, table.classes, table.source, table.root, table.ignored, table.extra)
