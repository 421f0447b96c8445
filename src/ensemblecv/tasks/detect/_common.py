"""What every label reader shares: the raw records, the bad-label list, sizes, clipping, EXIF.

Each format module only parses its files into :class:`RawLabels` (boxes in
the coordinates the file uses, YOLO's normalised ones included). :func:`finish`
then does the checks that must be identical for every format — image sizes
from the file headers, EXIF rotation, clipping, empty boxes — so a dataset
converted from one format to another reports the same bad labels.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ...data.imageio import IMAGE_EXTENSIONS, read_header
from ...errors import ImageLoadError

IMAGE_COLUMNS = ["sample_id", "path", "width", "height", "group"]
BOX_COLUMNS = ["sample_id", "label", "class_name", "x1", "y1", "x2", "y2", "iscrowd", "difficult"]
BAD_COLUMNS = ["file", "line", "reason", "detail"]

#: Reason tags of bad labels: stable strings written to bad_labels.csv, with what they mean.
BAD_REASONS = {
    "box_outside_image": "box extends past the image border (clipped to it; dropped if nothing is left)",
    "box_empty": "box has zero or negative width or height (dropped)",
    "unknown_class": "class id or name is not in the class list (box dropped)",
    "malformed": "line, field or file cannot be parsed (dropped)",
    "label_without_image": "label file or entry names an image that does not exist (dropped)",
    "image_unreadable": "image header cannot be read (image and its boxes dropped)",
    "exif_rotation": "EXIF orientation swaps width and height (boxes kept, see detail)",
    "unsupported_shape": "annotation shape is not a box (point, line, circle...; dropped)",
}

#: Boxes that overshoot the border by at most this many pixels are clipped
#: silently: that is rounding (YOLO's 6 decimals, VOC's 1-based xmax = width),
#: not a labelling mistake.
CLIP_TOLERANCE = 0.5


@dataclass
class BadLabels:
    """Collects bad labels as rows of :data:`BAD_COLUMNS`; ``file`` relative to the root."""

    root: Path
    rows: list[tuple] = field(default_factory=list)

    def add(self, file: str | os.PathLike, line: int | None, reason: str, detail: str = "") -> None:
        assert reason in BAD_REASONS, reason
        self.rows.append((display_path(file, self.root), line, reason, detail))

    def frame(self) -> pd.DataFrame:
        frame = pd.DataFrame(self.rows, columns=BAD_COLUMNS)
        order = frame["line"].fillna(-1).astype(float)
        frame = frame.iloc[np.lexsort((order.to_numpy(), frame["file"].to_numpy()))]
        frame = frame.reset_index(drop=True)
        frame["line"] = frame["line"].astype("Int64")  # None stays missing, numbers stay ints
        return frame


@dataclass
class RawImage:
    """One image as a reader found it; ``label_size`` is the (w, h) the label file records."""

    sample_id: str
    path: Path
    label_file: Path | None = None
    label_size: tuple[int, int] | None = None


@dataclass
class RawBox:
    """One box in the file's own coordinates; ``normalized`` for YOLO's 0..1 centre format."""

    sample_id: str
    label: int
    x1: float
    y1: float
    x2: float
    y2: float
    file: Path
    line: int | None = None
    iscrowd: bool = False
    difficult: bool = False
    normalized: bool = False


@dataclass
class RawLabels:
    root: Path
    format: str
    classes: list[str]
    images: list[RawImage]
    boxes: list[RawBox]
    bad: BadLabels


def display_path(path: str | os.PathLike, root: Path) -> str:
    """``path`` relative to ``root`` (POSIX) when inside it, else absolute."""
    path = Path(path)
    try:
        return path.absolute().relative_to(root.absolute()).as_posix()
    except ValueError:
        return str(path.absolute())


def sample_id_of(path: Path, root: Path) -> str:
    return Path(os.path.relpath(path.absolute(), root.absolute())).as_posix()


#: Image folder names of the formats' layouts, dropped from a sample id when converting.
LAYOUT_IMAGE_DIRS = ("images", "JPEGImages")


def layout_key(sample_id: str) -> Path:
    """The image path a converted layout puts below its image folder.

    ``images/train/a.jpg`` (YOLO) and ``JPEGImages/train/a.jpg`` (VOC) both
    become ``train/a.jpg``, so converting back and forth does not nest
    ``images/images/``.
    """
    parts = Path(sample_id).parts
    if len(parts) > 1 and parts[0] in LAYOUT_IMAGE_DIRS:
        return Path(*parts[1:])
    return Path(sample_id)


def boxes_by_image(boxes: pd.DataFrame) -> dict[str, list]:
    """Box rows (named tuples) per sample id, in table order: one pass, not a groupby per image."""
    out: dict[str, list] = {}
    for box in boxes.itertuples(index=False):
        out.setdefault(box.sample_id, []).append(box)
    return out


def list_images(folder: Path) -> list[Path]:
    """Image files below ``folder`` (known extensions only), sorted for a stable order."""
    if not folder.is_dir():
        return []
    return sorted(
        p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
    )


def find_image(folder: Path, stem: str) -> Path | None:
    """The image ``folder/stem.<ext>`` for any known extension (either case), or None."""
    for ext in sorted(IMAGE_EXTENSIONS):
        for candidate in (folder / f"{stem}{ext}", folder / f"{stem}{ext.upper()}"):
            if candidate.is_file():
                return candidate
    return None


def _from_raw_frame(box: np.ndarray, orientation: int, raw_w: int, raw_h: int) -> np.ndarray:
    """Map x1 y1 x2 y2 in stored pixels to the EXIF-rotated picture (orientations 5-8)."""
    xs, ys = box[[0, 2]], box[[1, 3]]
    if orientation == 5:  # transpose
        nx, ny = ys, xs
    elif orientation == 6:  # turned 90° clockwise for display
        nx, ny = raw_h - ys, xs
    elif orientation == 7:  # transverse
        nx, ny = raw_h - ys, raw_w - xs
    else:  # 8: turned 90° counter-clockwise for display
        nx, ny = ys, raw_w - xs
    return np.array([nx.min(), ny.min(), nx.max(), ny.max()])


def finish(raw: RawLabels) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The images and boxes tables, after the checks every format shares.

    Boxes end in pixels of the picture as decoded with EXIF orientation
    applied (what training sees). When the orientation swaps width and height
    the image is listed as ``exif_rotation``: if its label file records the
    *stored* size (COCO/VOC/LabelMe do) the boxes were drawn on the stored
    pixels and are rotated with the picture; otherwise (YOLO's normalised
    boxes, or a recorded size equal to the displayed one) they are taken to be
    drawn on the picture as viewers show it, and kept.
    """
    sizes, images = _image_sizes(raw)
    rows = []
    for box in raw.boxes:
        size = sizes.get(box.sample_id)
        if size is not None:  # None: its image is unreadable and already listed
            row = _checked_box(box, size, raw.classes, raw.bad)
            if row is not None:
                rows.append(row)
    return _tables(images, rows)


