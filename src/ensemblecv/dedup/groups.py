"""Duplicate pairs → groups, the keep/drop policy, and groups for leakage-safe folds."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.groups import apply_groups, read_duplicates, union_find  # noqa: F401  (re-exported)
from ..data.samples import SampleTable
from ..errors import DataError
from .phash import ImageHashes, hash_images
from .search import cluster_pairs, embed_images, find_pairs

CONFLICT_POLICIES = ("flag", "drop", "keep")
GROUP_COLUMNS = ["group", "kind", "sample_id", "path", "class_name", "similarity", "keep"]


@dataclass
class DedupResult:
    members: pd.DataFrame  # GROUP_COLUMNS, one row per member of a duplicate group
    pairs: pd.DataFrame  # confirmed pairs with sample ids
    stats: dict = field(default_factory=dict)
    hashes: ImageHashes | None = None


def build_groups(table: SampleTable, pairs: pd.DataFrame, conflicts: str = "flag") -> pd.DataFrame:
    """One row per member of each duplicate group of ``pairs`` (row indices into ``table``).

    Exact copies (``method == "exact"``) are grouped transitively; near pairs
    by complete linkage (:func:`~ensemblecv.dedup.search.cluster_pairs`), so
    every two members of a group matched each other and groups never chain.
    A member's ``similarity`` is its best match inside its group.
    """
    frame = table.frame
    cols = GROUP_COLUMNS
    if not len(pairs):
        return pd.DataFrame(columns=cols)
    i, j = pairs["i"].to_numpy(np.int64), pairs["j"].to_numpy(np.int64)
    s = pairs["similarity"].to_numpy(np.float64)
    exact = (
        (pairs["method"] == "exact").to_numpy()
        if "method" in pairs.columns
        else np.zeros(len(pairs), dtype=bool)
    )
    roots = cluster_pairs(len(frame), i[exact], j[exact], i[~exact], j[~exact], s[~exact])
    inside = (roots[i] >= 0) & (roots[i] == roots[j])
    sim = np.full(len(frame), -np.inf)
    np.maximum.at(sim, i[inside], s[inside])
    np.maximum.at(sim, j[inside], s[inside])
    nodes = np.flatnonzero(roots >= 0)
    df = pd.DataFrame(
        {
            "root": roots[nodes],
            "row": nodes,
            "sample_id": frame["sample_id"].to_numpy()[nodes],
            "path": frame["path"].to_numpy()[nodes],
            "class_name": frame["class_name"].to_numpy()[nodes],
            "label": frame["label"].to_numpy()[nodes],
            "similarity": np.round(sim[nodes], 4),
        }
    ).sort_values(["root", "row"])
    n_labels = df.groupby("root")["label"].transform("nunique")
    df["kind"] = np.where(n_labels > 1, "cross_class", "within_class")
    order = {r: k for k, r in enumerate(df["root"].unique())}
    df["group"] = [f"dup{order[r] + 1:05d}" for r in df["root"]]
    df["keep"] = mark_keep(df, conflicts)
    return df[cols].reset_index(drop=True)


def mark_keep(df: pd.DataFrame, conflicts: str) -> np.ndarray:
    """Within-class groups keep their first member; cross-class groups follow ``conflicts``.

    ``flag`` and ``keep`` keep one member per class of a conflict group (flag
    also lists it in the cleaned index); ``drop`` removes the whole group.
    """
    if conflicts not in CONFLICT_POLICIES:
        raise DataError(
            f"Unknown conflict policy {conflicts!r}; choose one of {', '.join(CONFLICT_POLICIES)}."
        )
    first_of_class = ~df.duplicated(["group", "class_name"]).to_numpy()
    cross = (df["kind"] == "cross_class").to_numpy()
    if conflicts == "drop":
        return first_of_class & ~cross
    return first_of_class


def find_duplicates(
    table: SampleTable,
    within_class_ssim: float = 0.95,
    cross_class_cosine: float = 0.99,
    flip_invariant: bool = False,
    max_distance: int = 6,
    resize_invariant: bool = True,
    embedder: str = "none",
    workspace: Path | None = None,
    conflicts: str = "flag",
    workers: int = 0,
    ssim_side: int = 32,
    progress=None,
) -> DedupResult:
    """Exact, pHash and (optionally) embedding duplicates of ``table``, grouped."""
    mark_keep(pd.DataFrame({"group": [], "class_name": [], "kind": []}), conflicts)
    paths = table.frame["path"].tolist()
    hashes = hash_images(paths, workers=workers, progress=progress)
    emb = None
    if embedder and embedder != "none":
        emb = embed_images(paths, embedder, Path(workspace) if workspace else None)
    pairs, stats = find_pairs(
        paths,
        table.frame["label"].to_numpy(),
        hashes,
        within_class_ssim=within_class_ssim,
        cross_class_cosine=cross_class_cosine,
        flip_invariant=flip_invariant,
        max_distance=max_distance,
        embeddings=emb,
        ssim_side=ssim_side,
        resize_invariant=resize_invariant,
    )
    members = build_groups(table, pairs, conflicts)
    sid = table.frame["sample_id"].to_numpy()
    pairs = pairs.assign(
        sample_a=sid[pairs["i"].to_numpy(np.int64)], sample_b=sid[pairs["j"].to_numpy(np.int64)]
    )
    stats.update(
        images=len(table),
        unreadable=int((~hashes.ok).sum()),
        groups=int(members["group"].nunique()),
        within_class_groups=int(members.loc[members.kind == "within_class", "group"].nunique()),
        cross_class_groups=int(members.loc[members.kind == "cross_class", "group"].nunique()),
        duplicate_images=int((~members["keep"]).sum()),
    )
    return DedupResult(members, pairs, stats, hashes)


def cleaned_index(
    table: SampleTable, members: pd.DataFrame, conflicts: str = "flag"
) -> pd.DataFrame:
    """The dataset minus dropped duplicates: ``image_path`` (= sample id), ``class_name``, ``group``, ``flag``."""
    frame = table.frame
    drop = set(members.loc[~members["keep"].astype(bool), "sample_id"])
    group = dict(zip(members["sample_id"], members["group"]))
    conflict = set(members.loc[members["kind"] == "cross_class", "sample_id"])
    out = pd.DataFrame(
        {
            "image_path": frame["sample_id"].to_numpy(),
            "class_name": frame["class_name"].to_numpy(),
            "group": [group.get(s, "") for s in frame["sample_id"]],
            "flag": [
                "label_conflict" if (s in conflict and conflicts == "flag") else ""
                for s in frame["sample_id"]
            ],
        }
    )
    return out[~out["image_path"].isin(drop)].reset_index(drop=True)


def classes_below_k(table: SampleTable, members: pd.DataFrame, k: int) -> dict[str, dict]:
    """Classes with fewer than ``k`` images after cleaning: ``{class: {before, after}}``."""
    before = table.frame["class_name"].value_counts()
    dropped = members.loc[~members["keep"].astype(bool), "class_name"].value_counts()
    out = {}
    for name, n in before.items():
        after = int(n - dropped.get(name, 0))
        if after < k:
            out[str(name)] = {"before": int(n), "after": after}
    return out
