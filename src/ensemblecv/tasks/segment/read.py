"""One entry point for segmentation data in any layout: :func:`read_segmentation`.

Every layout ends as the same :class:`SegmentationData` (an image table, the
classes, a palette, the ignore index, the bad-input list), so folds, the
workspace, training, the audit and ``convert`` never look at a layout
themselves. Every mask is decoded once here — it must be, to find sizes that
differ from the image's and values that are no class — and its pixel count
per class is kept, which the folds (presence) and the audit (pixel shares)
reuse. Bad input never stops the read: the image is left out, listed in
:attr:`SegmentationData.bad` with its reason and reported as one warning
(``strict=True`` raises instead). Sources are only read.
"""

from __future__ import annotations

import csv
import json
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ...data.bad_inputs import bad_summary_text, write_bad_table
from ...data.imageio import read_header
from ...errors import DataError, ImageLoadError, unknown_name_message
from ..detect._common import display_path, find_image, list_images, sample_id_of
from .layout import _Candidate, _classes_arg, _Layout
from .masks import (
    BAD_REASONS,
    VOC_CLASSES,
    VOC_IGNORE_COLOR,
    MaskError,
    decode_mask,
    png_palette,
    value_counts,
    voc_palette,
)

IMAGE_COLUMNS = ["sample_id", "image_path", "mask_path", "width", "height", "group"]
BAD_COLUMNS = ["path", "reason", "detail"]
#: Layouts auto-detection recognises (``images``, an unlabelled folder, is only ever named).
FORMATS = ("voc", "folders", "csv", "coco")
#: Folder names the ``folders`` layout accepts for its masks, in this order.
MASK_DIRS = ("masks", "annotations")


@dataclass
class SegmentationData:
    """A segmentation dataset as tables.

    ``images``: ``sample_id`` (POSIX path of the image relative to :attr:`root`,
    the id everything keys on), ``image_path`` (absolute), ``mask_path``
    (absolute; for COCO the JSON file the mask is rasterised from),
    ``width``/``height`` (of the image with EXIF orientation applied, which
    the mask matches), ``group`` (None unless the layout gives one, e.g. a CSV
    ``group`` column) and, for VOC, ``split`` (the ImageSets list). Sorted by
    sample id. ``bad``: ``path`` (relative to the root where inside it),
    ``reason`` (a key of :data:`~.masks.BAD_REASONS`), ``detail``.
    """

    images: pd.DataFrame
    classes: list[str]
    palette: np.ndarray | None
    ignore_index: int
    bad: pd.DataFrame
    format: str = ""
    #: The folder sample ids are relative to.
    root: Path = field(default_factory=Path)
    #: The path as given (for messages and the audit).
    source: str = ""
    #: The colour RGB masks use for ``ignore_index`` (VOC's (224, 224, 192)), if any.
    ignore_color: tuple[int, int, int] | None = None
    #: Pixels per class per image, ``(N, C)`` int64, measured when read (None: not yet).
    counts: np.ndarray | None = None
    #: Pixels at ``ignore_index`` per image, ``(N,)`` int64.
    ignored: np.ndarray | None = None
    #: COCO: sample id -> [(class index, segmentation, iscrowd)], rasterised by load_mask.
    annotations: dict = field(default_factory=dict, repr=False)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.images)

    def load_mask(self, i: int) -> np.ndarray:
        """Mask of row ``i``: ``(height, width)`` uint8 class indices and :attr:`ignore_index`.

        Palette PNGs give their indices, grey PNGs their values, RGB masks are
        mapped through :attr:`palette`, COCO annotations are rasterised (see
        :mod:`.coco`). A mask that changed since the read (another size,
        values that are no class) raises :class:`~.masks.MaskError`.
        """
        row = self.images.iloc[int(i)]
        h, w = int(row["height"]), int(row["width"])
        if row["sample_id"] in self.annotations:
            from .coco import rasterize

            return rasterize(self.annotations[row["sample_id"]], h, w, self.ignore_index)
        if row["mask_path"] is None or pd.isna(row["mask_path"]):
            raise MaskError(row["image_path"], "mask_missing", "the image has no mask")
        mask = decode_mask(row["mask_path"], self.palette, self.ignore_index, self.ignore_color)
        _check_mask(mask, row["mask_path"], w, h, self.num_classes, self.ignore_index)
        return mask

    def pixel_counts(self) -> np.ndarray:
        """Pixels per class per image, ``(N, C)`` int64 (decoding every mask if not yet known)."""
        if self.counts is None or len(self.counts) != len(self.images):
            full = np.stack([value_counts(self.load_mask(i)) for i in range(len(self))])
            full = full.reshape(len(self), 256)
            self.counts = full[:, : self.num_classes].copy()
            self.ignored = full[:, self.ignore_index].copy()
        return self.counts

    def presence(self) -> np.ndarray:
        """Which classes each image holds, ``(N, C)`` bool (the fold stratification key)."""
        return self.pixel_counts() > 0

    def subset(self, rows) -> SegmentationData:
        """The dataset restricted to ``rows`` (a boolean mask or positions), counts kept aligned."""
        rows = np.asarray(rows)
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        images = self.images.iloc[rows].reset_index(drop=True)
        keep = set(images["sample_id"])
        return SegmentationData(
            images,
            list(self.classes),
            self.palette,
            self.ignore_index,
            self.bad,
            self.format,
            self.root,
            self.source,
            self.ignore_color,
            None if self.counts is None else self.counts[rows],
            None if self.ignored is None else self.ignored[rows],
            {k: v for k, v in self.annotations.items() if k in keep},
        )


