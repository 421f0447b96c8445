"""``ensemblecv audit``: scan, compute, plot and write — the one entry point.

The CLI stays a thin layer: it calls :func:`run_audit` and then
:func:`summarize`. Everything is written under ``out_dir`` and nowhere else:
``audit.json`` (the full machine-readable result), ``audit.html`` (the same,
readable, plots embedded) and ``plots/*.png`` (the figures, for reuse).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from ..data.samples import SampleTable, load_samples
from ..data.scan import ScanResult, scan_table
from . import plots
from .compute import compute_audit
from .domains import add_domain_audit, domain_grids
from .html import render_html
from .task_outputs import print_warnings, write_audit_files


@dataclass
class AuditResult:
    """What :func:`run_audit` produced; ``scan`` lets callers reuse the decode pass."""

    audit: dict[str, Any]
    json_path: Path
    html_path: Path
    scan: ScanResult


class _RateColumn(ProgressColumn):
    """Images per second (rich's TransferSpeedColumn would print bytes/s)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("– img/s" if speed is None else f"{speed:,.0f} img/s", style="cyan")


def _scan(table: SampleTable, workers: int | None, progress: bool, console: Console) -> ScanResult:
    if not progress:
        return scan_table(table, workers=workers)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("Decoding images", total=len(table))
        return scan_table(table, workers=workers, progress=lambda n: bar.advance(task, n))


def _figures(scan: ScanResult, audit: dict, per_class: int) -> dict[str, bytes]:
    """All PNGs; the sample grid opens only the images it shows."""
    good = scan.stats.loc[scan.ok]
    images = plots.all_plots(
        audit, good["width"], good["height"], good["brightness"], good["contrast"]
    )
    if audit["n_ok"] and per_class > 0:
        selection = plots.select_grid_samples(scan.table, scan.ok, per_class)
        audit["sample_grid"] = {
            "classes": selection.classes,
            "note": selection.note,
            "n_images": selection.n_images,
        }
        images["sample_grid"] = plots.sample_grid_png(selection, per_class)
    images.update(domain_grids(scan, per_class))
    return images


def _write(out_dir: Path, audit: dict, images: dict[str, bytes]) -> tuple[Path, Path]:
    return write_audit_files(out_dir, audit, images, render_html)


def run_audit(
    data: str | os.PathLike | SampleTable | ScanResult,
    out_dir: Path,
    workers: int | None = None,
    min_per_class: int = 5,
    per_class_samples: int = 8,
    progress: bool = True,
    console: Console | None = None,
    dedup: str | os.PathLike | None = None,
    layout: str = "imagefolder",
) -> AuditResult:
    """Audit ``data`` (folder, CSV, built-in name, a loaded table or a scan) into ``out_dir``.

    ``workers`` decoding processes (None: up to 8, 0: in this process). Each
    worker holds one image's pixels at a time, so memory does not grow with the
    dataset — only the per-file statistics table does (a few hundred bytes a file).
    A :class:`ScanResult` is audited as is, so a caller that already decoded
    every file (``demo``, workspace preparation) does not decode twice.
    ``layout="domains"`` reads a folder as ``ROOT/DOMAIN/CLASS/image`` and adds a
    per-domain section (see :mod:`.domains`).
    """
    console = console or Console(stderr=True)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    timing: dict[str, float] = {}
    t0 = time.perf_counter()
    if isinstance(data, ScanResult):
        scan = data
    else:
        table = data if isinstance(data, SampleTable) else load_samples(data, layout=layout)
        scan = _scan(table, workers, progress, console)
        timing["scan_s"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    audit = compute_audit(scan, min_per_class=min_per_class)
    add_domain_audit(audit, scan)
    if dedup is not None:
        _add_cleaning_forecast(audit, scan, dedup, min_per_class)
    timing["compute_s"] = time.perf_counter() - t1
    t1 = time.perf_counter()
    images = _figures(scan, audit, per_class_samples)
    timing["plots_s"] = time.perf_counter() - t1
    scan_s = timing.get("scan_s")
    audit["run"] = {
        "workers": workers,
        "seconds": {k: round(v, 3) for k, v in timing.items()},
        "images_per_s": None if scan_s is None else round(len(scan.stats) / max(scan_s, 1e-9), 1),
    }
    json_path, html_path = _write(out_dir, audit, images)
    return AuditResult(audit, json_path, html_path, scan)


def _add_cleaning_forecast(audit: dict, scan: ScanResult, dedup, k: int) -> None:
    """Classes that would fall below ``k`` images if the dedup output were applied.

    One report removed near-duplicates and lost classes down to 1–2 images;
    this says so before anything is removed.
    """
    from ..dedup import classes_below_k, read_duplicates

    below = classes_below_k(scan.table, read_duplicates(dedup), k)
    audit["cleaning_forecast"] = {"dedup": str(dedup), "min_per_class": k, "classes_below_k": below}
    if below:
        shown = ", ".join(f"{c} ({v['before']}→{v['after']})" for c, v in list(below.items())[:10])
        audit["warnings"].insert(
            0,
            {
                "level": "warning",
                "code": "cleaning_leaves_small_classes",
                "message": f"Applying the dedup in {dedup} would leave {len(below)} class(es) with fewer "
                f"than {k} images: {shown}.",
            },
        )


def _fmt_list(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.4f}" for v in values) + "]"


def _key_numbers(audit: dict) -> Table:
    table = Table(title="Dataset audit", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    counts = list(audit["usable_class_counts"].values())
    dup = audit["duplicates"]
    rows = [
        ("source", audit["source"]),
        ("images", f"{audit['n_images']:,} ({audit['n_ok']:,} decodable, {audit['n_bad']:,} bad)"),
        (
            "classes",
            str(audit["n_classes"])
            + (
                f" (usable images per class {min(counts):,} .. {max(counts):,}, "
                f"imbalance {audit['imbalance_ratio']})"
                if counts
                else ""
            ),
        ),
    ]
    if audit["sizes"]:
        s = audit["sizes"]
        rows.append(
            (
                "sizes",
                f"{s['width']['min']}..{s['width']['max']} × "
                f"{s['height']['min']}..{s['height']['max']} px, median "
                f"{s['width']['median']:g} × {s['height']['median']:g}",
            )
        )
    rows += [
        ("modes", ", ".join(f"{k}: {v:,}" for k, v in audit["modes"].items()) or "–"),
        (
            "duplicates",
            f"{dup['n_within_class_groups']} group(s) within a class, "
            f"{dup['n_cross_class_groups']} across classes",
        ),
    ]
    for key, value in rows:
        table.add_row(key, Text(str(value)))  # Text: user strings are never read as markup
    return table


def summarize(audit: dict, console: Console | None = None, max_warnings: int = 8) -> None:
    """Print the key numbers, the most severe warnings, the mean/std and where files went."""
    console = console or Console()
    console.print(_key_numbers(audit))
    print_warnings(audit, console, max_warnings)
    norm = audit.get("normalization")
    if norm:
        console.print(
            "Suggested normalisation (0..1 scale, per-image weighted): "
            f"gray mean {_fmt_list(norm['gray']['mean'])} std {_fmt_list(norm['gray']['std'])}; "
            f"rgb mean {_fmt_list(norm['rgb']['mean'])} std {_fmt_list(norm['rgb']['std'])}"
        )
    outputs = audit.get("outputs")
    if outputs:
        console.print(
            f"Wrote [bold]{escape(outputs['html'])}[/bold], {escape(outputs['json'])} "
            f"and {len(outputs['plots'])} plot(s) in "
            f"{escape(str(Path(outputs['json']).parent / 'plots'))}"
        )


__all__ = ["AuditResult", "run_audit", "summarize"]
