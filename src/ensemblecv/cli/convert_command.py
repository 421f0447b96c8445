"""``ensemblecv convert``: detection labels or segmentation masks from one format into another."""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import DataError
from ._console import console


def _task_of(src: str, to: str, task: str) -> str:
    """auto: ``--to folders`` or a mask layout → segment; detection labels → detect."""
    if task not in ("auto", "detect", "segment"):
        raise DataError(f"--task must be auto, detect or segment, got {task!r}.")
    if task != "auto":
        return task
    from ..tasks.detect.read import detect_format
    from ..tasks.segment.read import detect_format as segment_format

    if to == "folders":
        return "segment"
    if detect_format(src) is None and segment_format(src) is not None:
        return "segment"
    return "detect"


def convert(
    src: str = typer.Argument(
        ...,
        help="Dataset: a folder (YOLO, VOC, LabelMe, COCO; VOC masks, images/+masks/), a COCO "
        "JSON file or a mask CSV (image_path, mask_path).",
    ),
    to: str = typer.Option(
        ...,
        "--to",
        help="Target: yolo, coco or voc (detection); folders, voc or coco (segmentation).",
    ),
    out: Path = typer.Option(..., "--out", "-o", help="New or empty output folder."),
    format: str | None = typer.Option(
        None,
        "--format",
        help="Source format if detection guesses wrong: yolo, coco, voc, labelme "
        "(detection); voc, folders, csv, coco (segmentation).",
    ),
    task: str = typer.Option(
        "auto",
        help="auto | detect | segment. auto: --to folders or a mask layout -> segment; "
        "--task segment turns COCO polygons (or a VOC root's SegmentationClass/) into PNG masks.",
    ),
    ignore_index: int = typer.Option(
        255, min=0, max=255, help="Segmentation: the mask value never scored (VOC's void)."
    ),
    link: bool = typer.Option(
        False, "--link/--copy", help="Hard-link images instead of copying them."
    ),
    strict: bool = typer.Option(False, help="Abort on any bad label instead of skipping it."),
) -> None:
    """Convert detection labels (YOLO, COCO, VOC, LabelMe) or segmentation masks (VOC, folders, CSV, COCO).

    Images are copied (or hard-linked) into the new layout, background images
    included; masks are written as palette PNGs of class indices; the source
    is never changed.
    """
    if _task_of(src, to, task) == "segment":
        from ..tasks.segment.convert import convert_segmentation

        seg = convert_segmentation(
            src, to, out, format=format, ignore_index=ignore_index, link=link, strict=strict
        )
        console.print(
            f"Converted {seg.n_images} images and their masks from {seg.source_format} to "
            f"{seg.target_format}: [bold]{seg.out}[/]"
            + (f" ({seg.n_bad} bad file(s) left out)" if seg.n_bad else "")
        )
        return
    from ..tasks.detect.convert import convert_detection

    result = convert_detection(src, to, out, format=format, link=link, strict=strict)
    console.print(
        f"Converted {result.n_images} images and {result.n_boxes} boxes from "
        f"{result.source_format} to {result.target_format}: [bold]{result.out}[/]"
        + (f" ({result.n_bad} bad label(s) skipped)" if result.n_bad else "")
    )


def register(app: typer.Typer) -> None:
    app.command("convert")(convert)
