"""What every audit writes (and a task audit prints) once its numbers are computed.

The detection and segmentation audits differ in what they count, not in how the
result leaves: ``plots/*.png``, ``audit.json`` (with ``outputs`` and ``run``),
``audit.html``; on the console a key-number table, the most severe warnings and
where the files went. One place for that keeps the pages and messages alike.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

_STYLES = {"error": "bold red", "warning": "yellow", "info": "dim"}


def write_audit_files(
    out_dir: Path,
    audit: dict,
    images: dict[str, bytes],
    render_html: Callable[[dict, dict[str, bytes]], str],
    extra_outputs: dict[str, str] | None = None,
    run: dict | None = None,
) -> tuple[Path, Path]:
    """Write ``images`` as plots, then ``audit.json`` and ``audit.html``; ``audit`` gains
    ``outputs`` (every path written, plus ``extra_outputs`` such as a bad-input CSV) and
    ``run`` (timings), so the JSON says where everything went."""
    plot_dir = out_dir / "plots"
    plot_dir.mkdir(parents=True, exist_ok=True)
    for name, png in images.items():
        (plot_dir / f"{name}.png").write_bytes(png)
    json_path, html_path = out_dir / "audit.json", out_dir / "audit.html"
    audit["outputs"] = {
        "json": str(json_path),
        "html": str(html_path),
        "plots": [str(plot_dir / f"{n}.png") for n in images],
        **(extra_outputs or {}),
    }
    if run is not None:
        audit["run"] = run
    json_path.write_text(json.dumps(audit, ensure_ascii=False, indent=1), encoding="utf-8")
    html_path.write_text(render_html(audit, images), encoding="utf-8")
    return json_path, html_path


def print_warnings(audit: dict, console: Console, max_warnings: int = 8) -> None:
    """The first ``max_warnings`` warnings, in the audit's order, and how many more the page
    holds; or that there is none."""
    warnings = audit.get("warnings", [])
    for w in warnings[:max_warnings]:
        console.print(
            Text(f"{w['level']}: ", style=_STYLES.get(w["level"], "")) + Text(w["message"])
        )
    if len(warnings) > max_warnings:
        console.print(f"... and {len(warnings) - max_warnings} more warning(s) in audit.html")
    if not warnings:
        console.print("[green]No problems found.[/green]")


def print_audit_summary(
    title: str,
    rows: Iterable[tuple[str, object]],
    audit: dict,
    console: Console | None = None,
    max_warnings: int = 8,
) -> None:
    """The key numbers as a table, the first ``max_warnings`` warnings (and how many more
    there are), and where the files went."""
    console = console or Console()
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows:
        table.add_row(key, Text(str(value)))
    console.print(table)
    print_warnings(audit, console, max_warnings)
    outputs = audit.get("outputs", {})
    if outputs:
        console.print(
            Text(f"Wrote {outputs['html']}, {outputs['json']} and {len(outputs['plots'])} plot(s)")
        )


__all__ = ["print_audit_summary", "print_warnings", "write_audit_files"]
