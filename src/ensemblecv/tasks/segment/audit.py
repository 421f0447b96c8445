"""``ensemblecv audit`` for segmentation data: what the masks look like before anything trains.

Per class its share of the labelled pixels and the number of images that hold
it; per image the mask coverage (share of pixels that are not background) and
the share at ``ignore_index``; image sizes; the bad masks (with reasons),
images that do not decode, exact duplicate images; and a grid of images with
their masks blended in. Written as ``audit.json`` (complete), ``audit.html``
(the classification audit's page shell) and ``plots/*.png``, plus
``bad_masks.csv`` when there are any — all under ``out_dir``, never next to
the data. The pixel counts come from the read (every mask is decoded there
once); only the grid's images are opened again.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console

from ...audit.compute import _describe
from ...audit.task_outputs import print_audit_summary, write_audit_files
from ...data.samples import SampleTable
from ...data.scan import ScanResult, scan_table
from .read import SegmentationData, read_segmentation, write_bad_masks

#: Classes below this share of the labelled pixels are hard to learn without loss weighting.
TINY_SHARE = 0.001
#: Images with more of their pixels ignored than this are worth a look.
MOSTLY_IGNORED = 0.5


@dataclass
class SegmentationAuditResult:
    audit: dict[str, Any]
    json_path: Path
    html_path: Path
    data: SegmentationData


def _sample_table(data: SegmentationData) -> SampleTable:
    frame = pd.DataFrame(
        {
            "sample_id": data.images["sample_id"],
            "path": data.images["image_path"],
            "label": -1,
            "class_name": "",
            "group": data.images["group"],
        }  # fmt: skip
    )
    return SampleTable(frame, list(data.classes), data.source, data.root)


def _duplicates(data: SegmentationData, hashes: pd.Series) -> list[dict[str, Any]]:
    """Byte-identical images: they leak across folds unless grouped (the workspace groups them)."""
    known = (hashes.astype(str) != "").to_numpy()
    groups = []
    for digest, rows in data.images[known].groupby(hashes[known].to_numpy()):
        if len(rows) > 1:
            groups.append({"hash": str(digest), "sample_ids": sorted(rows["sample_id"])})
    return sorted(groups, key=lambda g: (-len(g["sample_ids"]), g["sample_ids"][0]))


def compute_segment_audit(data: SegmentationData, scan: ScanResult, min_per_class: int = 5) -> dict:
    """The audit numbers of ``data`` as a JSON-serialisable dict (the ``audit.json`` contract)."""
    counts = data.pixel_counts()
    ignored = data.ignored.astype(np.int64)
    area = (data.images["width"] * data.images["height"]).to_numpy(np.int64)
    labelled = counts.sum(1)
    total = max(int(labelled.sum()), 1)
    per_class_px = counts.sum(0)
    images_with = (counts > 0).sum(0)
    background = counts[:, 0] if data.num_classes else np.zeros(len(area), np.int64)
    foreground = (labelled - background) / np.maximum(area, 1)
    ignored_share = ignored / np.maximum(area, 1)
    classes = list(data.classes)
    audit: dict[str, Any] = {
        "task": "segment",
        "source": data.source,
        "format": data.format,
        "root": str(data.root),
        "n_images": int(len(data)),
        "n_classes": len(classes),
        "classes": classes,
        "ignore_index": int(data.ignore_index),
        "min_per_class": int(min_per_class),
        "pixels": {
            "total": int(area.sum()),
            "labelled": int(labelled.sum()),
            "ignored": int(ignored.sum()),
            "ignored_share": float(ignored.sum() / max(int(area.sum()), 1)),
        },
        "pixels_per_class": {c: int(n) for c, n in zip(classes, per_class_px)},
        "pixel_share": {c: float(n / total) for c, n in zip(classes, per_class_px)},
        "images_per_class": {c: int(n) for c, n in zip(classes, images_with)},
        "classes_per_image": _describe(pd.Series((counts > 0).sum(1).astype(float))),
        "coverage": {
            # Share of each image's pixels that are not background (class 0) and not ignored.
            "foreground": _describe(pd.Series(foreground)),
            "ignored": _describe(pd.Series(ignored_share)),
            "n_background_only": int(((labelled - background) == 0).sum()),
            "n_mostly_ignored": int((ignored_share > MOSTLY_IGNORED).sum()),
        },
        "image_sizes": {
            "width": _describe(data.images["width"].astype(float)),
            "height": _describe(data.images["height"].astype(float)),
        },
        "bad_masks": {
            "n": int(len(data.bad)),
            "by_reason": {str(k): int(v) for k, v in data.bad["reason"].value_counts().items()},
            "rows": data.bad[["path", "reason", "detail"]].to_dict("records"),
        },
        "duplicates": _duplicates(data, scan.stats["hash"].fillna("")),
        "bad_files": scan.bad_files().to_dict("records"),
    }
    audit["warnings"] = _warnings(audit)
    return audit


def _warnings(audit: dict) -> list[dict[str, str]]:
    out = []

    def add(level: str, code: str, message: str) -> None:
        out.append({"level": level, "code": code, "message": message})

    empty = [c for c, n in audit["pixels_per_class"].items() if n == 0]
    if empty:
        add("warning", "classes_without_pixels",
            f"{len(empty)} class(es) have no pixel: {', '.join(empty[:10])}.")  # fmt: skip
    k = audit["min_per_class"]
    rare = [f"{c} ({n})" for c, n in audit["images_per_class"].items() if 0 < n < k]
    if rare:
        add("warning", "rare_classes", f"{len(rare)} class(es) are in fewer than {k} images, so not "
            f"every fold can validate them: {', '.join(rare[:10])}.")  # fmt: skip
    tiny = [f"{c} ({s:.2%})" for c, s in audit["pixel_share"].items() if 0 < s < TINY_SHARE]
    if tiny:
        add("info", "tiny_classes", f"{len(tiny)} class(es) cover under {TINY_SHARE:.1%} of the "
            f"labelled pixels (consider Dice/Lovász or class weights): {', '.join(tiny[:10])}.")  # fmt: skip
    if audit["bad_files"]:
        add("error", "bad_files", f"{len(audit['bad_files'])} image(s) do not decode and are excluded "
            "from training: " + ", ".join(b["path"] for b in audit["bad_files"][:5]) + ".")  # fmt: skip
    bad = audit["bad_masks"]
    if bad["n"]:
        reasons = ", ".join(f"{n} {r}" for r, n in bad["by_reason"].items())
        add(
            "warning",
            "bad_masks",
            f"{bad['n']} bad file(s) left out ({reasons}); see bad_masks.csv.",
        )
    cov = audit["coverage"]
    if cov["n_mostly_ignored"]:
        add("warning", "mostly_ignored", f"{cov['n_mostly_ignored']} image(s) have over "
            f"{MOSTLY_IGNORED:.0%} of their pixels at ignore_index {audit['ignore_index']}.")  # fmt: skip
    if audit["n_images"] and cov["n_background_only"] / audit["n_images"] > 0.5:
        add("info", "many_background_only",
            f"{cov['n_background_only']} of {audit['n_images']} images hold only background.")  # fmt: skip
    if audit["duplicates"]:
        add("warning", "duplicates", f"{len(audit['duplicates'])} group(s) of byte-identical images; "
            "the workspace keeps each group in one fold.")  # fmt: skip
    return out


def audit_segmentation(
    data: SegmentationData | str | os.PathLike,
    out_dir: str | os.PathLike,
    min_per_class: int = 5,
    grid_images: int = 24,
    format: str | None = None,
    classes=None,
    ignore_index: int = 255,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> SegmentationAuditResult:
    """Audit a segmentation dataset (a :class:`SegmentationData` or a path) into ``out_dir``.

    Every image is decoded once by the shared scan (``workers`` processes,
    None: up to 8, 0: in this process) for content hashes and undecodable files.
    """
    from . import audit_plots
    from .audit_html import render_segment_html

    t0 = time.perf_counter()
    if not isinstance(data, SegmentationData):
        data = read_segmentation(data, format=format, classes=classes, ignore_index=ignore_index)
    out_dir = Path(out_dir)
    scan = scan_table(_sample_table(data), workers=workers, progress=progress)
    scan_s = time.perf_counter() - t0
    audit = compute_segment_audit(data, scan, min_per_class)
    counts = data.pixel_counts()
    area = np.maximum((data.images["width"] * data.images["height"]).to_numpy(np.float64), 1)
    foreground = (counts.sum(1) - (counts[:, 0] if data.num_classes else 0)) / area
    images = {
        "class_pixels": audit_plots.class_pixels_png(
            list(data.classes),
            np.array(list(audit["pixel_share"].values())),
            np.array(list(audit["images_per_class"].values())),
        ),
        "coverage": audit_plots.coverage_png(foreground, data.ignored / area),
    }
    if grid_images > 0:
        images["sample_grid"], shown = audit_plots.sample_grid_png(data, grid_images)
        audit["sample_grid"] = {"sample_ids": shown}
    extra = {}
    if len(data.bad):
        extra["bad_masks"] = str(write_bad_masks(data.bad, out_dir / "bad_masks.csv"))
    run = {
        "workers": workers,
        "seconds": {"scan_s": round(scan_s, 3), "total_s": round(time.perf_counter() - t0, 3)},
    }
    json_path, html_path = write_audit_files(
        out_dir, audit, images, render_segment_html, extra, run
    )
    return SegmentationAuditResult(audit, json_path, html_path, data)


def summarize_segmentation(
    audit: dict, console: Console | None = None, max_warnings: int = 8
) -> None:
    """The key numbers and warnings on the console, and where the files went."""
    share = audit["pixel_share"]
    top = sorted(share, key=lambda c: -share[c])[:3]
    cov = audit["coverage"]["foreground"] or {}
    rows = [
        ("source", f"{audit['source']} ({audit['format']})"),
        ("images", f"{audit['n_images']:,} ({audit['coverage']['n_background_only']:,} background only)"),
        ("classes", f"{audit['n_classes']} (largest: " + ", ".join(f"{c} {share[c]:.1%}" for c in top) + ")"),
        ("coverage", f"median {cov.get('median', 0):.1%} of an image is not background"),
        ("ignored", f"{audit['pixels']['ignored_share']:.2%} of pixels at {audit['ignore_index']}"),
        ("bad masks", f"{audit['bad_masks']['n']:,}"),
        ("bad files", f"{len(audit['bad_files']):,} image(s) that do not decode"),
        ("duplicates", f"{len(audit['duplicates'])} group(s) of identical images"),
    ]  # fmt: skip
    print_audit_summary("Segmentation dataset audit", rows, audit, console, max_warnings)


__all__ = [
    "SegmentationAuditResult",
    "audit_segmentation",
    "compute_segment_audit",
    "summarize_segmentation",
]
