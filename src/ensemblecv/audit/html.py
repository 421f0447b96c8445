"""``audit.html``: one self-contained page a user can open, mail or attach to an issue.

Plots are embedded as base64 PNG, styles are inline, there is no script and no
external resource. Every string that comes from the dataset (paths, class
names, decoder messages) goes through :func:`html.escape`: file names are user
data and may contain ``<``, ``&`` or quotes. Long lists are capped with a note
pointing to ``audit.json``, which always has them in full.
"""

from __future__ import annotations

from .page import (  # noqa: F401  (task audits build their pages from these too)
    _CSS,
    FOLD_CLASS_TABLE,
    MAX_BAD_ROWS,
    MAX_DUPLICATE_ROWS,
    MAX_IGNORED_ROWS,
    _capped,
    _e,
    _fmt,
    _img,
    _table,
)


def _summary(audit: dict) -> str:
    dup = audit["duplicates"]
    cards = [
        ("images", audit["n_images"]),
        ("decodable", audit["n_ok"]),
        ("bad files", audit["n_bad"]),
        ("classes", audit["n_classes"]),
        ("imbalance (max/min)", _fmt(audit["imbalance_ratio"])),
        ("duplicate groups", dup["n_within_class_groups"] + dup["n_cross_class_groups"]),
    ]
    if audit.get("n_unlabelled"):
        cards.append(("unlabelled", audit["n_unlabelled"]))
    body = "".join(f'<div class="card"><b>{_e(v)}</b>{_e(k)}</div>' for k, v in cards)
    return f'<h2>Summary</h2><div class="cards">{body}</div>'


def _warnings(audit: dict) -> str:
    items = audit.get("warnings", [])
    if not items:
        return "<h2>Warnings</h2><p>No problems found.</p>"
    lis = "".join(
        f'<li class="{_e(w["level"])}"><b>{_e(w["level"])}</b>: {_e(w["message"])}</li>'
        for w in items
    )
    return f'<h2>Warnings</h2><ul class="warn">{lis}</ul>'


def _classes(audit: dict, images: dict[str, bytes]) -> str:
    if not audit["classes"]:
        return "<h2>Classes</h2><p>The data is unlabelled.</p>"
    small = set(audit["small_classes"])
    usable = audit["usable_class_counts"]
    rows = [
        (i, c, n, usable[c], "fewer than K" if c in small else "")
        for i, (c, n) in enumerate(audit["class_counts"].items())
    ]
    rows.sort(key=lambda r: (-r[2], r[0]))
    table = _table(
        ["index", "class", "files", "usable", f"K = {audit['min_per_class']}"],
        rows,
        numeric=(0, 2, 3),
    )
    if len(rows) > FOLD_CLASS_TABLE:
        table = f"<details><summary>Table of all {len(rows)} classes</summary>{table}</details>"
    note = ""
    if small:
        note = (
            f'<p class="warning">{len(small)} class(es) with fewer than '
            f"{audit['min_per_class']} usable images: {_e(', '.join(audit['small_classes']))}</p>"
        )
    return (
        "<h2>Images per class</h2>"
        + _img(images, "class_counts", "images per class")
        + note
        + table
    )


def _sizes(audit: dict, images: dict[str, bytes]) -> str:
    sizes, ar = audit["sizes"], audit["aspect_ratio"]
    if sizes is None:
        return "<h2>Sizes</h2><p>No decodable images.</p>"
    dims = _table(
        ["", "min", "median", "max"],
        [
            (
                "width (px)",
                sizes["width"]["min"],
                _fmt(sizes["width"]["median"]),
                sizes["width"]["max"],
            ),
            (
                "height (px)",
                sizes["height"]["min"],
                _fmt(sizes["height"]["median"]),
                sizes["height"]["max"],
            ),
            ("aspect ratio (w/h)", _fmt(ar["min"]), _fmt(ar["median"]), _fmt(ar["max"])),
        ],
        numeric=(1, 2, 3),
    )
    common = _table(
        ["width × height", "images"],
        [(f"{s['width']} × {s['height']}", s["count"]) for s in sizes["most_common"]],
        numeric=(1,),
    )
    shape = (
        f"<p>{ar['n_landscape']} landscape, {ar['n_portrait']} portrait, {ar['n_square']} "
        f"square; {sizes['n_distinct']} distinct sizes.</p>"
    )
    return (
        "<h2>Sizes and aspect ratios</h2>"
        + dims
        + shape
        + "<h3>Most common sizes</h3>"
        + common
        + _img(images, "size_scatter", "width vs height")
        + _img(images, "aspect_ratio", "aspect ratio histogram")
    )


def _modes(audit: dict) -> str:
    def counts(title: str, data: dict) -> str:
        return _table([title, "images"], sorted(data.items(), key=lambda kv: -kv[1]), numeric=(1,))

    mismatch = audit["format_mismatch"]
    shown, note = _capped(mismatch, MAX_BAD_ROWS, "files")
    extra = ""
    if mismatch:
        extra = (
            f"<h3>Extension does not match content ({len(mismatch)})</h3>"
            + _table(["path"], [(p,) for p in shown])
            + note
        )
    return (
        '<h2>Colour modes, channels and formats</h2><div class="cards">'
        + counts("PIL mode", audit["modes"])
        + counts("channels", audit["channels"])
        + counts("format", audit["formats"])
        + "</div>"
        + extra
    )