def _check_mask(mask: np.ndarray, path, width: int, height: int, k: int, ignore: int) -> None:
    if mask.shape != (height, width):
        raise MaskError(
            path,
            "size_mismatch",
            f"mask {mask.shape[1]}x{mask.shape[0]}, image {width}x{height}",
        )
    if k < 256:
        counts = value_counts(mask)
        counts[ignore] = 0
        extra = np.flatnonzero(counts[k:]) + k
        if len(extra):
            raise MaskError(path, "unknown_value", _values_detail(extra, counts, k, ignore))


def _values_detail(values: np.ndarray, counts: np.ndarray, k: int, ignore: int) -> str:
    shown = ", ".join(str(int(v)) for v in values[:8]) + (" ..." if len(values) > 8 else "")
    return (
        f"value(s) {shown} ({int(counts[values].sum()):,} px) are no class "
        f"({k} classes, 0..{k - 1}; ignore_index {ignore})"
    )


# ----------------------------------------------------------------- layouts


def _read_folders(root: Path, classes) -> _Layout:
    """``images/`` + ``masks/`` (or ``annotations/``): pairs matched by path without suffix."""
    image_dir = root / "images"
    mask_dir = next((root / d for d in MASK_DIRS if (root / d).is_dir()), root / MASK_DIRS[0])
    masks: dict[str, Path] = {}
    # .png first: a folder may hold a.png (the mask) beside a.jpg (a stray preview).
    for path in sorted(list_images(mask_dir), key=lambda p: (p.suffix.lower() != ".png", p)):
        masks.setdefault(path.relative_to(mask_dir).with_suffix("").as_posix(), path)
    found, bad, used = [], [], set()
    for image in list_images(image_dir):
        key = image.relative_to(image_dir).with_suffix("").as_posix()
        mask = masks.get(key)
        used.add(key)
        found.append(
            _Candidate(
                sample_id_of(image, root), image, mask, expected=f"{mask_dir.name}/{key}.png"
            )
        )
    for key, mask in masks.items():
        if key not in used:
            bad.append((mask, "image_missing", f"no {image_dir.name}/{key}.* for this mask"))
    names, palette = _classes_arg(classes, root)
    return _Layout(root, "folders", found, bad, names, palette)


