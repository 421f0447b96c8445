"""Turn one scan (a row of statistics per file) into the audit numbers.

Nothing here decodes an image: every figure comes from :class:`ScanResult.stats`,
so the audit of 100k images costs one decode per file (done by the scan) plus a
few vectorised pandas operations. The result is a plain, JSON-serialisable dict
— the contract of ``audit.json`` — that the HTML page, the console summary and
user scripts all read.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from ..data.scan import ScanResult, normalization_stats

#: Images whose grey-level standard deviation is below this (on a 0..1 scale,
#: about 2.5 grey levels) are nearly uniform: blank scans, placeholders, masks.
NEAR_CONSTANT_CONTRAST = 0.01

#: Above this max/min class ratio, plain accuracy and unweighted losses mislead.
IMBALANCE_WARNING = 10.0

#: Bins of the aspect-ratio histogram stored in audit.json (log-spaced).
ASPECT_BINS = 30


def compute_audit(scan: ScanResult, min_per_class: int = 5) -> dict[str, Any]:
    """The audit of ``scan`` as a JSON-serialisable dict.

    Class counts come in two flavours: ``class_counts`` counts every listed file,
    ``usable_class_counts`` only the files that decode. ``small_classes`` and
    ``imbalance_ratio`` use the usable counts, because bad files are excluded
    before folds are made — a class of 5 files with 2 broken ones fails 5-fold
    splitting just like a class of 3.

    Per-image statistics (brightness, mean/std) are those of the scan, i.e. of a
    copy no larger than ``STATS_SIDE`` pixels per side.
    """
    stats = scan.stats
    ok = scan.ok
    good = stats.loc[ok]
    audit: dict[str, Any] = {
        "source": scan.table.source,
        "n_images": len(stats),
        "n_ok": int(ok.sum()),
        "n_bad": int((~ok).sum()),
        "labelled": scan.table.labelled,
        "min_per_class": int(min_per_class),
    }
    audit.update(_class_section(scan, min_per_class))
    audit["sizes"] = _size_section(good)
    audit["aspect_ratio"] = _aspect_section(good)
    audit["modes"] = _value_counts(good["mode"])
    audit["channels"] = _channel_counts(audit["modes"])
    audit["formats"] = _value_counts(good["format"])
    mismatch = good["format_mismatch"].to_numpy(dtype=bool)
    audit["format_mismatch"] = scan.table.frame.loc[ok, "path"].to_numpy()[mismatch].tolist()
    audit["brightness"] = _describe(good["brightness"])
    audit["contrast"] = _describe(good["contrast"])
    if audit["contrast"] is not None:
        audit["contrast"]["n_near_constant"] = int(
            (good["contrast"] < NEAR_CONSTANT_CONTRAST).sum()
        )
    audit["normalization"] = _normalization(scan)
    audit["duplicates"] = _duplicates(scan)
    audit["bad_files"] = _records(scan.bad_files())
    audit["ignored_files"] = [{"path": str(p), "reason": str(r)} for p, r in scan.table.ignored]
    audit["warnings"] = _warnings(audit)
    return audit


def _class_section(scan: ScanResult, min_per_class: int) -> dict[str, Any]:
    table = scan.table
    labels = table.frame["label"].to_numpy()
    n = len(table.classes)
    total = np.bincount(labels[labels >= 0], minlength=n)
    usable_labels = labels[(labels >= 0) & scan.ok]
    usable = np.bincount(usable_labels, minlength=n)
    nonempty = usable[usable > 0]
    ratio = float(nonempty.max() / nonempty.min()) if len(nonempty) else None
    return {
        "classes": list(table.classes),
        "n_classes": n,
        "n_unlabelled": int((labels < 0).sum()),
        "class_counts": {c: int(k) for c, k in zip(table.classes, total, strict=True)},
        "usable_class_counts": {c: int(k) for c, k in zip(table.classes, usable, strict=True)},
        "small_classes": [
            c for c, k in zip(table.classes, usable, strict=True) if k < min_per_class
        ],
        "imbalance_ratio": None if ratio is None else round(ratio, 3),
    }


def _describe(values: pd.Series, percentiles: tuple[float, ...] = ()) -> dict[str, Any] | None:
    """mean/std/min/median/max (+ ``p<q>`` percentiles) of ``values``; None when empty."""
    arr = values.to_numpy(dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    if not len(arr):
        return None
    out = {
        "mean": float(arr.mean()),
        "std": float(arr.std()),
        "min": float(arr.min()),
        "median": float(np.median(arr)),
        "max": float(arr.max()),
    }
    for q in percentiles:
        out[f"p{q:g}"] = float(np.percentile(arr, q))
    return {k: round(v, 6) for k, v in out.items()}


def _size_section(good: pd.DataFrame) -> dict[str, Any] | None:
    if good.empty:
        return None
    sizes = pd.DataFrame({"width": good["width"].astype(int), "height": good["height"].astype(int)})
    common = sizes.value_counts().head(10)
    return {
        "width": _int_stats(sizes["width"]),
        "height": _int_stats(sizes["height"]),
        "n_distinct": int(len(sizes.drop_duplicates())),
        "most_common": [
            {"width": int(w), "height": int(h), "count": int(k)} for (w, h), k in common.items()
        ],
    }


def _int_stats(values: pd.Series) -> dict[str, float]:
    return {"min": int(values.min()), "median": float(values.median()), "max": int(values.max())}


def _aspect_section(good: pd.DataFrame) -> dict[str, Any] | None:
    """Width / height: >1 is landscape. The histogram is log-spaced so 1:4 and 4:1 look alike."""
    if good.empty:
        return None
    ratio = good["width"].to_numpy(dtype=np.float64) / good["height"].to_numpy(dtype=np.float64)
    out = _describe(pd.Series(ratio), percentiles=(1, 5, 95, 99))
    lo, hi = float(ratio.min()), float(ratio.max())
    if math.isclose(lo, hi):
        lo, hi = lo / 1.05, hi * 1.05  # a single ratio still gets a visible bin
    edges = np.geomspace(lo, hi, ASPECT_BINS + 1)
    counts, _ = np.histogram(ratio, bins=edges)
    out["n_landscape"] = int((ratio > 1.0 + 1e-9).sum())
    out["n_portrait"] = int((ratio < 1.0 - 1e-9).sum())
    out["n_square"] = int(len(ratio) - out["n_landscape"] - out["n_portrait"])
    out["histogram"] = {"edges": [round(float(e), 6) for e in edges], "counts": counts.tolist()}
    return out


def _value_counts(values: pd.Series) -> dict[str, int]:
    counts = values.astype(str).replace("", "unknown").value_counts()
    return {str(k): int(v) for k, v in counts.items()}


def _channel_counts(modes: dict[str, int]) -> dict[str, int]:
    """Images per channel count, from the PIL mode (``RGBA`` → 4, ``P`` → 1, ``L`` → 1)."""
    out: dict[str, int] = {}
    for mode, count in modes.items():
        try:
            key = str(Image.getmodebands(mode))
        except (KeyError, ValueError):
            key = "unknown"
        out[key] = out.get(key, 0) + count
    return dict(sorted(out.items()))


def _normalization(scan: ScanResult) -> dict[str, Any] | None:
    """Dataset mean/std on a 0..1 scale, each image weighted equally; None without images.

    Delegates to :func:`normalization_stats` so the audit suggests exactly the
    values that ``data.normalize: dataset`` will use in training.
    """
    if not scan.ok.any():
        return None
    return {**normalization_stats(scan.stats), "weighting": "per image"}


def _duplicates(scan: ScanResult) -> dict[str, Any]:
    """Byte-identical files grouped by content hash.

    Within one class they leak between folds (the fold split groups them);
    across classes the same image carries two labels, which is label noise.
    """
    frame = scan.table.frame
    hashes = scan.stats["hash"].astype(str)
    keep = scan.ok & (hashes != "").to_numpy()
    dup = keep & hashes.duplicated(keep=False).to_numpy()
    sub = pd.DataFrame(
        {
            "hash": hashes.to_numpy()[dup],
            "path": frame["path"].to_numpy()[dup],
            "class_name": frame["class_name"].to_numpy()[dup],
            "label": frame["label"].to_numpy()[dup],
        }
    ).sort_values(["hash", "label", "path"], kind="stable")
    within: list[dict[str, Any]] = []
    cross: list[dict[str, Any]] = []
    for digest, rows in sub.groupby("hash", sort=False):
        group = {
            "hash": str(digest),
            "paths": rows["path"].astype(str).tolist(),
            "classes": [None if pd.isna(c) else str(c) for c in rows["class_name"]],
        }
        (cross if rows["label"].nunique() > 1 else within).append(group)
    for groups in (within, cross):
        groups.sort(key=lambda g: (-len(g["paths"]), g["paths"][0]))
    return {
        "within_class": within,
        "cross_class": cross,
        "n_within_class_groups": len(within),
        "n_cross_class_groups": len(cross),
        "n_within_class_files": sum(len(g["paths"]) for g in within),
        "n_cross_class_files": sum(len(g["paths"]) for g in cross),
        "n_redundant_files": sum(len(g["paths"]) - 1 for g in within + cross),
    }


def _records(frame: pd.DataFrame) -> list[dict[str, str]]:
    return [
        {col: "" if pd.isna(value) else str(value) for col, value in row.items()}
        for row in frame.to_dict("records")
    ]


def _warnings(audit: dict[str, Any]) -> list[dict[str, str]]:
    """What a user should look at, most severe first: ``{level, code, message}``."""
    out: list[dict[str, str]] = []

    def add(level: str, code: str, message: str) -> None:
        out.append({"level": level, "code": code, "message": message})

    if audit["n_bad"]:
        reasons = pd.Series([b["reason"] for b in audit["bad_files"]]).value_counts()
        detail = ", ".join(f"{k}: {v}" for k, v in reasons.items())
        add(
            "error",
            "bad_files",
            f"{audit['n_bad']} file(s) cannot be decoded ({detail}); training cannot use them.",
        )
    dup = audit["duplicates"]
    if dup["n_cross_class_groups"]:
        add(
            "error",
            "cross_class_duplicates",
            f"{dup['n_cross_class_groups']} image(s) appear in more than one class "
            f"({dup['n_cross_class_files']} files): the same content has different labels.",
        )
    small, k = audit["small_classes"], audit["min_per_class"]
    if small:
        shown = ", ".join(small[:10]) + (f" and {len(small) - 10} more" if len(small) > 10 else "")
        add(
            "warning",
            "small_classes",
            f"{len(small)} class(es) have fewer than {k} usable images and will fail "
            f"{k}-fold stratified splitting: {shown}.",
        )
    ratio = audit["imbalance_ratio"]
    if ratio is not None and ratio >= IMBALANCE_WARNING:
        add(
            "warning",
            "imbalance",
            f"Largest/smallest class ratio is {ratio:g}; prefer balanced "
            "accuracy or macro-F1 and consider class weights.",
        )
    if dup["n_within_class_groups"]:
        add(
            "warning",
            "within_class_duplicates",
            f"{dup['n_within_class_groups']} group(s) of identical files within a class "
            f"({dup['n_within_class_files']} files); each group must stay in one fold, "
            "or scores leak.",
        )
    _minor_warnings(audit, add)
    return out


def _minor_warnings(audit: dict[str, Any], add) -> None:
    if audit["format_mismatch"]:
        add(
            "warning",
            "format_mismatch",
            f"{len(audit['format_mismatch'])} file(s) have an "
            "extension that does not match their content (e.g. a PNG named .jpg).",
        )
    contrast = audit["contrast"]
    if contrast and contrast["n_near_constant"]:
        add(
            "warning",
            "near_constant",
            f"{contrast['n_near_constant']} image(s) are nearly uniform (blank?).",
        )
    if len(audit["channels"]) > 1:
        add(
            "info",
            "mixed_modes",
            "Images come in several colour modes ("
            + ", ".join(audit["modes"])
            + "); all are converted to data.channels when loaded.",
        )
    if audit["ignored_files"]:
        add(
            "info",
            "ignored_files",
            f"{len(audit['ignored_files'])} file(s) or folder(s) were "
            "ignored (not images, hidden, or outside class folders).",
        )
