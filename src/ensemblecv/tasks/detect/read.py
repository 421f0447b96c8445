"""One entry point for detection labels in any format: :func:`read_detection`.

The result is the same two tables whatever the format (see
:class:`DetectionData`), so folds, training, the audit and ``convert`` never
look at a label file themselves. Bad labels never stop the read: they are
dropped or clipped, listed in :attr:`DetectionData.bad` and reported as one
warning (``strict=True`` raises instead). Sources are only read.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ...data.bad_inputs import bad_summary_text, write_bad_table
from ...data.samples import SampleTable
from ...errors import DataError, unknown_name_message
from ._common import (
    BAD_COLUMNS,
    BAD_REASONS,
    BadLabels,
    RawImage,
    RawLabels,
    finish,
    list_images,
    main_label,
    sample_id_of,
)
from .labels_coco import coco_files, is_coco_doc, read_coco
from .labels_labelme import is_labelme, is_labelme_doc, read_labelme
from .labels_voc import is_voc, read_voc
from .labels_yolo import is_yolo, read_yolo


def read_unlabelled(root: Path) -> RawLabels:
    """Every image below ``root``, no box: a test set to predict on (``format="images"``)."""
    images = [RawImage(sample_id_of(p, root), p) for p in list_images(root)]
    return RawLabels(root, "images", [], images, [], BadLabels(root))


_READERS = {
    "yolo": read_yolo,
    "coco": read_coco,
    "voc": read_voc,
    "labelme": read_labelme,
    "images": read_unlabelled,
}
#: Label formats that auto-detection recognises (``images`` is only ever named).
FORMATS = ("yolo", "coco", "voc", "labelme")


@dataclass
class DetectionData:
    """A detection dataset as tables.

    ``images``: ``sample_id`` (POSIX path relative to :attr:`root`), ``path``
    (absolute), ``width``/``height`` (of the picture with EXIF orientation
    applied), ``group`` (the sample id itself unless a caller merges groups).
    ``boxes``: ``sample_id``, ``label`` (0..C-1), ``class_name``, ``x1 y1 x2 y2``
    (float pixels of that picture, x2 > x1, y2 > y1), ``iscrowd``, ``difficult``.
    ``bad``: ``file``, ``line`` (or missing), ``reason`` (a key of
    :data:`BAD_REASONS`), ``detail``. Images with no box are background images.
    """

    images: pd.DataFrame
    boxes: pd.DataFrame
    classes: list[str]
    bad: pd.DataFrame
    format: str
    #: The folder sample ids are relative to.
    root: Path
    #: The path as given (for messages and the audit).
    source: str = ""

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def sample_table(self) -> SampleTable:
        """The images as the shared :class:`~ensemblecv.data.samples.SampleTable`.

        For the task-blind machinery (scan, workspace, duplicate groups): ``label``
        is the image's most frequent class, -1 for a background image, and
        ``group`` is None for an image that is a group of its own.
        """
        labels = main_label(self.images, self.boxes)
        group = self.images["group"].where(self.images["group"] != self.images["sample_id"], None)
        frame = pd.DataFrame(
            {
                "sample_id": self.images["sample_id"].to_numpy(),
                "path": self.images["path"].to_numpy(),
                "label": labels,
                "class_name": [self.classes[c] if c >= 0 else None for c in labels],
                "group": group.astype(object).to_numpy(),
                "row": np.arange(len(self.images)),
            }
        )
        return SampleTable(frame, list(self.classes), self.source, self.root)

    def background(self) -> pd.Series:
        """Sample ids of the images without any box."""
        has = self.images["sample_id"].isin(set(self.boxes["sample_id"]))
        return self.images.loc[~has, "sample_id"]


def detect_format(path: str | os.PathLike) -> str | None:
    """The label format of ``path`` (a folder or a COCO JSON file), or None if it is none of them.

    Checked in this order: Pascal VOC (``Annotations/*.xml``), YOLO (``labels``
    beside ``images``), COCO (a JSON with ``images`` and ``annotations``),
    LabelMe (JSON files with ``shapes``). A classification folder or CSV gives None.
    """
    path = Path(path)
    if path.is_file():
        if path.suffix.lower() in (".yaml", ".yml"):
            return "yolo" if is_yolo(path.parent) else None
        if path.suffix.lower() != ".json":
            return None
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError, OSError):
            return None
        return "coco" if is_coco_doc(doc) else "labelme" if is_labelme_doc(doc) else None
    if not path.is_dir():
        return None
    if is_voc(path):
        return "voc"
    if is_yolo(path):
        return "yolo"
    if coco_files(path):
        return "coco"
    if is_labelme(path):
        return "labelme"
    return None


def _resolve(path: Path, format: str | None) -> tuple[Path, str]:
    if not path.exists():
        raise DataError(f"Detection data {path} does not exist.")
    if format is not None and format not in _READERS:
        raise DataError(unknown_name_message("label format", format, _READERS))
    found = detect_format(path) if format is None else format
    if found is None:
        raise DataError(
            f"Cannot tell the label format of {path}. Expected one of: YOLO (images/ and labels/ "
            "with .txt files), COCO (a JSON file with 'images' and 'annotations'), Pascal VOC "
            "(Annotations/*.xml and JPEGImages/) or LabelMe (per-image JSON with 'shapes'). "
            "Name it with format=... (data.format in a config) if the layout is unusual."
        )
    if path.is_file():
        if found == "yolo":
            return path.parent, found
        if found == "labelme":
            raise DataError(
                f"{path} is one LabelMe file; give the folder that holds the JSON files."
            )
        if found != "coco":
            raise DataError(f"A {found} dataset is a folder; give the folder, not the file {path}.")
    return path, found


def bad_summary(bad: pd.DataFrame, limit: int = 5) -> str:
    """``'12 bad label(s): 7 box_outside_image, 5 unknown_class'`` plus the first ``limit`` rows."""
    items = (
        f"{f}" + ("" if pd.isna(line) else f":{line}") + f": {r}" + (f" ({d})" if d else "")
        for f, line, r, d in bad[BAD_COLUMNS].itertuples(index=False)
    )
    return bad_summary_text(bad, "label", items, limit)


def read_detection(
    path: str | os.PathLike, format: str | None = None, strict: bool = False
) -> DetectionData:
    """Read a detection dataset (folder or COCO JSON) in any supported format.

    ``format`` is ``yolo``, ``coco``, ``voc``, ``labelme`` or None (detect it);
    ``images`` reads an unlabelled folder (every image, no box) to predict on.
    Bad labels are dropped, or clipped for boxes past the border, listed in
    ``bad`` and reported as one :class:`UserWarning`; with ``strict`` any bad
    label raises :class:`~ensemblecv.errors.DataError` listing them.
    """
    path = Path(path)
    root, found = _resolve(path, format)
    raw: RawLabels = _READERS[found](root)
    images, boxes = finish(raw)
    bad = raw.bad.frame()
    if not len(images):
        why = ("\n" + bad_summary(bad)) if len(bad) else ""
        raise DataError(f"No readable image found in {path} (read as {found}).{why}")
    if len(bad):
        message = f"{path} ({found}): " + bad_summary(bad)
        if strict:
            raise DataError(
                message + "\nFix these labels, or read without strict (--strict) to skip them."
            )
        warnings.warn(message, UserWarning, stacklevel=2)
    return DetectionData(images, boxes, list(raw.classes), bad, found, raw.root, str(path))


def write_bad_labels(bad: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write the bad-label table as CSV (``file, line, reason, detail, meaning``)."""
    return write_bad_table(bad, path, BAD_REASONS)


__all__ = [
    "BAD_REASONS",
    "FORMATS",
    "DetectionData",
    "bad_summary",
    "detect_format",
    "read_detection",
    "write_bad_labels",
]


def read_configured(path: str, config) -> DetectionData:
    """``path`` read with the config's ``data.format`` (else detected) and ``data.strict``."""
    return read_detection(
        path, format=getattr(config.data, "format", None), strict=config.data.strict
    )
