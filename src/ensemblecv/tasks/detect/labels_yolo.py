"""YOLO labels: ``images/…/x.jpg`` with ``labels/…/x.txt``, one ``class cx cy w h`` line a box.

Coordinates are normalised to 0..1 by the image size. The image of a label
file is found the way the YOLO tools do it: the last ``images`` folder of the
image path is swapped for ``labels`` and the suffix for ``.txt``, so the flat
layout (``images/``, ``labels/``), the split layout (``images/train``,
``labels/train``) and Roboflow's (``train/images``, ``train/labels``) all work.
Class names come from ``data.yaml`` (``names`` as a list or a dict) or
``classes.txt``; without either, the ids themselves are the names.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml

from ...errors import DataError
from ._common import (
    BadLabels,
    RawBox,
    RawImage,
    RawLabels,
    boxes_by_image,
    layout_key,
    list_images,
    sample_id_of,
)

IMAGES, LABELS = "images", "labels"
#: Files in a labels folder that are not label files.
_NOT_LABELS = {"classes.txt", "labels.txt", "notes.txt", "readme.txt"}


def is_yolo(root: Path) -> bool:
    """True when a ``labels`` folder (at most two levels down) holds ``.txt`` files."""
    for depth in ("", "*/", "*/*/"):
        for labels in root.glob(f"{depth}{LABELS}"):
            if labels.is_dir() and (labels / "..").resolve().joinpath(IMAGES).is_dir():
                if next(
                    (p for p in labels.rglob("*.txt") if p.name.lower() not in _NOT_LABELS), None
                ):
                    return True
    return False


def _label_path(image: Path, root: Path) -> Path | None:
    parts = list(image.relative_to(root).parts)
    if IMAGES not in parts[:-1]:
        return None
    i = len(parts) - 2 - parts[:-1][::-1].index(IMAGES)
    parts[i] = LABELS
    return root.joinpath(*parts).with_suffix(".txt")


def _names_from_yaml(root: Path) -> list[str] | None:
    for path in [root / "data.yaml", root / "dataset.yaml", *sorted(root.glob("*.yaml"))]:
        if not path.is_file():
            continue
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise DataError(f"{path} is not valid YAML: {exc}") from None
        if not isinstance(doc, dict) or "names" not in doc:
            continue
        names = doc["names"]
        if isinstance(names, dict):
            try:
                ids = sorted(int(k) for k in names)
            except (TypeError, ValueError):
                raise DataError(
                    f"{path}: 'names' keys must be class ids 0..N-1, got {list(names)[:5]}."
                ) from None
            if ids != list(range(len(ids))):
                raise DataError(
                    f"{path}: 'names' ids must be 0..{len(ids) - 1} without gaps, got {ids[:10]}."
                )
            return [str(names[k] if k in names else names[str(k)]) for k in ids]
        if isinstance(names, list):
            return [str(n) for n in names]
        raise DataError(
            f"{path}: 'names' must be a list or a dict of id: name, got {type(names).__name__}."
        )
    return None


def _names_from_txt(root: Path) -> list[str] | None:
    for path in (root / "classes.txt", root / LABELS / "classes.txt", root / "obj.names"):
        if path.is_file():
            return [
                line.strip()
                for line in path.read_text(encoding="utf-8").splitlines()
                if line.strip()
            ]
    return None


def _parse_line(text: str) -> tuple[int, list[float]] | str:
    """``(class id, [x1 y1 x2 y2] normalised)`` or the reason text of a malformed line."""
    fields = text.split()
    try:
        values = [float(v) for v in fields[1:]]
        cls = float(fields[0])
        if cls != int(cls):
            return f"class id {fields[0]!r} is not an integer"
    except (ValueError, OverflowError):  # OverflowError: int(inf); NaN is a ValueError
        return "not numbers"
    if len(values) == 4:
        cx, cy, w, h = values
        return int(cls), [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
    if len(values) == 5:  # class cx cy w h confidence (predictions, `save_conf`): a box
        cx, cy, w, h, _ = values
        return int(cls), [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
    if len(values) >= 6 and len(values) % 2 == 0:  # a segmentation polygon: its bounding box
        xs, ys = values[0::2], values[1::2]
        return int(cls), [min(xs), min(ys), max(xs), max(ys)]
    return f"{len(fields)} fields, expected 5 (class cx cy w h), 6 (… confidence) or a polygon"


def read_yolo(root: Path) -> RawLabels:
    root = Path(root)
    bad = BadLabels(root)
    classes = _names_from_yaml(root) or _names_from_txt(root)
    images, boxes, seen_labels, max_id = [], [], set(), -1
    image_files = [p for p in list_images(root) if IMAGES in p.relative_to(root).parts[:-1]]
    for path in image_files:
        sample_id = sample_id_of(path, root)
        label = _label_path(path, root)
        images.append(RawImage(sample_id, path, label if label and label.is_file() else None))
        if label is None or not label.is_file():
            continue  # a background image
        seen_labels.add(label.resolve())
        try:
            lines = label.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as exc:
            bad.add(label, None, "malformed", f"not UTF-8 text ({exc.reason})")
            continue
        for number, text in enumerate(lines, 1):
            if not text.strip():
                continue
            parsed = _parse_line(text)
            if isinstance(parsed, str):
                bad.add(label, number, "malformed", f"{parsed}: {text.strip()[:80]!r}")
                continue
            cls, xyxy = parsed
            if cls < 0 or (classes is not None and cls >= len(classes)):
                bad.add(
                    label,
                    number,
                    "unknown_class",
                    f"class id {cls}, known 0..{len(classes or []) - 1}",
                )
                continue
            max_id = max(max_id, cls)
            boxes.append(RawBox(sample_id, cls, *xyxy, file=label, line=number, normalized=True))
    for labels_dir in [p for p in root.rglob(LABELS) if p.is_dir()]:
        for label in sorted(labels_dir.rglob("*.txt")):
            if label.name.lower() in _NOT_LABELS or label.resolve() in seen_labels:
                continue
            bad.add(
                label,
                None,
                "label_without_image",
                "no image with this name in the matching images folder",
            )
    if classes is None:
        classes = [str(i) for i in range(max_id + 1)]
    return RawLabels(root, "yolo", classes, images, boxes, bad)


def write_yolo(
    images: pd.DataFrame, boxes: pd.DataFrame, classes: list[str], out: Path, place
) -> None:
    """``out/images/<key>``, ``out/labels/<key>.txt`` (8 decimals: lossless up to 10,000 px) and ``out/data.yaml``.

    ``place(src, dest)`` copies or links one image. Background images get no
    label file, as YOLO tools expect. YOLO has no crowd or difficult flag: crowd
    regions are left out (they are "ignore" areas, not objects) and difficult
    boxes are written as plain boxes; :func:`convert_detection` warns about both.
    """
    boxes = boxes[~boxes["iscrowd"].to_numpy(dtype=bool)]  # crowd regions are not objects
    by_image = boxes_by_image(boxes)
    for row in images.itertuples(index=False):
        key = layout_key(row.sample_id)
        dest = out / IMAGES / key
        dest.parent.mkdir(parents=True, exist_ok=True)
        place(row.path, dest)
        group = by_image.get(row.sample_id)
        if group is None:
            continue
        label = (out / LABELS / key).with_suffix(".txt")
        label.parent.mkdir(parents=True, exist_ok=True)
        w, h = float(row.width), float(row.height)
        lines = [
            f"{b.label} {(b.x1 + b.x2) / 2 / w:.8f} {(b.y1 + b.y2) / 2 / h:.8f} "
            f"{(b.x2 - b.x1) / w:.8f} {(b.y2 - b.y1) / h:.8f}"
            for b in group
        ]
        label.write_text("\n".join(lines) + "\n", encoding="utf-8")
    doc = {**_split_entries(images), "nc": len(classes), "names": dict(enumerate(classes))}
    (out / "data.yaml").write_text(
        yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8"
    )


_SPLITS = ("train", "val", "valid", "test")


def _split_entries(images: pd.DataFrame) -> dict[str, str]:
    """``train``/``val``/``test`` entries of data.yaml: the split folders when the images have them.

    No ``path`` key: YOLO tools then resolve the entries against the yaml's own
    folder, while a relative ``path`` is taken under their global datasets folder.
    """
    firsts = {layout_key(s).parts[0] for s in images["sample_id"] if len(layout_key(s).parts) > 1}
    nested = all(len(layout_key(s).parts) > 1 for s in images["sample_id"])
    if nested and firsts and firsts <= set(_SPLITS):
        entries = {("val" if f == "valid" else f): f"{IMAGES}/{f}" for f in sorted(firsts)}
        entries.setdefault("val", entries.get("test", entries.get("train", IMAGES)))
        return {k: entries[k] for k in ("train", "val", "test") if k in entries}
    return {"train": IMAGES, "val": IMAGES}


__all__ = ["is_yolo", "read_yolo", "write_yolo"]
