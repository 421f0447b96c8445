"""CLI verbs that read datasets: ``datasets``, ``audit``, ``split``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from ..errors import DataError
from ._console import console, progress_bar

if TYPE_CHECKING:  # the verbs import pandas and the data layer when they run (fast --help)
    import pandas as pd

    from ..data.samples import SampleTable
    from ..data.scan import ScanResult

DATA_HELP = (
    "Folder (ImageFolder layout), CSV index (image_path + class_name/target) or built-in name."
)
WORKERS_HELP = "Decode processes (default: CPU count, 0 = in this process)."

datasets_app = typer.Typer(help="List and export the built-in datasets.", no_args_is_help=True)


@datasets_app.command("list")
def datasets_list() -> None:
    """Show the built-in datasets and whether they are available offline."""
    from ..data import builtin

    table = Table("name", "splits", "available")
    for name in builtin.list_datasets():
        ok = name != "fashion-mnist" or builtin.fashion_mnist_available()
        table.add_row(
            name, "train, test", "yes" if ok else "no (apt-get install dataset-fashion-mnist)"
        )
    console.print(table)


@datasets_app.command("export")
def datasets_export(
    name: str = typer.Argument(
        ..., help="Built-in dataset, optionally with split: fashion-mnist:test."
    ),
    out: Path = typer.Argument(..., help="New or empty output folder."),
    layout: str = typer.Option(
        "folder", help="folder (one sub-folder per class) or csv (train.csv/test.csv)."
    ),
    limit: int | None = typer.Option(
        None, min=1, help="Export at most N images, classes balanced."
    ),
) -> None:
    """Write a built-in dataset as PNG files."""
    from ..data import builtin
    from ..data.export import export_builtin

    parsed = builtin.parse_builtin(name)
    if parsed is None:
        raise DataError(
            f"Unknown built-in dataset {name!r}; available: {', '.join(builtin.list_datasets())}."
        )
    n = len(builtin.load_split(*parsed).labels)
    total = min(n, limit) if limit else n
    with progress_bar(f"export {name}", total) as advance:
        where = export_builtin(name, out, layout=layout, limit=limit, progress=advance)
    console.print(f"Wrote {total} images: [bold]{where}[/]")


def _scan_with_progress(table: SampleTable, workers: int | None) -> ScanResult:
    from ..data.scan import scan_table

    with progress_bar("scan", len(table)) as advance:
        return scan_table(table, workers=workers, progress=advance)


def audit(
    data: str = typer.Argument(..., help=DATA_HELP),
    out: Path = typer.Option(
        Path("audit"), "--out", "-o", help="Folder for audit.json, audit.html and plots."
    ),
    workers: int | None = typer.Option(None, min=0, help=WORKERS_HELP),
    min_per_class: int = typer.Option(
        5, min=1, help="Flag classes with fewer images (e.g. your fold count)."
    ),
    dedup: Path | None = typer.Option(
        None,
        help="An `ensemblecv dedup` output: warn about classes cleaning would leave too small.",
    ),
    layout: str = typer.Option(
        "imagefolder", help="imagefolder (ROOT/CLASS/image) | domains (ROOT/DOMAIN/CLASS/image)."
    ),
    task: str = typer.Option(
        "auto",
        help="auto | classify | detect | segment. auto: detection labels -> detect, masks "
        "(VOC SegmentationClass/, images/+masks/, a CSV with mask_path) -> segment.",
    ),
    ignore_index: int = typer.Option(
        255, min=0, max=255, help="Segmentation: the mask value never scored (VOC's void)."
    ),
) -> None:
    """Analyse a dataset: class balance, sizes, modes, brightness, mean/std, duplicates, bad files.

    A detection dataset (YOLO, COCO, VOC, LabelMe) gets the detection audit:
    boxes per class and image, box sizes, bad labels, a grid with boxes drawn.
    A segmentation dataset (VOC masks, images/ + masks/, a CSV with mask_path;
    COCO polygons with --task segment) gets the mask audit: pixel share and
    images per class, mask coverage, bad masks, a grid with masks overlaid.
    Multi-domain data (``--layout domains``) is also audited per domain.
    """
    from ..tasks.detect.read import detect_format
    from ..tasks.segment.read import detect_format as segment_format

    if task not in ("auto", "classify", "detect", "segment"):
        raise DataError(f"--task must be auto, classify, detect or segment, got {task!r}.")
    if task == "auto":
        # Detection keeps what it recognised before segmentation existed (a VOC2012 root
        # has both Annotations/ and SegmentationClass/: --task segment for its masks).
        task = (
            "detect" if detect_format(data) else "segment" if segment_format(data) else "classify"
        )
    if task == "segment":
        from ..tasks.segment.audit import audit_segmentation, summarize_segmentation
        from ..tasks.segment.read import read_segmentation

        masks = read_segmentation(data, ignore_index=ignore_index)
        with progress_bar("scan", len(masks)) as advance:
            result = audit_segmentation(
                masks, out, min_per_class=min_per_class, workers=workers, progress=advance
            )
        summarize_segmentation(result.audit, console)
        return
    if task == "detect":
        from ..tasks.detect import read_detection
        from ..tasks.detect.audit import audit_detection, summarize_detection

        labels = read_detection(data)
        with progress_bar("scan", len(labels.images)) as advance:
            result = audit_detection(
                labels, out, min_per_class=min_per_class, workers=workers, progress=advance
            )
        summarize_detection(result.audit, console)
        return
    from ..audit import run_audit, summarize

    result = run_audit(
        data,
        out,
        workers=workers,
        min_per_class=min_per_class,
        progress=True,
        console=console,
        dedup=dedup,
        layout=layout,
    )
    summarize(result.audit, console)


def split(
    data: str = typer.Argument(..., help=DATA_HELP),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Write train/val/test class folders here."
    ),
    ratios: str = typer.Option("0.8,0.1,0.1", help="train,val[,test] fractions for --out."),
    workspace: Path | None = typer.Option(
        None, "--workspace", "-w", help="Write the K-fold table here instead."
    ),
    folds: int = typer.Option(5, min=2, help="Number of CV folds for --workspace."),
    seed: int = typer.Option(0, help="Random seed of the split."),
    link: bool = typer.Option(
        False, "--link/--copy", help="Symlink files instead of copying them."
    ),
    strict: bool = typer.Option(False, help="Abort on unreadable files instead of excluding them."),
    workers: int | None = typer.Option(None, min=0, help=WORKERS_HELP),
) -> None:
    """Split a dataset: class folders by ratio (--out), or a stratified K-fold table (--workspace).

    Both are stratified by class and keep groups (exact duplicates, a CSV
    'group' column) on one side. Source files are never moved or changed.
    """
    if (out is None) == (workspace is None):
        raise DataError(
            "Give exactly one of --out DIR (folders by ratio) or --workspace DIR (K-fold table)."
        )
    import pandas as pd

    from ..data.samples import load_samples
    from ..data.scan import duplicate_groups, exclude_bad
    from ..data.split import assign_splits, check_output_dir, parse_ratios, write_split
    from ..workspace import prepare_workspace

    table = load_samples(data)
    if out is not None:
        ratio_list = parse_ratios(ratios)
        check_output_dir(out.absolute(), table.root)
        scan = _scan_with_progress(table, workers)
        good = exclude_bad(scan, strict=strict)
        good = duplicate_groups(good, scan.stats.loc[scan.ok, "hash"].reset_index(drop=True))
        splits = assign_splits(good, ratio_list, seed=seed)
        index = write_split(good, out, splits, mode="link" if link else "copy")
        counts = pd.crosstab(index["class_name"], index["split"])
        _print_counts(counts, f"Wrote {len(index)} files to {out}")
        return
    scan = _scan_with_progress(table, workers)
    ws = prepare_workspace(workspace, table, folds=folds, seed=seed, strict=strict, scan=scan)
    fold_table = ws.load_folds()
    counts = pd.crosstab(
        fold_table["label"].map(dict(enumerate(table.classes))), fold_table["fold"]
    )
    _print_counts(counts, f"Fold table for {len(fold_table)} samples: {ws.folds_path}")


def _print_counts(counts: pd.DataFrame, title: str, max_rows: int = 30) -> None:
    table = Table("class", *map(str, counts.columns), title=title)
    for name, row in counts.head(max_rows).iterrows():
        table.add_row(str(name), *map(str, row.tolist()))
    if len(counts) > max_rows:
        table.add_row(f"... {len(counts) - max_rows} more classes", *[""] * len(counts.columns))
    table.add_row("[bold]total", *[f"[bold]{v}" for v in counts.sum().tolist()])
    console.print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(datasets_app, name="datasets")
    app.command("audit")(audit)
    app.command("split")(split)
