"""The sample table itself and the ImageFolder reader every folder layout builds on.

Kept apart from :mod:`.samples` (which picks a reader for a source) so that layout
readers such as :mod:`.domains` build on it without importing the dispatcher.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError
from .imageio import IMAGE_EXTENSIONS, has_image_extension

COLUMNS = ["sample_id", "path", "label", "class_name", "group", "row"]
_SYSTEM_FILES = {"thumbs.db", "desktop.ini", ".ds_store"}


@dataclass
class SampleTable:
    """A dataset as rows of samples plus its fixed class order."""

    frame: pd.DataFrame
    classes: list[str]
    source: str
    root: Path | None = None
    #: Files seen but not used as samples, as (path, reason) — reported, never silent.
    ignored: list[tuple[str, str]] = field(default_factory=list)
    #: Extra columns of a CSV index (``ID`` ...), aligned with ``frame`` rows.
    extra: pd.DataFrame | None = None

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def labelled(self) -> bool:
        return bool(len(self.frame)) and bool((self.frame["label"] >= 0).all())

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def class_counts(self) -> pd.Series:
        """Images per class in class order, zeros included."""
        labels = self.frame["label"].to_numpy()
        counts = np.bincount(labels[labels >= 0], minlength=len(self.classes))
        return pd.Series(counts, index=self.classes, name="images")

    def subset(self, mask) -> SampleTable:
        """Rows where ``mask`` is true, same classes (class indices stay valid)."""
        mask = np.asarray(mask, dtype=bool)
        extra = None if self.extra is None else self.extra[mask].reset_index(drop=True)
        return SampleTable(
            self.frame[mask].reset_index(drop=True),
            list(self.classes),
            self.source,
            self.root,
            list(self.ignored),
            extra,
        )


def _walk_files(root: Path) -> list[Path]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        out += [Path(dirpath) / f for f in sorted(filenames)]
    return out


def _classify_file(path: Path) -> str | None:
    """None if ``path`` is a candidate image, else the reason it is ignored."""
    name = path.name
    if name.lower() in _SYSTEM_FILES or name.startswith("."):
        return "hidden or system file"
    if not has_image_extension(path):
        return f"extension {path.suffix!r} is not an image type"
    return None


def from_folder(root: str | os.PathLike) -> SampleTable:
    """ImageFolder layout: one sub-folder per class, any nesting below it.

    A folder with images but no class sub-folders is read as an unlabelled set
    (a test folder). Loose files next to class folders are reported as ignored.
    """
    root = Path(root).expanduser().absolute()
    subdirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    loose = sorted(f for f in root.iterdir() if f.is_file())
    ignored: list[tuple[str, str]] = []
    rows: list[tuple[str, str, int, str | None]] = []
    classes: list[str] = []
    class_dirs = [d for d in subdirs if any(_classify_file(f) is None for f in _walk_files(d))]
    if not class_dirs:
        for f in _walk_files(root):
            reason = _classify_file(f)
            if reason:
                ignored.append((str(f), reason))
            else:
                rows.append((f.relative_to(root).as_posix(), str(f), -1, None))
        if not rows:
            raise DataError(
                f"No images found in {root}. Expected one sub-folder per class "
                f"(ImageFolder layout) or image files ({', '.join(sorted(IMAGE_EXTENSIONS))})."
            )
    else:
        for d in subdirs:
            if d not in class_dirs:
                ignored.append((str(d), "folder contains no images (not used as a class)"))
        for f in loose:
            ignored.append((str(f), "file outside any class folder"))
        classes = [d.name for d in class_dirs]
        for label, d in enumerate(class_dirs):
            for f in _walk_files(d):
                reason = _classify_file(f)
                if reason:
                    ignored.append((str(f), reason))
                else:
                    rows.append((f.relative_to(root).as_posix(), str(f), label, d.name))
    frame = pd.DataFrame(rows, columns=["sample_id", "path", "label", "class_name"])
    frame["label"] = frame["label"].astype(np.int64)
    frame["group"] = pd.Series([None] * len(frame), dtype=object)
    frame["row"] = np.arange(len(frame))
    return SampleTable(frame[COLUMNS], classes, str(root), root, ignored)
