"""The audit of a multi-domain dataset: what differs between domains.

Per domain: images, counts per class, brightness / contrast and colour means (from
the scan's per-image statistics, so nothing is decoded again) and a sample grid;
a warning lists classes missing from a domain — a model never sees those classes
in that style, and that domain's accuracy is over fewer classes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..data.domains import DOMAIN_COLUMN, has_domains, list_domains, missing_classes
from ..data.scan import ScanResult


def domain_section(scan: ScanResult) -> dict[str, Any] | None:
    """``{domains: {name: {...}}, missing_classes: {domain: [classes]}}`` or None without domains."""
    table = scan.table
    if not has_domains(table):
        return None
    frame, stats, ok = table.frame, scan.stats, scan.ok
    out: dict[str, Any] = {}
    for d in list_domains(table):
        mask = (frame[DOMAIN_COLUMN] == d).to_numpy()
        good = stats.loc[mask & ok]
        labels = frame.loc[mask & ok, "label"].to_numpy()
        counts = np.bincount(labels[labels >= 0], minlength=len(table.classes))

        def mean(col: str, good=good) -> float | None:
            return round(float(good[col].mean()), 2) if len(good) else None

        out[d] = {
            "n_images": int(mask.sum()),
            "n_ok": int((mask & ok).sum()),
            "class_counts": {c: int(n) for c, n in zip(table.classes, counts)},
            "brightness_mean": mean("brightness"),
            "contrast_mean": mean("contrast"),
            "rgb_mean": [mean("r_mean"), mean("g_mean"), mean("b_mean")],
        }
    return {"domains": out, "missing_classes": missing_classes(table)}


def add_domain_audit(audit: dict, scan: ScanResult) -> None:
    """Add ``audit['domains']`` and the missing-class warning (in place)."""
    section = domain_section(scan)
    if section is None:
        return
    audit["domains"] = section
    lacking = section["missing_classes"]
    if lacking:
        detail = "; ".join(f"{d}: {', '.join(c[:8])}" for d, c in lacking.items())
        audit.setdefault("warnings", []).append(
            {
                "level": "warning",
                "code": "missing_domain_classes",
                "message": f"{len(lacking)} domain(s) lack some classes ({detail}); a model "
                "never sees those classes in that style, and accuracy on that domain is "
                "over fewer classes.",
            }
        )


def domain_grids(scan: ScanResult, per_class: int) -> dict[str, bytes]:
    """One sample grid per domain (``sample_grid_<domain>``)."""
    from . import plots

    table = scan.table
    if not has_domains(table) or per_class <= 0:
        return {}
    images = {}
    for d in list_domains(table):
        mask = (table.frame[DOMAIN_COLUMN] == d).to_numpy()
        selection = plots.select_grid_samples(table.subset(mask), scan.ok[mask], per_class)
        images[f"sample_grid_{d}"] = plots.sample_grid_png(selection, per_class)
    return images


def domains_html(audit: dict, images: dict[str, bytes]) -> str:
    """The audit page's "Domains" section ('' without domains)."""
    from .page import _e, _img, _table

    section = audit.get("domains")
    if not section:
        return ""
    doms = section["domains"]
    classes = list(next(iter(doms.values()))["class_counts"])
    header = ["domain", "images", "brightness", "contrast", "R", "G", "B", *classes]
    rows = [
        [d, v["n_images"], v["brightness_mean"], v["contrast_mean"], *v["rgb_mean"],
         *v["class_counts"].values()]
        for d, v in doms.items()
    ]  # fmt: skip
    parts = ["<h2>Domains</h2>", _table(header, rows, numeric=range(1, len(header)))]
    for d, lacking in section["missing_classes"].items():
        parts.append(f'<p class="note">{_e(d)} lacks: {_e(", ".join(lacking))}</p>')
    for d in doms:
        parts.append(f"<h3>{_e(d)}</h3>" + _img(images, f"sample_grid_{d}", f"samples of {d}"))
    return "\n".join(parts)