def _voc_lists(root: Path, list_file: Path | None) -> list[tuple[str, str, Path]]:
    """``(id, split, list file)`` from ``ImageSets/Segmentation``; trainval only where it adds ids."""
    if list_file is not None:
        files = [list_file]
    else:
        files = sorted((root / "ImageSets" / "Segmentation").glob("*.txt"))
        # trainval = train ∪ val: read it last so its ids keep the finer split name.
        files.sort(key=lambda p: p.stem == "trainval")
    out, seen = [], set()
    for path in files:
        for line in path.read_text(encoding="utf-8").splitlines():
            parts = line.split()
            if parts and parts[0] not in seen:
                seen.add(parts[0])
                out.append((parts[0], path.stem, path))
    return out


def _read_voc(root: Path, classes, list_file: Path | None = None) -> _Layout:
    """VOC: ``JPEGImages/``, palette PNGs in ``SegmentationClass/``, ids from ``ImageSets/Segmentation``."""
    image_dir, mask_dir = root / "JPEGImages", root / "SegmentationClass"
    entries = _voc_lists(root, list_file)
    has_split = bool(entries)
    if not entries:
        entries = [(p.stem, None, p) for p in sorted(mask_dir.glob("*.png"))]
    found, bad = [], []
    for image_id, split, listed_in in entries:
        image = find_image(image_dir, image_id)
        mask = mask_dir / f"{image_id}.png"
        if image is None:
            where = listed_in if has_split else mask
            bad.append((where, "image_missing", f"{image_id}: no JPEGImages/{image_id}.jpg"))
            continue
        found.append(
            _Candidate(
                sample_id_of(image, root),
                image,
                mask if mask.is_file() else None,
                split=split,
                expected=f"SegmentationClass/{image_id}.png",
            )
        )
    names, palette = _classes_arg(classes, root)
    if names is None:
        names = list(VOC_CLASSES)
    if palette is None:
        palette = voc_palette(len(names))
    return _Layout(root, "voc", found, bad, names, palette, VOC_IGNORE_COLOR, has_split=has_split)


def _read_csv(path: Path, classes) -> _Layout:
    """A CSV with ``image_path``, ``mask_path`` (relative to the CSV's folder) and maybe ``group``."""
    root = path.parent
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"{path} is not a readable CSV: {exc}") from None
    missing = [c for c in ("image_path", "mask_path") if c not in frame.columns]
    if missing:
        raise DataError(
            f"{path} lacks the column(s) {', '.join(missing)}; a segmentation CSV needs "
            f"image_path and mask_path (found: {', '.join(map(str, frame.columns))})."
        )
    found, bad, seen = [], [], set()
    group_col = "group" if "group" in frame.columns else None
    for n, row in enumerate(frame.to_dict("records"), 2):  # line 1 is the header
        where = f"{path.name} line {n}"
        image_text, mask_text = row["image_path"].strip(), row["mask_path"].strip()
        if not image_text:
            bad.append((path, "malformed", f"{where}: empty image_path"))
            continue
        image = (root / image_text) if not Path(image_text).is_absolute() else Path(image_text)
        if not image.is_file():
            bad.append((image, "image_missing", f"{where}: {image_text} not found"))
            continue
        sample_id = sample_id_of(image, root)
        if sample_id in seen:
            bad.append((image, "malformed", f"{where}: {image_text} is listed twice; first kept"))
            continue
        seen.add(sample_id)
        mask = None
        if mask_text:
            mask = (root / mask_text) if not Path(mask_text).is_absolute() else Path(mask_text)
            mask = mask if mask.is_file() else None
        group = (row[group_col].strip() or None) if group_col else None
        expected = f"{where}: " + (f"{mask_text} not found" if mask_text else "empty mask_path")
        found.append(_Candidate(sample_id, image, mask, group=group, expected=expected))
    names, palette = _classes_arg(classes, root)
    return _Layout(root, "csv", found, bad, names, palette)


