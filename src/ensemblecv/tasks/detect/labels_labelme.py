"""LabelMe-style JSON, one file per image: ``shapes`` with a ``label`` and corner ``points``.

This is what hand-labelling tools write (the currency-note report's case):
a rectangle is two opposite corners in any order, and four-point polygons
around an object are just as common, so any shape of two or more points
becomes its bounding rectangle; points, lines and circles are not boxes and
are listed. The image is ``imagePath`` relative to the JSON file, else the
file beside the JSON with the same stem; images no JSON names are
background images. Classes come from ``classes.txt``/``labels.txt`` (LabelMe's
``__ignore__`` and ``_background_`` lines skipped) or from the labels used, sorted.
"""

from __future__ import annotations

import json
from pathlib import Path

from ._common import (
    BadLabels,
    RawBox,
    RawImage,
    RawLabels,
    boxes_by_image,
    find_image,
    layout_key,
    list_images,
    sample_id_of,
)

#: Shape types that are not boxes (a 2-point ``line`` is not a rectangle).
_NOT_BOXES = {"point", "points", "line", "linestrip", "circle", "mask"}
_SKIP_CLASSES = {"__ignore__", "_background_"}


def _load(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, OSError):
        return None


def is_labelme_doc(doc) -> bool:
    return isinstance(doc, dict) and isinstance(doc.get("shapes"), list)


def is_labelme(root: Path) -> bool:
    """True when one of the first JSONs at the shallowest of three levels has a ``shapes`` list.

    Only three levels are looked at, so telling a 100k-image classification
    folder from a LabelMe one does not walk the whole tree.
    """
    for pattern in ("*.json", "*/*.json", "*/*/*.json"):
        found = sorted(root.glob(pattern))
        if found:  # a few, not one: a stray meta.json must not hide the labels
            return any(is_labelme_doc(_load(p)) for p in found[:3])
    return False


def _class_list(root: Path) -> list[str] | None:
    for name in ("classes.txt", "labels.txt"):
        path = root / name
        if path.is_file():
            lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
            return [c for c in lines if c and c not in _SKIP_CLASSES]
    return None


def _image_of(json_path: Path, doc: dict) -> Path | None:
    image_path = str(doc.get("imagePath") or "").replace("\\", "/")  # written on Windows
    if image_path:
        for candidate in (json_path.parent / image_path, json_path.parent / Path(image_path).name):
            if candidate.is_file():
                return candidate
    return find_image(json_path.parent, json_path.stem)


def _box(shape: dict) -> list[float] | str:
    """x1 y1 x2 y2 of a shape, or the reason it is not a box."""
    kind = shape.get("shape_type") or "polygon"
    if kind in _NOT_BOXES:
        return f"shape_type {kind!r}"
    try:
        points = [(float(x), float(y)) for x, y in shape.get("points") or []]
    except (TypeError, ValueError):
        return "points must be [x, y] pairs"
    if len(points) < 2:
        return f"{len(points)} point(s), a box needs 2 or more"
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    return [min(xs), min(ys), max(xs), max(ys)]


def read_labelme(root: Path) -> RawLabels:
    root = Path(root)
    bad = BadLabels(root)
    classes = _class_list(root)
    labelled, images, pending = set(), [], []
    for json_path in sorted(root.rglob("*.json")):
        doc = _load(json_path)
        if not is_labelme_doc(doc):
            bad.add(json_path, None, "malformed", "not a LabelMe JSON (no 'shapes' list)")
            continue
        image = _image_of(json_path, doc)
        if image is None:
            hint = (
                " (the image is only embedded as imageData; export it first)"
                if doc.get("imageData")
                else ""
            )
            bad.add(
                json_path,
                None,
                "label_without_image",
                f"imagePath {doc.get('imagePath')!r} not found{hint}",
            )
            continue
        sample_id = sample_id_of(image, root)
        if sample_id in labelled:
            bad.add(json_path, None, "malformed", f"a second label file for {sample_id}; ignored")
            continue
        labelled.add(sample_id)
        size = None
        if isinstance(doc.get("imageWidth"), int) and isinstance(doc.get("imageHeight"), int):
            size = (doc["imageWidth"], doc["imageHeight"])
        images.append(RawImage(sample_id, image, json_path, size))
        for number, shape in enumerate(doc["shapes"], 1):
            pending.append((sample_id, json_path, number, shape))
    if classes is None:
        classes = sorted(
            {str(s.get("label")) for *_, s in pending if isinstance(s, dict) and s.get("label")}
        )
    label_of = {name: i for i, name in enumerate(classes)}
    boxes = []
    for sample_id, json_path, number, shape in pending:
        # "line" is the shape's position in the file's shapes list (1-based): JSON has no useful lines.
        where = f"shape {number}"
        if not isinstance(shape, dict) or not shape.get("label"):
            bad.add(json_path, number, "malformed", f"{where}: no label")
            continue
        xyxy = _box(shape)
        if isinstance(xyxy, str):
            reason = "unsupported_shape" if xyxy.startswith("shape_type") else "malformed"
            bad.add(json_path, number, reason, f"{where} ({shape['label']}): {xyxy}")
            continue
        name = str(shape["label"])
        if name not in label_of:
            bad.add(
                json_path, number, "unknown_class", f"{where}: {name!r} is not in the class list"
            )
            continue
        boxes.append(RawBox(sample_id, label_of[name], *xyxy, file=json_path, line=number,
                            difficult=bool(shape.get("difficult", False))))  # fmt: skip
    for image in list_images(root):
        sample_id = sample_id_of(image, root)
        if sample_id not in labelled:
            images.append(RawImage(sample_id, image))
    return RawLabels(root, "labelme", classes, images, boxes, bad)


def write_labelme(images, boxes, classes: list[str], out: Path, place) -> None:
    """Images and one ``<stem>.json`` beside each (rectangles as two corners); for tests and demos.

    LabelMe has no crowd flag, so crowd boxes are not written; ``difficult`` is
    kept as an extra key on the shape, as some LabelMe forks do.
    """
    boxes = boxes[~boxes["iscrowd"].to_numpy(dtype=bool)]
    by_image = boxes_by_image(boxes)
    for row in images.itertuples(index=False):
        dest = out / layout_key(row.sample_id)
        dest.parent.mkdir(parents=True, exist_ok=True)
        place(row.path, dest)
        group = by_image.get(row.sample_id)
        shapes = [
            {
                "label": b.class_name,
                "points": [[b.x1, b.y1], [b.x2, b.y2]],
                "shape_type": "rectangle",
                "group_id": None,
                "flags": {},
                **({"difficult": True} if b.difficult else {}),
            }
            for b in group or []
        ]
        doc = {
            "version": "5.4.1",
            "flags": {},
            "shapes": shapes,
            "imagePath": dest.name,
            "imageData": None,
            "imageHeight": int(row.height),
            "imageWidth": int(row.width),
        }
        dest.with_suffix(".json").write_text(
            json.dumps(doc, ensure_ascii=False, indent=1), encoding="utf-8"
        )
    (out / "classes.txt").write_text("".join(f"{c}\n" for c in classes), encoding="utf-8")


__all__ = ["is_labelme", "read_labelme", "write_labelme"]