def _image_sizes(raw: RawLabels) -> tuple[dict[str, tuple[int, int, int]], list[tuple]]:
    """Header sizes per sample id (orientation negated: boxes to rotate) and image rows."""
    sizes: dict[str, tuple[int, int, int]] = {}
    images = []
    for image in raw.images:
        try:
            width, height, orientation = read_header(image.path)
        except ImageLoadError as exc:
            detail = exc.reason + (f": {exc.detail}" if exc.detail else "")
            raw.bad.add(image.path, None, "image_unreadable", detail)
            continue
        sizes[image.sample_id] = (width, height, orientation)
        path = str(Path(image.path).absolute())
        images.append((image.sample_id, path, width, height, image.sample_id))
        if orientation not in (5, 6, 7, 8):
            continue
        stored = (height, width)
        rotate = image.label_size == stored and width != height
        raw.bad.add(
            image.label_file or image.path,
            None,
            "exif_rotation",
            f"{display_path(image.path, raw.root)}: EXIF orientation {orientation}, stored "
            f"{stored[0]}x{stored[1]}, shown {width}x{height}; "
            + (
                "the label file records the stored size, so its boxes were rotated with the picture"
                if rotate
                else "boxes taken as drawn on the picture as shown"
            ),
        )
        if rotate:
            sizes[image.sample_id] = (width, height, -orientation)
    return sizes, images


