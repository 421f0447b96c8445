"""CLI verbs ``dedup`` and ``audit-leakage``."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from ._console import console, progress_bar

DATA_HELP = (
    "Folder (ImageFolder layout), CSV index (image_path + class_name/target) or built-in name."
)


def dedup(
    data: str = typer.Argument(..., help=DATA_HELP),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Folder for duplicates.csv, summary.json, gallery.html."
    ),
    within_class_ssim: float = typer.Option(
        0.95, min=0.0, max=1.0, help="SSIM a candidate pair needs to count as a duplicate."
    ),
    cross_class_cosine: float = typer.Option(
        0.99, min=-1.0, max=1.0, help="Embedding cosine that alone confirms a cross-class pair."
    ),
    flip_invariant: bool = typer.Option(
        False, "--flip-invariant", help="Also match mirrored copies."
    ),
    resize_invariant: bool = typer.Option(
        True,
        "--resize-invariant/--no-resize-invariant",
        help="Also match copies shrunk and enlarged again (SSIM with one side smoothed).",
    ),
    max_distance: int = typer.Option(
        6, min=0, max=32, help="pHash Hamming distance of candidates."
    ),
    embedder: str = typer.Option(
        "none", help="none | run:NAME (a trained run of --workspace) | a timm model name."
    ),
    workspace: Path | None = typer.Option(None, "--workspace", "-w", help="Workspace of run:NAME."),
    apply: bool = typer.Option(
        False, "--apply", help="Write cleaned.csv and excluded.csv (sources are never touched)."
    ),
    conflicts: str = typer.Option(
        "flag", help="Cross-class groups with --apply: flag | drop | keep."
    ),
    min_per_class: int = typer.Option(
        5, min=1, help="Report classes that cleaning leaves below K."
    ),
    workers: int = typer.Option(2, min=0, help="Hashing processes (0 = in this process)."),
) -> None:
    """Find exact and near-duplicate images; group them within class and across classes (conflicts)."""
    import pandas as pd

    from ..data.samples import load_samples
    from ..dedup import find_duplicates, write_outputs
    from ..dedup.groups import mark_keep
    from ..dedup.report import check_out_dir

    table = load_samples(data)
    check_out_dir(out, table)
    mark_keep(pd.DataFrame({"group": [], "class_name": [], "kind": []}), conflicts)
    with progress_bar("hash", len(table)) as advance:
        result = find_duplicates(
            table,
            within_class_ssim=within_class_ssim,
            cross_class_cosine=cross_class_cosine,
            flip_invariant=flip_invariant,
            max_distance=max_distance,
            resize_invariant=resize_invariant,
            embedder=embedder,
            workspace=workspace,
            conflicts=conflicts,
            workers=workers,
            progress=advance,
        )
    params = dict(
        within_class_ssim=within_class_ssim, cross_class_cosine=cross_class_cosine,
        flip_invariant=flip_invariant, resize_invariant=resize_invariant,
        max_distance=max_distance, embedder=embedder,
    )  # fmt: skip
    summary = write_outputs(
        result, table, out, params, apply=apply, conflicts=conflicts, min_per_class=min_per_class
    )
    t = Table("", "count", title=f"Duplicates in {len(table)} images → {out}")
    for key in ("exact_pairs", "candidate_pairs", "confirmed_near_pairs", "within_class_groups",
                "cross_class_groups", "duplicate_images"):  # fmt: skip
        t.add_row(key.replace("_", " "), str(summary[key]))
    console.print(t)
    if summary["classes_below_k"]:
        console.print(
            f"[yellow]Classes below {min_per_class} images after cleaning:[/] "
            + ", ".join(
                f"{k} ({v['before']}→{v['after']})" for k, v in summary["classes_below_k"].items()
            )
        )
    if apply:
        console.print(
            f"Cleaned index: {out / 'cleaned.csv'}; exclusion list: {out / 'excluded.csv'}"
        )


def audit_leakage(
    workspace: Path = typer.Argument(..., help="A prepared workspace (folds.parquet)."),
    dedup_dir: Path | None = typer.Option(
        None, "--dedup", help="A dedup output folder; default: pHash duplicates computed now."
    ),
    max_distance: int = typer.Option(6, min=0, max=32, help="pHash distance without --dedup."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the report here."),
) -> None:
    """Count validation samples that have a near-duplicate in their training folds."""
    from ..dedup import leakage_report

    rep = leakage_report(workspace, dedup_dir, max_distance=max_distance)
    t = Table(
        "fold",
        "validation",
        "with duplicate in training",
        title=f"Leakage ({rep['duplicates_from']})",
    )
    for f in rep["folds"]:
        t.add_row(str(f["fold"]), str(f["validation"]), str(f["leaked"]))
    t.add_row("[bold]all", str(rep["validation"]), f"[bold]{rep['leaked']} ({rep['fraction']:.2%})")
    console.print(t)
    if json_out is not None:
        json_out.write_text(json.dumps(rep, indent=1), encoding="utf-8")


def register(app: typer.Typer) -> None:
    app.command("dedup")(dedup)
    app.command("audit-leakage")(audit_leakage)
