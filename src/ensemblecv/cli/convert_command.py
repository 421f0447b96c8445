"""``ensemblecv convert``: detection labels from one format into another."""

from __future__ import annotations

from pathlib import Path

import typer

from ._console import console


def convert(
    src: str = typer.Argument(
        ..., help="Detection dataset: a folder (YOLO, VOC, LabelMe, COCO) or a COCO JSON file."
    ),
    to: str = typer.Option(..., "--to", help="Target format: yolo, coco or voc."),
    out: Path = typer.Option(..., "--out", "-o", help="New or empty output folder."),
    format: str | None = typer.Option(
        None, "--format", help="Source format if detection guesses wrong: yolo, coco, voc, labelme."
    ),
    link: bool = typer.Option(
        False, "--link/--copy", help="Hard-link images instead of copying them."
    ),
    strict: bool = typer.Option(False, help="Abort on any bad label instead of skipping it."),
) -> None:
    """Convert detection labels (YOLO, COCO, Pascal VOC, LabelMe) to YOLO, COCO or VOC.

    Images are copied (or hard-linked) into the new layout, background images
    included; the source is never changed.
    """
    from ..tasks.detect.convert import convert_detection

    result = convert_detection(src, to, out, format=format, link=link, strict=strict)
    console.print(
        f"Converted {result.n_images} images and {result.n_boxes} boxes from "
        f"{result.source_format} to {result.target_format}: [bold]{result.out}[/]"
        + (f" ({result.n_bad} bad label(s) skipped)" if result.n_bad else "")
    )


def register(app: typer.Typer) -> None:
    app.command("convert")(convert)
