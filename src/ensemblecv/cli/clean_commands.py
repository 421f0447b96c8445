"""CLI verbs that curate training data: ``augment-offline`` and ``label-issues``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from ._console import console, progress_bar

DATA_HELP = (
    "Folder (ImageFolder layout), CSV index (image_path + class_name/target) or built-in name."
)


def augment_offline_command(
    data: str = typer.Argument(..., help=DATA_HELP),
    out: Path = typer.Option(..., "--out", "-o", help="New or empty folder, outside the dataset."),
    copies: int = typer.Option(1, "--copies", "-n", min=1, help="Augmented copies per image."),
    ops: str = typer.Option(
        ...,
        "--ops",
        help="Comma-separated op names, each applied with p=1 (canny,erode,gauss_noise,"
        "motion_blur ...), or a preset name. See `ensemblecv augment-preview --help`.",
    ),
    seed: int = typer.Option(0, help="Same seed, same copies."),
    mode: str = typer.Option("link", help="Originals as symbolic links (link) or copies (copy)."),
) -> None:
    """Write augmented copies of every image plus OUT/index.csv; copies share their original's group."""
    from ..augment_offline import augment_offline
    from ..data.samples import load_samples

    table = load_samples(data)
    with progress_bar("augment", len(table)) as advance:
        index = augment_offline(table, out, copies, ops, seed=seed, progress=advance, mode=mode)
    console.print(
        f"Wrote {len(table) * copies} copies of {len(table)} images: [bold]{escape(str(index))}[/]"
        f"\nTrain on it with data.train={escape(str(index))}"
    )


def label_issues_command(
    workspace: Path = typer.Argument(..., help="Workspace with finished runs."),
    run: str | None = typer.Option(
        None, help="Run or ensemble whose OOF probabilities to use (default: best ensemble)."
    ),
    method: str = typer.Option(
        "self_confidence", help="Ranking: self_confidence | normalized_margin."
    ),
    top: int = typer.Option(24, min=1, help="Images in the gallery and the printed table."),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Folder for the gallery and CSV (default WORKSPACE/label_issues)."
    ),
    write_exclusions: Path | None = typer.Option(
        None,
        "--write-exclusions",
        help="Write the flagged samples here (sample_id,reason) for data.exclude.",
    ),
    exclude_top: int | None = typer.Option(
        None, min=1, help="With --write-exclusions: at most this many, most suspicious first."
    ),
) -> None:
    """Rank likely mislabelled images from out-of-fold probabilities (confident learning)."""
    from .. import label_issues as li

    df = li.find_label_issues(workspace, run=run, method=method)
    page = li.write_label_issue_report(df, out or workspace / "label_issues", top=top)
    table = Table(
        "#", "sample", "given", "suggested", "p(given)", "flagged", title="Likely label issues"
    )
    for r in df.head(top).itertuples():
        table.add_row(
            str(r.rank),
            escape(str(r.sample_id)),
            escape(str(r.given)),
            escape(str(r.suggested)),
            f"{r.self_confidence:.3f}",
            "yes" if r.is_issue else "",
        )
    console.print(table)
    console.print(
        f"{int(df['is_issue'].sum())} of {len(df)} samples flagged "
        f"(OOF of {escape(str(df.attrs['source']))}). Gallery: [bold]{escape(str(page))}[/]"
    )
    if write_exclusions is not None:
        path = li.write_exclusions(df, write_exclusions, top=exclude_top)
        console.print(
            f"Wrote the exclusion list [bold]{escape(str(path))}[/]; "
            f"train with data.exclude={escape(str(path))} to leave them out of training."
        )


def register(app: typer.Typer) -> None:
    app.command("augment-offline")(augment_offline_command)
    app.command("label-issues")(label_issues_command)