def _read_images(root: Path, classes) -> _Layout:
    """Every image below ``root``, no mask: a test set to predict on."""
    found = [_Candidate(sample_id_of(p, root), p, None) for p in list_images(root)]
    names, palette = _classes_arg(classes, root)
    return _Layout(root, "images", found, [], names, palette, labelled=False)


def _read_coco(path: Path, classes) -> _Layout:
    from .coco import read_coco_masks

    return read_coco_masks(path, classes)


_READERS: dict[str, Callable] = {
    "voc": _read_voc,
    "folders": _read_folders,
    "csv": _read_csv,
    "coco": _read_coco,
    "images": _read_images,
}


def _is_voc_list(path: Path) -> bool:
    return (
        path.suffix == ".txt"
        and path.parent.name == "Segmentation"
        and path.parent.parent.name == "ImageSets"
    )


def _csv_has_masks(path: Path) -> bool:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            header = next(csv.reader(f), [])
    except (OSError, UnicodeDecodeError):
        return False
    return {"image_path", "mask_path"} <= {h.strip() for h in header}


def detect_format(path: str | os.PathLike) -> str | None:
    """The segmentation layout of ``path``, or None if it is none of them.

    ``voc``: a folder with ``JPEGImages/`` and ``SegmentationClass/`` (or one of
    its ``ImageSets/Segmentation/*.txt`` lists, which reads that split only);
    ``folders``: ``images/`` beside ``masks/`` (or ``annotations/``) holding
    image files; ``csv``: a CSV with ``image_path`` and ``mask_path``;
    ``coco``: a COCO JSON (or a folder holding one) whose annotations carry
    polygons or RLE. Checked in that order.
    """
    from ..detect.labels_coco import coco_files, is_coco_doc

    path = Path(path)
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".csv":
            return "csv" if _csv_has_masks(path) else None
        if _is_voc_list(path):
            return "voc"
        if suffix == ".json":
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError, OSError):
                return None
            return "coco" if is_coco_doc(doc) else None
        return None
    if not path.is_dir():
        return None
    if (path / "JPEGImages").is_dir() and (path / "SegmentationClass").is_dir():
        return "voc"
    if (path / "images").is_dir() and any(list_images(path / d) for d in MASK_DIRS):
        return "folders"
    if coco_files(path):
        return "coco"
    return None


def _resolve(path: Path, format: str | None) -> tuple[Path, str, Path | None]:
    """``(root or file, format, VOC list file)``."""
    if not path.exists():
        raise DataError(f"Segmentation data {path} does not exist.")
    if format is not None and format not in _READERS:
        raise DataError(unknown_name_message("segmentation format", format, _READERS))
    found = detect_format(path) if format is None else format
    if found is None:
        raise DataError(
            f"Cannot tell the segmentation layout of {path}. Expected one of: Pascal VOC "
            "(JPEGImages/ and SegmentationClass/), folders (images/ and masks/, pairs matched "
            "by file name without suffix), a CSV with image_path and mask_path columns, or a "
            "COCO JSON with polygon/RLE annotations. Name it with format=... (data.format in "
            "a config) if the layout is unusual."
        )
    if found == "voc" and path.is_file():
        if not _is_voc_list(path):
            raise DataError(
                f"A VOC dataset is a folder (or an ImageSets/Segmentation list): {path}"
            )
        return path.parents[2], found, path
    if found in ("folders", "images") and not path.is_dir():
        raise DataError(f"A {found} dataset is a folder; give the folder, not the file {path}.")
    if found == "csv" and not path.is_file():
        raise DataError(f"format csv needs the CSV file itself, not the folder {path}.")
    return path, found, None


# ----------------------------------------------------------------- the shared checks


