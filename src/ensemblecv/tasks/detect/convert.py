"""``ensemblecv convert``: detection labels from any readable format into YOLO, COCO or VOC.

The source is read with :func:`read_detection` (bad labels dropped and listed
exactly as for training) and written in the target layout with every image
copied, or hard-linked, into it. Coordinates keep 4 decimals (YOLO: 8 of the
normalised value), so YOLO → COCO → VOC → YOLO keeps every box within 1e-3
pixel for images up to 10,000 px a side. The source is never touched and a non-empty ``out`` is refused.
"""

from __future__ import annotations

import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ...data.split import check_output_dir
from ...errors import DataError, format_list, unknown_name_message
from ._common import layout_key
from .labels_coco import write_coco
from .labels_voc import write_voc
from .labels_yolo import write_yolo
from .read import read_detection

_WRITERS = {"yolo": write_yolo, "coco": write_coco, "voc": write_voc}
TARGETS = tuple(_WRITERS)


@dataclass
class ConvertResult:
    out: Path
    source_format: str
    target_format: str
    n_images: int
    n_boxes: int
    n_bad: int


def _placer(link: bool):
    def place(src: str, dest: Path) -> None:
        if link:
            try:
                os.link(src, dest)
                return
            except OSError:
                pass  # another file system or no hard links: copy instead
        shutil.copy2(src, dest)

    return place


def _check_label_names(sample_ids, to: str) -> None:
    """YOLO and VOC name a label file after its image's stem: ``a.jpg`` and ``a.png`` would collide."""
    if to == "coco":
        return
    stems = pd.Series([layout_key(s).with_suffix("").as_posix() for s in sample_ids])
    clash = sorted(pd.Series(list(sample_ids))[stems.duplicated(keep=False).to_numpy()])
    if clash:
        raise DataError(
            f"{len(clash)} images differ only in their extension, so their {to} label files "
            f"would overwrite each other:\n{format_list(clash)}\nRename them, or convert to coco."
        )


def convert_detection(
    src: str | os.PathLike,
    to: str,
    out: str | os.PathLike,
    format: str | None = None,
    link: bool = False,
    strict: bool = False,
) -> ConvertResult:
    """Write the dataset at ``src`` (format ``format`` or detected) as ``to`` into ``out``.

    ``link`` hard-links images instead of copying (falls back to a copy across
    file systems). Flags a target cannot hold are reported in one warning:
    YOLO has no crowd boxes (left out) and no difficult flag (written as plain
    boxes). Background images are kept in every target.
    """
    if to not in _WRITERS:
        raise DataError(unknown_name_message("target format", to, TARGETS))
    out = Path(out).absolute()
    src_path = Path(src)
    check_output_dir(out, src_path if src_path.is_dir() else src_path.parent)
    data = read_detection(src_path, format=format, strict=strict)
    check_output_dir(out, data.root)  # a COCO file's images may live above its folder
    _check_label_names(data.images["sample_id"], to)
    if to == "yolo":
        lost = []
        if data.boxes["iscrowd"].any():
            lost.append(f"{int(data.boxes['iscrowd'].sum())} crowd box(es) left out")
        if data.boxes["difficult"].any():
            lost.append(
                f"{int(data.boxes['difficult'].sum())} difficult flag(s) dropped (boxes kept)"
            )
        if lost:
            warnings.warn(
                "YOLO labels have no crowd or difficult flag: " + "; ".join(lost) + ".",
                UserWarning,
                stacklevel=2,
            )
    out.mkdir(parents=True, exist_ok=True)
    _WRITERS[to](data.images, data.boxes, data.classes, out, _placer(link))
    n_boxes = int((~data.boxes["iscrowd"]).sum()) if to == "yolo" else len(data.boxes)
    return ConvertResult(out, data.format, to, len(data.images), n_boxes, len(data.bad))


__all__ = ["TARGETS", "ConvertResult", "convert_detection"]
