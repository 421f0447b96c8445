"""What a layout reader found before any mask is decoded: the images, where their masks
should be, and the class list it names. Shared by the file readers (:mod:`.read`) and the
COCO reader (:mod:`.coco`), which the generic reader dispatches to."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import DataError
from .masks import read_classes_file


@dataclass
class _Candidate:
    """One image a layout found, and where its mask should be."""

    sample_id: str
    image: Path
    mask: Path | None
    group: object = None
    split: str | None = None
    #: Where the mask was looked for (for a ``mask_missing`` detail).
    expected: str = ""


@dataclass
class _Layout:
    root: Path
    format: str
    candidates: list[_Candidate]
    bad: list[tuple]
    classes: list[str] | None = None
    palette: np.ndarray | None = None
    ignore_color: tuple[int, int, int] | None = None
    #: COCO: sample id -> annotations to rasterise instead of decoding a file.
    annotations: dict | None = None
    labelled: bool = True
    has_split: bool = False


def _classes_arg(classes, root: Path) -> tuple[list[str] | None, np.ndarray | None]:
    """``classes``: a list, a path to a classes file, or None (then ``root/classes.txt`` if any)."""
    if classes is None:
        found = root / "classes.txt"
        return read_classes_file(found) if found.is_file() else (None, None)
    if isinstance(classes, (str, os.PathLike)):
        path = Path(classes)
        if not path.is_file():
            raise DataError(f"classes file {path} does not exist.")
        return read_classes_file(path)
    names = [str(c) for c in classes]
    if not names or len(set(names)) != len(names):
        raise DataError(f"classes must be distinct names, got {names!r:.200}")
    return names, None
