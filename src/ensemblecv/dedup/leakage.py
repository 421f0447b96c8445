"""How many validation samples have a near-duplicate in their training folds?"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..workspace import Workspace
from .groups import read_duplicates
from .phash import hash_images
from .search import find_pairs


def _pairs_from_dedup(dup: pd.DataFrame, sample_ids: np.ndarray) -> np.ndarray:
    pos = pd.Series(np.arange(len(sample_ids)), index=sample_ids)
    dup = dup[dup["sample_id"].isin(pos.index)]
    rows = pos.reindex(dup["sample_id"]).to_numpy()
    edges = []
    for _, idx in pd.Series(rows).groupby(dup["group"].to_numpy()):
        idx = idx.to_numpy()
        edges += [(int(a), int(b)) for k, a in enumerate(idx) for b in idx[k + 1 :]]
    return np.array(edges, dtype=np.int64).reshape(-1, 2)


def _pairs_on_the_fly(
    paths: list[str],
    labels: np.ndarray,
    max_distance: int,
    flip_invariant: bool,
    workers: int,
    min_ssim: float,
):
    """Exact copies plus pHash candidates confirmed by SSIM, as in ``ensemblecv dedup``.

    pHash alone is too loose for small, similar images (plain T-shirts at 28 px
    share hashes): unconfirmed, it would report leakage that is not there.
    """
    h = hash_images(paths, workers=workers)
    pairs, _ = find_pairs(
        paths,
        labels,
        h,
        within_class_ssim=min_ssim,
        cross_class_cosine=2.0,
        flip_invariant=flip_invariant,
        max_distance=max_distance,
    )
    return pairs[["i", "j"]].to_numpy(np.int64).reshape(-1, 2)


def leakage_report(
    workspace: str | Path,
    dedup: str | Path | None = None,
    max_distance: int = 6,
    flip_invariant: bool = True,
    workers: int = 0,
    examples: int = 20,
    min_ssim: float = 0.95,
) -> dict:
    """Per fold: validation samples with a duplicate in the training folds.

    Duplicates come from a dedup output (``duplicates.csv``: same group) or,
    without one, from exact content hashes and pHash distance ≤ ``max_distance``
    confirmed by SSIM >= ``min_ssim``, computed now. Returns ``{'folds': [...], 'validation': n, 'leaked': m,
    'fraction': m / n, 'examples': [...]}``.
    """
    ws = Workspace(Path(workspace))
    table = ws.load_table()
    folds = ws.load_folds()
    fold_of = dict(zip(folds["sample_id"], folds["fold"]))
    ids = table.frame["sample_id"].to_numpy()
    fold = np.array([fold_of.get(s, -1) for s in ids])
    if dedup is not None:
        pairs = _pairs_from_dedup(read_duplicates(dedup), ids)
        source = str(dedup)
    else:
        pairs = _pairs_on_the_fly(
            table.frame["path"].tolist(),
            table.frame["label"].to_numpy(),
            max_distance,
            flip_invariant,
            workers,
            min_ssim,
        )
        source = f"exact copies and pHash distance <= {max_distance} with SSIM >= {min_ssim}" + (
            " (flip-invariant)" if flip_invariant else ""
        )
    leaked = np.zeros(len(ids), dtype=bool)
    partner: dict[int, int] = {}
    if len(pairs):
        a, b = pairs[:, 0], pairs[:, 1]
        cross = (fold[a] != fold[b]) & (fold[a] >= 0) & (fold[b] >= 0)
        for x, y in zip(a[cross].tolist(), b[cross].tolist()):
            leaked[x] = leaked[y] = True
            partner.setdefault(x, y)
            partner.setdefault(y, x)
    per_fold = []
    for k in sorted(set(fold[fold >= 0].tolist())):
        val = fold == k
        per_fold.append(
            {"fold": k, "validation": int(val.sum()), "leaked": int((val & leaked).sum())}
        )
    n_val = int((fold >= 0).sum())
    n_leak = int(leaked.sum())
    return {
        "workspace": str(ws.root),
        "duplicates_from": source,
        "folds": per_fold,
        "validation": n_val,
        "leaked": n_leak,
        "fraction": n_leak / n_val if n_val else 0.0,
        "examples": [
            {
                "sample_id": ids[x],
                "fold": int(fold[x]),
                "duplicate": ids[y],
                "duplicate_fold": int(fold[y]),
            }
            for x, y in list(partner.items())[:examples]
        ],
    }