def _finish(layout: _Layout, ignore_index: int, inferred_ok: bool = True):
    """Decode every mask once: sizes, modes and values checked the same way for every layout."""
    bad = [(display_path(p, layout.root), r, d) for p, r, d in layout.bad]
    rows, full = [], []
    for c in layout.candidates:
        try:
            width, height, orientation = read_header(c.image)
        except ImageLoadError as exc:
            reason = "image_missing" if exc.reason == "missing" else "unreadable"
            detail = exc.reason + (f": {exc.detail}" if exc.detail else "")
            bad.append((display_path(c.image, layout.root), reason, detail))
            continue
        mask_source = c.mask
        if layout.labelled:
            try:
                if layout.annotations is not None:
                    from .coco import rasterize

                    mask = rasterize(
                        layout.annotations.get(c.sample_id, []), height, width, ignore_index
                    )
                elif c.mask is None:
                    raise MaskError(c.image, "mask_missing", c.expected)
                else:
                    mask = decode_mask(c.mask, layout.palette, ignore_index, layout.ignore_color)
                    _check_mask(mask, c.mask, width, height, 256, ignore_index)
            except MaskError as exc:
                detail = exc.detail
                if exc.reason == "size_mismatch" and orientation in (5, 6, 7, 8):
                    detail += (
                        f"; the image's EXIF orientation {orientation} turns it for display "
                        "(as training sees it): the mask matches the stored pixels, rotate it"
                    )
                bad.append((display_path(exc.path, layout.root), exc.reason, detail))
                continue
            full.append(value_counts(mask))
        rows.append(
            (c.sample_id, str(Path(c.image).absolute()),
             None if mask_source is None else str(Path(mask_source).absolute()),
             int(width), int(height), c.group, c.split)
        )  # fmt: skip
    images = pd.DataFrame(rows, columns=[*IMAGE_COLUMNS, "split"])
    if not layout.labelled:
        full = [np.zeros(256, np.int64)] * len(rows)
    full = np.stack(full).astype(np.int64) if full else np.zeros((0, 256), np.int64)
    return images, full, bad


def _settle_classes(layout: _Layout, full: np.ndarray, ignore_index: int) -> list[str]:
    if layout.classes is not None:
        return list(layout.classes)
    values = full.sum(0)
    values[ignore_index] = 0
    top = int(np.flatnonzero(values).max()) if values.any() else 0
    if top == 0 and full[:, ignore_index].any():
        warnings.warn(
            f"Every mask holds only 0 and {ignore_index} (= ignore_index): if {ignore_index} is "
            "your foreground (a binary mask saved as 0/255), save it as 0/1 or set another "
            "ignore_index; as read, every foreground pixel is ignored.",
            UserWarning,
            stacklevel=3,
        )
    return [f"class_{i}" for i in range(top + 1)]


def bad_summary(bad: pd.DataFrame, limit: int = 5) -> str:
    """``'3 bad file(s): 2 size_mismatch, 1 mask_missing'`` plus the first ``limit`` rows."""
    items = (
        f"{p}: {r}" + (f" ({d})" if d else "")
        for p, r, d in bad[BAD_COLUMNS].itertuples(index=False)
    )
    return bad_summary_text(bad, "file", items, limit)


