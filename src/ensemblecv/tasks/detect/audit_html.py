"""``audit.html`` for detection data, in the classification audit's page shell (same CSS, escaping, caps)."""

from __future__ import annotations

from typing import Any

from ...audit.page import _CSS, MAX_BAD_ROWS, MAX_DUPLICATE_ROWS, _capped, _e, _fmt, _img, _table

MAX_BACKGROUND_ROWS = 100


def _cards(audit: dict) -> str:
    coco = audit["box_sizes"]["coco"]
    cards = [
        ("images", audit["n_images"]),
        ("boxes", audit["n_boxes"]),
        ("classes", audit["n_classes"]),
        ("background images", audit["background"]["n"]),
        ("small / medium / large", f"{coco['small']} / {coco['medium']} / {coco['large']}"),
        ("bad labels", audit["bad_labels"]["n"]),
        ("duplicate groups", len(audit["duplicates"])),
    ]
    body = "".join(f'<div class="card"><b>{_e(v)}</b>{_e(k)}</div>' for k, v in cards)
    return f'<h2>Summary</h2><div class="cards">{body}</div>'


def _warnings(audit: dict) -> str:
    items = audit["warnings"]
    if not items:
        return "<h2>Warnings</h2><p>No problems found.</p>"
    lis = "".join(
        f'<li class="{_e(w["level"])}"><b>{_e(w["level"])}</b>: {_e(w["message"])}</li>'
        for w in items
    )
    return f'<h2>Warnings</h2><ul class="warn">{lis}</ul>'


def _classes(audit: dict, images: dict[str, bytes]) -> str:
    per = audit["box_sizes"]["coco_per_class"]
    rows = [
        (i, c, audit["boxes_per_class"][c], audit["images_per_class"][c], per[c]["small"], per[c]["medium"], per[c]["large"])
        for i, c in enumerate(audit["classes"])
    ]  # fmt: skip
    table = _table(
        ["label", "class", "boxes", "images", "small", "medium", "large"],
        rows,
        numeric=(0, 2, 3, 4, 5, 6),
    )
    return "<h2>Classes</h2>" + _img(images, "class_counts", "boxes and images per class") + table


def _geometry(audit: dict, images: dict[str, bytes]) -> str:
    s = audit["box_sizes"]
    rows = [
        (name, _fmt(d["min"]), _fmt(d["median"]), _fmt(d["max"]), _fmt(d["mean"]))
        for name, d in (("box width (px)", s["width"]), ("box height (px)", s["height"]),
                        ("box side / image side", s["relative_side"]), ("boxes per image", audit["boxes_per_image"]),
                        ("image width (px)", audit["image_sizes"]["width"]), ("image height (px)", audit["image_sizes"]["height"]))
        if d
    ]  # fmt: skip
    flags = f'<p class="note">{audit["n_crowd"]} crowd box(es), {audit["n_difficult"]} difficult box(es).</p>'
    return (
        "<h2>Boxes</h2>"
        + _img(images, "box_sizes", "box sizes and aspect ratios")
        + _img(images, "boxes_per_image", "boxes per image")
        + _table(["", "min", "median", "max", "mean"], rows, numeric=(1, 2, 3, 4))
        + flags
    )


def _background(audit: dict) -> str:
    ids = audit["background"]["sample_ids"]
    head = f"<h2>Images without boxes ({len(ids)})</h2>"
    if not ids:
        return head + "<p>Every image has at least one box.</p>"
    shown, note = _capped(ids, MAX_BACKGROUND_ROWS, "background images")
    return (
        head
        + '<p class="note">Background images: used as negatives, not errors.</p>'
        + _table(["sample id"], [(s,) for s in shown])
        + note
    )


def _bad(audit: dict) -> str:
    bad = audit["bad_labels"]["rows"]
    head = f"<h2>Bad labels ({len(bad)})</h2>"
    if not bad:
        return head + "<p>Every label is usable.</p>"
    shown, note = _capped(bad, MAX_BAD_ROWS, "bad labels")
    rows = [
        (b["file"], "" if b["line"] is None else b["line"], b["reason"], b["detail"]) for b in shown
    ]
    return head + _table(["file", "line", "reason", "detail"], rows) + note


def _bad_files(audit: dict) -> str:
    bad = audit["bad_files"]
    if not bad:
        return ""
    shown, note = _capped(bad, MAX_BAD_ROWS, "bad files")
    rows = [(b["path"], b["reason"], b.get("explanation", ""), b.get("detail", "")) for b in shown]
    return (
        f"<h2>Images that do not decode ({len(bad)})</h2>"
        + _table(["path", "reason", "meaning", "detail"], rows)
        + note
    )


def _duplicates(audit: dict) -> str:
    groups = audit["duplicates"]
    head = f"<h2>Exact duplicate images ({len(groups)} group(s))</h2>"
    if not groups:
        return head + "<p>No two images are byte-identical.</p>"
    shown, note = _capped(groups, MAX_DUPLICATE_ROWS, "duplicate groups")
    rows = [
        (
            g["hash"][:12],
            len(g["sample_ids"]),
            ", ".join(map(str, g["n_boxes"])),
            "\n".join(g["sample_ids"]),
        )
        for g in shown
    ]
    return (
        head
        + _table(["hash", "images", "boxes each", "sample ids"], rows, numeric=(1,)).replace(
            "\n", "<br>"
        )
        + note
    )


def render_detection_html(audit: dict[str, Any], images: dict[str, bytes]) -> str:
    sections = [
        f'<h1>Detection dataset audit</h1><p>Source: <span class="path">{_e(audit["source"])}</span> '
        f"(format: {_e(audit['format'])})</p>",
        _cards(audit),
        _warnings(audit),
        _classes(audit, images),
        _geometry(audit, images),
        _background(audit),
        _bad(audit),
        _bad_files(audit),
        _duplicates(audit),
        "<h2>Sample images</h2>" + _img(images, "sample_grid", "sample images with boxes")
        if "sample_grid" in images
        else "",
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Detection audit: {_e(audit['source'])}</title><style>{_CSS}</style></head><body>\n"
        + "\n".join(s for s in sections if s)
        + "\n</body></html>\n"
    )