def _checked_box(box: RawBox, size: tuple[int, int, int], classes: list[str], bad: BadLabels):
    """The box row in pixels of the shown picture, clipped; None (and listed) when unusable."""
    width, height, orientation = size
    xyxy = np.array([box.x1, box.y1, box.x2, box.y2], dtype=np.float64)
    if box.normalized:
        xyxy *= [width, height, width, height]
    elif orientation < 0:
        xyxy = _from_raw_frame(xyxy, -orientation, height, width)
    where = f"{box.x1:g} {box.y1:g} {box.x2:g} {box.y2:g}" + (
        " (normalised)" if box.normalized else ""
    )
    if not np.isfinite(xyxy).all():
        bad.add(box.file, box.line, "malformed", f"non-finite coordinates {where}")
        return None
    if xyxy[2] <= xyxy[0] or xyxy[3] <= xyxy[1]:
        bad.add(box.file, box.line, "box_empty", f"x1 y1 x2 y2 = {where}")
        return None
    clipped = np.clip(xyxy, 0, [width, height, width, height])
    if float(np.abs(clipped - xyxy).max()) > CLIP_TOLERANCE:
        gone = clipped[2] <= clipped[0] or clipped[3] <= clipped[1]
        bad.add(
            box.file,
            box.line,
            "box_outside_image",
            f"x1 y1 x2 y2 = {where} in a {width}x{height} image; "
            + ("entirely outside, dropped" if gone else "clipped"),
        )
        if gone:
            return None
    label = box.label
    return (box.sample_id, label, classes[label], *clipped.tolist(), box.iscrowd, box.difficult)


def _tables(images: list[tuple], rows: list[tuple]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Images sorted by sample id; boxes in that image order, each image's in file order."""
    image_frame = pd.DataFrame(images, columns=IMAGE_COLUMNS)
    image_frame = image_frame.sort_values("sample_id", kind="stable").reset_index(drop=True)
    image_frame[["width", "height"]] = image_frame[["width", "height"]].astype(np.int64)
    box_frame = pd.DataFrame(rows, columns=BOX_COLUMNS)
    order = {sid: i for i, sid in enumerate(image_frame["sample_id"])}
    box_frame = box_frame.iloc[
        np.argsort(box_frame["sample_id"].map(order).to_numpy(), kind="stable")
    ].reset_index(drop=True)
    types = {"label": np.int64, "iscrowd": bool, "difficult": bool}
    return image_frame, box_frame.astype(
        {**types, **dict.fromkeys(["x1", "y1", "x2", "y2"], np.float64)}
    )


def main_label(images: pd.DataFrame, boxes: pd.DataFrame) -> np.ndarray:
    """Per image its most frequent class (the lowest on ties), -1 for a background image."""
    if not len(boxes):
        return np.full(len(images), -1, dtype=np.int64)
    counts = boxes.groupby(["sample_id", "label"]).size().reset_index(name="n")
    counts = counts.sort_values(["sample_id", "n", "label"], ascending=[True, False, True])
    top = counts.drop_duplicates("sample_id").set_index("sample_id")["label"]
    return top.reindex(images["sample_id"].to_numpy()).fillna(-1).to_numpy(dtype=np.int64)
