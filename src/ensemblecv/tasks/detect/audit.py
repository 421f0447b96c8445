"""``ensemblecv audit`` for detection data: what the boxes look like before anything trains.

Counts (boxes and images per class, boxes per image, background images), box
geometry (sizes with COCO's small/medium/large split, aspect ratios, size
relative to the image), the bad labels, images that do not decode, exact duplicate images and a grid of
samples with their boxes drawn. Written as ``audit.json`` (complete),
``audit.html`` (the same page shell as the classification audit) and
``plots/*.png``, plus ``bad_labels.csv`` when there are any — all under
``out_dir``, never next to the data.
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
from ...data.scan import ScanResult, scan_table
from . import audit_plots
from .audit_html import render_detection_html
from .read import DetectionData, read_detection, write_bad_labels

#: Above this share of background images, sampling and loss weighting deserve a thought.
BACKGROUND_WARNING = 0.5
#: Boxes narrower or lower than this (pixels) are usually labelling slips.
TINY_BOX = 2.0
MAX_LISTED = 200


@dataclass
class DetectionAuditResult:
    audit: dict[str, Any]
    json_path: Path
    html_path: Path
    data: DetectionData


def _size_counts(area: np.ndarray) -> dict[str, int]:
    return {
        "small": int((area < audit_plots.SMALL).sum()),
        "medium": int(((area >= audit_plots.SMALL) & (area < audit_plots.MEDIUM)).sum()),
        "large": int((area >= audit_plots.MEDIUM).sum()),
    }


def _duplicates(
    images: pd.DataFrame, boxes: pd.DataFrame, hashes: pd.Series
) -> list[dict[str, Any]]:
    """Byte-identical images: they leak across folds unless grouped, and often disagree in boxes."""
    n_boxes = boxes.groupby("sample_id").size()
    groups = []
    known = (hashes.astype(str) != "").to_numpy()
    for digest, rows in images[known].groupby(hashes[known].to_numpy()):
        if len(rows) < 2:
            continue
        ids = sorted(rows["sample_id"])
        counts = [int(n_boxes.get(s, 0)) for s in ids]
        groups.append({"hash": str(digest), "sample_ids": ids, "n_boxes": counts,
                       "same_box_count": len(set(counts)) == 1})  # fmt: skip
    return sorted(groups, key=lambda g: (-len(g["sample_ids"]), g["sample_ids"][0]))


def compute_detection_audit(
    data: DetectionData, scan: ScanResult, min_per_class: int = 5
) -> dict[str, Any]:
    """The audit numbers of ``data`` as a JSON-serialisable dict (the ``audit.json`` contract).

    ``scan`` is the decode pass over ``data.sample_table()`` (same row order):
    it supplies the content hashes and the files that do not decode, which a
    header read cannot see.
    """
    images, boxes, classes = data.images, data.boxes, data.classes
    w = (boxes["x2"] - boxes["x1"]).to_numpy(dtype=np.float64)
    h = (boxes["y2"] - boxes["y1"]).to_numpy(dtype=np.float64)
    area = w * h
    size_of = images.set_index("sample_id")[["width", "height"]]
    image_area = (
        (size_of["width"] * size_of["height"]).reindex(boxes["sample_id"]).to_numpy(np.float64)
    )
    per_image = boxes.groupby("sample_id").size().reindex(images["sample_id"], fill_value=0)
    labels = boxes["label"].to_numpy()
    boxes_per_class = (
        np.bincount(labels, minlength=len(classes)) if len(boxes) else np.zeros(len(classes), int)
    )
    images_per_class = (
        boxes.drop_duplicates(["sample_id", "label"])["label"]
        .value_counts()
        .reindex(range(len(classes)), fill_value=0)
    )
    background = sorted(data.background())
    by_class_size = {name: _size_counts(area[labels == i]) for i, name in enumerate(classes)}
    audit: dict[str, Any] = {
        "task": "detect",
        "source": data.source,
        "format": data.format,
        "root": str(data.root),
        "n_images": int(len(images)),
        "n_boxes": int(len(boxes)),
        "n_classes": len(classes),
        "classes": list(classes),
        "min_per_class": int(min_per_class),
        "boxes_per_class": {c: int(n) for c, n in zip(classes, boxes_per_class)},
        "images_per_class": {c: int(images_per_class.iloc[i]) for i, c in enumerate(classes)},
        "boxes_per_image": {
            **(_describe(per_image.astype(float)) or {}),
            "histogram": {str(k): int(v) for k, v in per_image.value_counts().sort_index().items()},
        },
        "background": {"n": len(background), "sample_ids": background},
        "box_sizes": {
            "width": _describe(pd.Series(w)),
            "height": _describe(pd.Series(h)),
            "area": _describe(pd.Series(area)),
            "relative_side": _describe(pd.Series(np.sqrt(area / np.maximum(image_area, 1.0)))),
            "coco": _size_counts(area),
            "coco_per_class": by_class_size,
            "n_tiny": int(((w < TINY_BOX) | (h < TINY_BOX)).sum()),
        },
        "box_aspect_ratio": _describe(pd.Series(w / np.where(h > 0, h, 1.0)), (5, 95)),
        "image_sizes": {
            "width": _describe(images["width"].astype(float)),
            "height": _describe(images["height"].astype(float)),
        },
        "n_crowd": int(boxes["iscrowd"].sum()),
        "n_difficult": int(boxes["difficult"].sum()),
        "bad_labels": {
            "n": int(len(data.bad)),
            "by_reason": {str(k): int(v) for k, v in data.bad["reason"].value_counts().items()},
            "rows": [
                {"file": f, "line": None if pd.isna(line) else int(line), "reason": r, "detail": d}
                for f, line, r, d in data.bad[["file", "line", "reason", "detail"]].itertuples(
                    index=False
                )
            ],
        },
        "duplicates": _duplicates(images, boxes, scan.stats["hash"].fillna("")),
        "bad_files": scan.bad_files().to_dict("records"),
    }
    audit["warnings"] = _warnings(audit)
    return audit


def _warnings(audit: dict) -> list[dict[str, str]]:
    out = []

    def add(level: str, code: str, message: str) -> None:
        out.append({"level": level, "code": code, "message": message})

    empty = [c for c, n in audit["boxes_per_class"].items() if n == 0]
    if empty:
        add(
            "warning",
            "classes_without_boxes",
            f"{len(empty)} class(es) have no box: {', '.join(empty[:10])}.",
        )
    k = audit["min_per_class"]
    rare = [f"{c} ({n})" for c, n in audit["images_per_class"].items() if 0 < n < k]
    if rare:
        add("warning", "rare_classes", f"{len(rare)} class(es) are in fewer than {k} images, so not every "
            f"fold can validate them: {', '.join(rare[:10])}.")  # fmt: skip
    if audit["bad_files"]:
        add("error", "bad_files", f"{len(audit['bad_files'])} image(s) do not decode and are excluded "
            "from training: " + ", ".join(b["path"] for b in audit["bad_files"][:5]) + ".")  # fmt: skip
    bad = audit["bad_labels"]
    if bad["n"]:
        reasons = ", ".join(f"{n} {r}" for r, n in bad["by_reason"].items())
        add("warning", "bad_labels", f"{bad['n']} bad label(s) ({reasons}); see bad_labels.csv.")
    n_bg = audit["background"]["n"]
    if audit["n_images"] and n_bg / audit["n_images"] > BACKGROUND_WARNING:
        add(
            "info",
            "many_background",
            f"{n_bg} of {audit['n_images']} images have no box (background).",
        )
    dup = audit["duplicates"]
    if dup:
        differ = sum(not g["same_box_count"] for g in dup)
        add("warning", "duplicates", f"{len(dup)} group(s) of byte-identical images"
            + (f", {differ} with different box counts" if differ else "")
            + "; keep each group in one fold (detection_folds with content_groups).")  # fmt: skip
    sizes = audit["box_sizes"]
    if sizes["n_tiny"]:
        add(
            "warning",
            "tiny_boxes",
            f"{sizes['n_tiny']} box(es) are under {TINY_BOX:g} px wide or high.",
        )
    coco = sizes["coco"]
    if audit["n_boxes"] and coco["small"] / audit["n_boxes"] > 0.5:
        add("info", "mostly_small", f"{coco['small']} of {audit['n_boxes']} boxes are COCO-small (< 32² px): "
            "a larger input size or a detector with a high-resolution feature level helps.")  # fmt: skip
    return out


def audit_detection(
    data: DetectionData | str | os.PathLike,
    out_dir: str | os.PathLike,
    min_per_class: int = 5,
    grid_images: int = 24,
    format: str | None = None,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> DetectionAuditResult:
    """Audit a detection dataset (a :class:`DetectionData` or a path) into ``out_dir``.

    Every image is decoded once by the shared scan (``workers`` processes,
    None: up to 8, 0: in this process; ``progress(n)`` after each chunk), for
    content hashes and undecodable files; only the grid's images are opened again.
    """
    t0 = time.perf_counter()
    if not isinstance(data, DetectionData):
        data = read_detection(data, format=format)
    out_dir = Path(out_dir)
    scan = scan_table(data.sample_table(), workers=workers, progress=progress)
    scan_s = time.perf_counter() - t0
    audit = compute_detection_audit(data, scan, min_per_class)
    b = data.boxes
    per_image = b.groupby("sample_id").size().reindex(data.images["sample_id"], fill_value=0)
    images = {
        "class_counts": audit_plots.class_bars_png(
            audit["boxes_per_class"], audit["images_per_class"]
        ),
        "boxes_per_image": audit_plots.boxes_per_image_png(per_image.to_numpy()),
        "box_sizes": audit_plots.box_sizes_png(
            (b["x2"] - b["x1"]).to_numpy(), (b["y2"] - b["y1"]).to_numpy()
        ),
    }
    if grid_images > 0:
        images["sample_grid"], shown = audit_plots.sample_grid_png(
            data.images, b, data.classes, grid_images
        )
        audit["sample_grid"] = {"sample_ids": shown}
    extra = {}
    if len(data.bad):
        extra["bad_labels"] = str(write_bad_labels(data.bad, out_dir / "bad_labels.csv"))
    run = {
        "workers": workers,
        "seconds": {
            "read_and_scan_s": round(scan_s, 3),
            "total_s": round(time.perf_counter() - t0, 3),
        },
        "images_per_s": round(len(data.images) / max(scan_s, 1e-9), 1),
    }
    json_path, html_path = write_audit_files(
        out_dir, audit, images, render_detection_html, extra, run
    )
    return DetectionAuditResult(audit, json_path, html_path, data)


def summarize_detection(audit: dict, console: Console | None = None, max_warnings: int = 8) -> None:
    """The key numbers and warnings on the console, and where the files went."""
    coco = audit["box_sizes"]["coco"]
    counts = list(audit["boxes_per_class"].values())
    rows = [
        ("source", f"{audit['source']} ({audit['format']})"),
        ("images", f"{audit['n_images']:,} ({audit['background']['n']:,} without boxes)"),
        ("boxes", f"{audit['n_boxes']:,} (small {coco['small']:,}, medium {coco['medium']:,}, large {coco['large']:,})"),
        ("classes", f"{audit['n_classes']}" + (f" ({min(counts):,} .. {max(counts):,} boxes per class)" if counts else "")),
        ("bad labels", f"{audit['bad_labels']['n']:,}"),
        ("bad files", f"{len(audit['bad_files']):,} image(s) that do not decode"),
        ("duplicates", f"{len(audit['duplicates'])} group(s) of identical images"),
    ]  # fmt: skip
    print_audit_summary("Detection dataset audit", rows, audit, console, max_warnings)


__all__ = [
    "DetectionAuditResult",
    "audit_detection",
    "compute_detection_audit",
    "summarize_detection",
]
