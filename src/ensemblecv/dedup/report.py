"""Dedup outputs: duplicates.csv, pairs.csv, summary.json, gallery.html, cleaned index.

Everything is written under the output folder; the dataset is only read.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import pandas as pd
from PIL import Image

from ..data.imageio import open_image, to_channels
from ..data.samples import SampleTable
from ..errors import DataError
from .groups import DedupResult, classes_below_k, cleaned_index

GALLERY_GROUPS = 200
THUMB = 64


def check_out_dir(out: Path, table: SampleTable) -> None:
    """Refuse an output folder inside the dataset: dedup never writes into the data."""
    if table.root is None:
        return
    out, root = Path(out).absolute(), Path(table.root).absolute()
    if out == root or root in out.parents:
        raise DataError(
            f"--out {out} is inside the dataset folder {root}; choose a folder outside it "
            "(dedup never writes into the dataset)."
        )


def write_outputs(
    result: DedupResult,
    table: SampleTable,
    out: Path,
    params: dict,
    apply: bool = False,
    conflicts: str = "flag",
    min_per_class: int = 5,
) -> dict:
    """Write the dedup folder; returns the summary that went into summary.json."""
    out = Path(out)
    check_out_dir(out, table)
    out.mkdir(parents=True, exist_ok=True)
    result.members.to_csv(out / "duplicates.csv", index=False)
    pair_cols = ["sample_a", "sample_b", "method", "distance", "cosine", "ssim", "similarity"]
    result.pairs.reindex(columns=pair_cols).to_csv(out / "pairs.csv", index=False)
    summary = {
        "source": table.source,
        "dataset_root": str(table.root) if table.root is not None else None,
        "params": params,
        **result.stats,
        "classes_below_k": classes_below_k(table, result.members, min_per_class),
        "min_per_class": min_per_class,
    }
    if apply:
        cleaned = cleaned_index(table, result.members, conflicts)
        cleaned.to_csv(out / "cleaned.csv", index=False)
        kept = set(cleaned["image_path"])
        excluded = table.frame.loc[~table.frame["sample_id"].isin(kept), ["sample_id"]]
        excluded.assign(reason="duplicate").to_csv(out / "excluded.csv", index=False)
        summary["cleaned"] = {
            "conflict_policy": conflicts,
            "kept": len(cleaned),
            "excluded": len(excluded),
            "how_to_use": (
                "cleaned.csv lists image_path relative to dataset_root: copy it into that "
                "folder (or symlink the folder next to it) to train on it; or keep the data "
                "as is and set data.exclude to excluded.csv (sample_id column)."
            ),
        }
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str), encoding="utf-8")
    write_gallery(result.members, out / "gallery.html")
    return summary


def _thumb_uri(path: str) -> str:
    try:
        img = Image.fromarray(to_channels(open_image(path), 3))
        img.thumbnail((THUMB, THUMB))
    except Exception:  # noqa: BLE001
        img = Image.new("RGB", (THUMB, THUMB), (200, 0, 0))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def write_gallery(members: pd.DataFrame, path: Path, limit: int = GALLERY_GROUPS) -> None:
    """A self-contained HTML page: one row per group, cross-class (conflict) groups first."""
    groups = list(members.groupby("group", sort=False))
    groups.sort(key=lambda g: (g[1]["kind"].iloc[0] != "cross_class", g[0]))
    parts = [
        "<!doctype html><meta charset='utf-8'><title>Duplicate groups</title><style>"
        "body{font-family:sans-serif}.g{border-bottom:1px solid #ccc;padding:6px}"
        ".cross_class{background:#fff0f0}figure{display:inline-block;margin:4px;"
        "font-size:11px;width:120px;vertical-align:top}figure.drop img{opacity:.4}"
        "img{image-rendering:pixelated;width:64px}</style>",
        f"<h1>Duplicate groups ({len(groups)})</h1>",
        "<p>Red rows: label conflicts (cross-class). Faded images would be dropped by --apply.</p>",
    ]
    if len(groups) > limit:
        parts.append(
            f"<p><b>Showing the first {limit} of {len(groups)} groups</b>; see duplicates.csv for all.</p>"
        )
    for name, g in groups[:limit]:
        kind = g["kind"].iloc[0]
        parts.append(f"<div class='g {kind}'><b>{html.escape(str(name))}</b> {kind}<br>")
        for _, r in g.iterrows():
            cls = "" if bool(r["keep"]) else " class='drop'"
            parts.append(
                f"<figure{cls}><img src='{_thumb_uri(r['path'])}'><figcaption>"
                f"{html.escape(str(r['sample_id']))}<br>{html.escape(str(r['class_name']))} "
                f"· {float(r['similarity']):.3f}</figcaption></figure>"
            )
        parts.append("</div>")
    path.write_text("\n".join(parts), encoding="utf-8")
