"""``audit.html`` for segmentation data, in the classification audit's page shell (same CSS, escaping, caps)."""

from __future__ import annotations

from typing import Any

from ...audit.html import _CSS, MAX_BAD_ROWS, MAX_DUPLICATE_ROWS, _capped, _e, _fmt, _img, _table
from ..detect.audit_html import _bad_files, _warnings


def _cards(audit: dict) -> str:
    cov = audit["coverage"]["foreground"] or {}
    cards = [
        ("images", audit["n_images"]),
        ("classes", audit["n_classes"]),
        ("median coverage", f"{cov.get('median', 0):.1%}"),
        ("ignored pixels", f"{audit['pixels']['ignored_share']:.2%}"),
        ("background-only images", audit["coverage"]["n_background_only"]),
        ("bad masks", audit["bad_masks"]["n"]),
        ("duplicate groups", len(audit["duplicates"])),
    ]
    body = "".join(f'<div class="card"><b>{_e(v)}</b>{_e(k)}</div>' for k, v in cards)
    return f'<h2>Summary</h2><div class="cards">{body}</div>'


def _classes(audit: dict, images: dict[str, bytes]) -> str:
    rows = [
        (i, c, audit["pixels_per_class"][c], f"{audit['pixel_share'][c]:.3%}", audit["images_per_class"][c])
        for i, c in enumerate(audit["classes"])
    ]  # fmt: skip
    table = _table(
        ["value", "class", "pixels", "pixel share", "images"], rows, numeric=(0, 2, 3, 4)
    )
    note = (
        f'<p class="note">Shares are of the labelled pixels; {audit["pixels"]["ignored"]:,} pixels '
        f"are at ignore_index {audit['ignore_index']} and never scored.</p>"
    )
    return (
        "<h2>Classes</h2>"
        + _img(images, "class_pixels", "pixels and images per class")
        + table
        + note
    )


def _coverage(audit: dict, images: dict[str, bytes]) -> str:
    cov = audit["coverage"]
    rows = [
        (name, _fmt(d["min"]), _fmt(d["median"]), _fmt(d["max"]), _fmt(d["mean"]))
        for name, d in (("non-background share", cov["foreground"]), ("ignored share", cov["ignored"]),
                        ("classes per image", audit["classes_per_image"]),
                        ("image width (px)", audit["image_sizes"]["width"]),
                        ("image height (px)", audit["image_sizes"]["height"]))
        if d
    ]  # fmt: skip
    return (
        "<h2>Mask coverage</h2>"
        + _img(images, "coverage", "mask coverage and ignored pixels per image")
        + _table(["", "min", "median", "max", "mean"], rows, numeric=(1, 2, 3, 4))
    )


def _bad(audit: dict) -> str:
    bad = audit["bad_masks"]["rows"]
    head = f"<h2>Bad masks ({len(bad)})</h2>"
    if not bad:
        return head + "<p>Every image has a usable mask.</p>"
    shown, note = _capped(bad, MAX_BAD_ROWS, "bad masks")
    return (
        head
        + _table(
            ["path", "reason", "detail"], [(b["path"], b["reason"], b["detail"]) for b in shown]
        )
        + note
    )


def _duplicates(audit: dict) -> str:
    groups = audit["duplicates"]
    head = f"<h2>Exact duplicate images ({len(groups)} group(s))</h2>"
    if not groups:
        return head + "<p>No two images are byte-identical.</p>"
    shown, note = _capped(groups, MAX_DUPLICATE_ROWS, "duplicate groups")
    rows = [(g["hash"][:12], len(g["sample_ids"]), "\n".join(g["sample_ids"])) for g in shown]
    table = _table(["hash", "images", "sample ids"], rows, numeric=(1,)).replace("\n", "<br>")
    return head + table + note


def render_segment_html(audit: dict[str, Any], images: dict[str, bytes]) -> str:
    sections = [
        f'<h1>Segmentation dataset audit</h1><p>Source: <span class="path">{_e(audit["source"])}</span> '
        f"(format: {_e(audit['format'])})</p>",
        _cards(audit),
        _warnings(audit),
        _classes(audit, images),
        _coverage(audit, images),
        _bad(audit),
        _bad_files(audit),
        _duplicates(audit),
        "<h2>Sample images</h2>" + _img(images, "sample_grid", "sample images with their masks")
        if "sample_grid" in images
        else "",
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Segmentation audit: {_e(audit['source'])}</title><style>{_CSS}</style></head><body>\n"
        + "\n".join(s for s in sections if s)
        + "\n</body></html>\n"
    )