def _pixels(audit: dict, images: dict[str, bytes]) -> str:
    rows = []
    for name in ("brightness", "contrast"):
        d = audit[name]
        if d:
            rows.append((name, *(_fmt(d[k]) for k in ("mean", "std", "min", "median", "max"))))
    table = _table(
        ["(0..1 scale)", "mean", "std", "min", "median", "max"], rows, numeric=(1, 2, 3, 4, 5)
    )
    norm = audit["normalization"]
    norm_html = "<p>No decodable images.</p>"
    if norm:
        fmt = lambda v: "[" + ", ".join(f"{x:.4f}" for x in v) + "]"  # noqa: E731
        norm_html = _table(
            ["channels", "mean", "std"],
            [
                ("1 (gray)", fmt(norm["gray"]["mean"]), fmt(norm["gray"]["std"])),
                ("3 (RGB)", fmt(norm["rgb"]["mean"]), fmt(norm["rgb"]["std"])),
            ],
        ) + (
            '<p class="note">Each image weighted equally; use these as '
            "<code>data.normalize</code> for models trained from scratch.</p>"
        )
    return (
        "<h2>Brightness and contrast</h2>"
        + table
        + _img(images, "brightness_contrast", "brightness and contrast histograms")
        + "<h2>Normalisation (dataset mean / std)</h2>"
        + norm_html
    )


def _duplicates(audit: dict) -> str:
    dup = audit["duplicates"]
    parts = ["<h2>Exact duplicates (same file content)</h2>"]
    for key, title, why in (
        ("cross_class", "Across classes", "the same image carries different labels"),
        (
            "within_class",
            "Within a class",
            "each group must stay in one fold, or validation scores leak",
        ),
    ):
        groups = dup[key]
        parts.append(f"<h3>{title}: {len(groups)} group(s)</h3>")
        if not groups:
            continue
        parts.append(f'<p class="note">{_e(why)}.</p>')
        shown, note = _capped(groups, MAX_DUPLICATE_ROWS, "groups")
        rows = [
            (
                g["hash"][:12],
                len(g["paths"]),
                ", ".join(dict.fromkeys(map(str, g["classes"]))),
                "\n".join(g["paths"]),
            )
            for g in shown
        ]
        parts.append(
            _table(["hash", "files", "classes", "paths"], rows, numeric=(1,)).replace("\n", "<br>")
            + note
        )
    return "".join(parts)


def _bad_files(audit: dict) -> str:
    bad = audit["bad_files"]
    head = f"<h2>Unreadable files ({len(bad)})</h2>"
    if not bad:
        return head + "<p>Every file decodes.</p>"
    shown, note = _capped(bad, MAX_BAD_ROWS, "bad files")
    rows = [(b["path"], b["reason"], b.get("explanation", ""), b.get("detail", "")) for b in shown]
    return head + _table(["path", "reason", "meaning", "detail"], rows) + note


def _ignored(audit: dict) -> str:
    ignored = audit["ignored_files"]
    if not ignored:
        return ""
    shown, note = _capped(ignored, MAX_IGNORED_ROWS, "ignored files")
    return (
        f"<h2>Ignored files ({len(ignored)})</h2>"
        + _table(["path", "reason"], [(i["path"], i["reason"]) for i in shown])
        + note
    )


def _grid(audit: dict, images: dict[str, bytes]) -> str:
    grid = audit.get("sample_grid") or {}
    if "sample_grid" not in images:
        return ""
    note = f'<p class="note">{_e(grid.get("note", ""))}</p>'
    # Row labels in the PNG may lack glyphs (no CJK font on the server); the text does not.
    rows = ", ".join(f"{i}. {name}" for i, name in enumerate(grid.get("classes", []), 1))
    if rows:
        note += f'<p class="note">Rows, top to bottom: {_e(rows)}</p>'
    return "<h2>Sample images</h2>" + note + _img(images, "sample_grid", "sample images per class")


def render_html(audit: dict, images: dict[str, bytes]) -> str:
    """The whole page for ``audit`` (as from :func:`compute_audit`) and PNGs keyed by plot name.

    Known keys of ``images``: ``class_counts``, ``size_scatter``, ``aspect_ratio``,
    ``brightness_contrast``, ``sample_grid``, ``sample_grid_<domain>``; a missing key
    just omits the figure.
    """
    from .domains import domains_html

    sections = [
        f'<h1>Dataset audit</h1><p>Source: <span class="path">{_e(audit["source"])}</span></p>',
        _summary(audit),
        _warnings(audit),
        _classes(audit, images),
        _sizes(audit, images),
        _modes(audit),
        _pixels(audit, images),
        _duplicates(audit),
        _bad_files(audit),
        _ignored(audit),
        _grid(audit, images),
        domains_html(audit, images),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Audit: {_e(audit['source'])}</title><style>{_CSS}</style></head><body>\n"
        + "\n".join(s for s in sections if s)
        + "\n</body></html>\n"
    )