def read_segmentation(
    path: str | os.PathLike,
    format: str | None = None,
    classes: list[str] | str | os.PathLike | None = None,
    ignore_index: int = 255,
    strict: bool = False,
) -> SegmentationData:
    """Read a segmentation dataset (folder, CSV, COCO JSON or VOC split list) in any layout.

    ``format``: ``voc``, ``folders``, ``csv``, ``coco`` or None (detect it);
    ``images`` reads an unlabelled folder (every image, no mask) to predict on.
    ``classes``: names in index order, or a classes file (one name per line,
    optionally ``name R G B``); default ``classes.txt`` at the root, else VOC's
    21 for ``voc``, COCO's categories after ``background`` for ``coco``, and
    ``class_0..class_K`` up to the largest value found otherwise.
    ``ignore_index`` (0..255) marks pixels never scored. Images whose mask is
    unusable are left out, listed in ``bad`` and reported as one
    :class:`UserWarning`; with ``strict`` they raise
    :class:`~ensemblecv.errors.DataError` listing them.
    """
    if not 0 <= int(ignore_index) <= 255:
        raise DataError(f"ignore_index must be 0..255 (masks are 8-bit), got {ignore_index}.")
    ignore_index = int(ignore_index)
    path = Path(path)
    where, found, list_file = _resolve(path, format)
    layout = (
        _read_voc(where, classes, list_file) if found == "voc" else _READERS[found](where, classes)
    )
    if layout.ignore_color is None:
        # RGB masks: VOC's void colour means ignore unless a class has that colour.
        layout.ignore_color = VOC_IGNORE_COLOR
    images, full, bad_rows = _finish(layout, ignore_index)
    names = _settle_classes(layout, full, ignore_index)
    k = len(names)
    if k > 256 or (k > ignore_index and ignore_index >= 0 and k == 256):
        raise DataError(f"{k} classes do not fit 8-bit masks with ignore_index {ignore_index}.")
    if ignore_index < k:
        raise DataError(
            f"ignore_index {ignore_index} is class {names[ignore_index]!r} of the {k} classes; "
            "choose an ignore_index above the class indices (default 255)."
        )
    if layout.labelled and len(images):
        others = full.copy()
        others[:, :k] = 0
        others[:, ignore_index] = 0
        wrong = others.any(1)
        for i in np.flatnonzero(wrong):
            values = np.flatnonzero(others[i])
            bad_rows.append(
                (
                    display_path(images.at[i, "mask_path"], layout.root),
                    "unknown_value",
                    _values_detail(values, full[i], k, ignore_index),
                )
            )
        images, full = images[~wrong].reset_index(drop=True), full[~wrong]
    order = np.argsort(images["sample_id"].to_numpy(), kind="stable")
    images, full = images.iloc[order].reset_index(drop=True), full[order]
    if not layout.has_split:
        images = images.drop(columns="split")
    images["group"] = images["group"].astype(object).where(images["group"].notna(), None)
    bad = pd.DataFrame(bad_rows, columns=BAD_COLUMNS).sort_values(["path", "reason"], kind="stable")
    bad = bad.reset_index(drop=True)
    palette = layout.palette
    if palette is None and layout.labelled and len(images) and layout.annotations is None:
        palette = png_palette(images.at[0, "mask_path"], k)
    if not len(images):
        why = ("\n" + bad_summary(bad)) if len(bad) else ""
        raise DataError(f"No usable image found in {path} (read as {found}).{why}")
    if len(bad):
        message = f"{path} ({found}): " + bad_summary(bad)
        if strict:
            raise DataError(
                message + "\nFix these files, or read without strict (--strict) to leave them out."
            )
        warnings.warn(message + "\nThese images are left out.", UserWarning, stacklevel=2)
    annotations = layout.annotations or {}
    return SegmentationData(
        images=images,
        classes=names,
        palette=None if palette is None else np.asarray(palette, np.uint8)[:k],
        ignore_index=ignore_index,
        bad=bad,
        format=found,
        root=layout.root,
        source=str(path),
        ignore_color=layout.ignore_color,
        counts=full[:, :k].copy() if layout.labelled else None,
        ignored=full[:, ignore_index].copy() if layout.labelled else None,
        annotations={s: annotations[s] for s in images["sample_id"] if s in annotations},
    )


def write_bad_masks(bad: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write the bad-input table as CSV (``path, reason, detail, meaning``)."""
    return write_bad_table(bad, path, BAD_REASONS)


__all__ = [
    "BAD_REASONS",
    "FORMATS",
    "SegmentationData",
    "bad_summary",
    "detect_format",
    "read_segmentation",
    "write_bad_masks",
]
