"""COCO JSON: one file with ``images``, ``annotations`` (``bbox`` = x, y, w, h in pixels) and ``categories``.

Category ids may start anywhere and have gaps; classes are the categories in
id order, so label ``i`` is the ``i``-th smallest id. ``iscrowd`` boxes are
kept with their flag (COCO evaluation ignores matches to them). Images with no
annotation are background images. ``file_name`` is resolved against the
folder that holds most of the images among the usual places (beside the JSON,
``images/``, the parent, ``../train2017`` for ``instances_train2017.json``).
A folder may hold several COCO files (``annotations/instances_{train,val}.json``);
they are read as one dataset and must agree on their categories.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ...errors import DataError
from ._common import BadLabels, RawBox, RawImage, RawLabels, layout_key

#: How many file names are tried per candidate folder when guessing the image folder.
_PROBE = 50


def _load(path: Path) -> dict | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, OSError):
        return None
    return doc if is_coco_doc(doc) else None


def is_coco_doc(doc) -> bool:
    return (
        isinstance(doc, dict)
        and isinstance(doc.get("images"), list)
        and ("annotations" in doc or "categories" in doc)
    )


def coco_files(root: Path) -> list[Path]:
    """COCO JSON files of a folder: at its top, in ``annotations/`` or one folder down."""
    candidates = sorted(
        {*root.glob("*.json"), *root.glob("annotations/*.json"), *root.glob("*/*.json")}
    )
    # LabelMe folders hold one small JSON per image; COCO files are few. Only
    # open a location's files when they are few or named like COCO files.
    by_dir: dict[Path, list[Path]] = {}
    for path in candidates:
        by_dir.setdefault(path.parent, []).append(path)
    found = []
    for paths in by_dir.values():
        named = [
            p
            for p in paths
            if any(k in p.name.lower() for k in ("coco", "instances", "annotation"))
        ]
        for path in paths if len(paths) <= 5 else named:
            if _load(path) is not None:
                found.append(path)
    return sorted(found)


def _image_base(path: Path, names: list[str]) -> tuple[Path, str]:
    """The folder ``file_name`` is relative to: where most of the first names exist."""
    here = path.parent
    split = path.stem.removeprefix("instances_").removeprefix("_annotations.")
    bases = [here, here / "images", here.parent, here.parent / "images", here.parent / split,
             here.parent / "images" / split]  # fmt: skip
    probe = names[:_PROBE]
    scores = [sum((base / n).is_file() for n in probe) for base in bases]
    best = bases[max(range(len(bases)), key=lambda i: (scores[i], -i))]
    if not any(scores):
        tried = ", ".join(dict.fromkeys(str(b) for b in bases))
        return best, f"any of the folders tried ({tried})"
    return best, str(best)


def _categories(doc: dict, path: Path) -> dict[int, str]:
    cats = {}
    for cat in doc.get("categories") or []:
        try:
            cats[int(cat["id"])] = str(cat.get("name", cat["id"]))
        except (KeyError, TypeError, ValueError):
            raise DataError(f"{path}: a category lacks an integer 'id': {cat!r:.80}") from None
    return dict(sorted(cats.items()))


def _bbox(ann: dict) -> list[float] | None:
    """x1 y1 x2 y2 from ``bbox``, or from the polygon ``segmentation`` when ``bbox`` is absent."""
    box = ann.get("bbox")
    if box is None and isinstance(ann.get("segmentation"), list) and ann["segmentation"]:
        points = [float(v) for poly in ann["segmentation"] for v in poly]
        xs, ys = points[0::2], points[1::2]
        return [min(xs), min(ys), max(xs), max(ys)]
    if not isinstance(box, list) or len(box) != 4:
        return None
    x, y, w, h = (float(v) for v in box)
    return [x, y, x + w, y + h]


def read_coco(source: Path) -> RawLabels:
    """Read one COCO file, or every COCO file of a folder (sample ids relative to the folder)."""
    source = Path(source)
    if source.is_dir():
        files = coco_files(source)
        if not files:
            raise DataError(
                f"No COCO JSON file (with 'images' and 'annotations') found in {source}."
            )
        root = source
    else:
        files = [source]
        root = None
    categories: dict[int, str] | None = None
    loaded = []
    for path in files:
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"{path} is not valid JSON: {exc}") from None
        if not is_coco_doc(doc):
            raise DataError(
                f"{path} is not a COCO file: it needs an 'images' list and 'annotations'."
            )
        cats = _categories(doc, path)
        if categories is None:
            categories = cats
        elif cats != categories:
            raise DataError(
                f"The COCO files {files[0].name} and {path.name} have different categories; "
                "convert them separately or give one file."
            )
        names = [
            str(im.get("file_name", "")).replace("\\", "/")
            for im in doc["images"]
            if isinstance(im, dict)
        ]
        base, where = _image_base(path, names)
        loaded.append((path, doc, base, where))
    if root is None:
        root = loaded[0][2]
    categories = categories or {}
    label_of = {cid: i for i, cid in enumerate(categories)}
    bad = BadLabels(root)
    images, boxes, seen = [], [], set()
    for path, doc, base, where in loaded:
        _read_doc(path, doc, base, where, root, label_of, bad, images, boxes, seen)
    return RawLabels(root, "coco", list(categories.values()), images, boxes, bad)


def _read_doc(path, doc, base, where, root, label_of, bad, images, boxes, seen) -> None:
    """Append one COCO document's images and boxes (``seen``: sample ids so far, for duplicates)."""
    sample_of: dict = {}
    for entry in doc["images"]:
        try:
            image_id, name = entry["id"], str(entry["file_name"]).replace("\\", "/")
        except (KeyError, TypeError):
            bad.add(path, None, "malformed", f"image entry without id or file_name: {entry!r:.80}")
            continue
        image = base / name
        if not image.is_file():
            bad.add(
                path,
                None,
                "label_without_image",
                f"image id {image_id}: {name} not found in {where}",
            )
            sample_of[image_id] = None
            continue
        sample_id = (
            Path(image.absolute()).relative_to(root.absolute()).as_posix()
            if _inside(image, root)
            else name
        )
        if sample_id in seen or image_id in sample_of:
            bad.add(
                path, None, "malformed", f"image id {image_id} ({name}) is listed twice; first kept"
            )
            continue
        seen.add(sample_id)
        size = None
        if isinstance(entry.get("width"), (int, float)) and isinstance(
            entry.get("height"), (int, float)
        ):
            size = (int(entry["width"]), int(entry["height"]))
        sample_of[image_id] = sample_id
        images.append(RawImage(sample_id, image, path, size))
    for ann in doc.get("annotations") or []:
        ann_id = ann.get("id") if isinstance(ann, dict) else None
        what = f"annotation id {ann_id}"
        if not isinstance(ann, dict) or "image_id" not in ann:
            bad.add(path, None, "malformed", f"{what}: no image_id")
            continue
        if ann["image_id"] not in sample_of:
            bad.add(
                path,
                None,
                "label_without_image",
                f"{what}: image id {ann['image_id']} is not in 'images'",
            )
            continue
        sample_id = sample_of[ann["image_id"]]
        if sample_id is None:
            continue  # its image file is missing, already listed
        try:
            xyxy = _bbox(ann)
        except (TypeError, ValueError):
            xyxy = None
        if xyxy is None:
            bad.add(
                path,
                None,
                "malformed",
                f"{what}: bbox must be 4 numbers [x, y, w, h], got {ann.get('bbox')!r:.60}",
            )
            continue
        try:
            label = label_of[int(ann.get("category_id"))]
        except (KeyError, TypeError, ValueError):
            bad.add(
                path,
                None,
                "unknown_class",
                f"{what}: category_id {ann.get('category_id')!r} not in categories",
            )
            continue
        boxes.append(
            RawBox(
                sample_id,
                label,
                *xyxy,
                file=path,
                iscrowd=bool(ann.get("iscrowd", 0)),
                difficult=bool(ann.get("difficult", 0)),
            )  # fmt: skip
        )


def _inside(path: Path, root: Path) -> bool:
    try:
        path.absolute().relative_to(root.absolute())
        return True
    except ValueError:
        return False


def write_coco(
    images: pd.DataFrame, boxes: pd.DataFrame, classes: list[str], out: Path, place
) -> None:
    """``out/images/<key>`` and ``out/annotations.json``; image, annotation and category ids from 1.

    ``difficult`` (a VOC flag COCO lacks) is kept as an extra ``difficult: 1``
    on the annotation, which COCO tools ignore, so VOC → COCO → VOC is lossless.
    """
    doc = {
        "info": {"description": "written by ensemblecv convert"},
        "images": [],
        "annotations": [],
        "categories": [
            {"id": i + 1, "name": name, "supercategory": ""} for i, name in enumerate(classes)
        ],
    }
    image_id = {}
    for i, row in enumerate(images.itertuples(index=False), 1):
        key = layout_key(row.sample_id)
        dest = out / "images" / key
        dest.parent.mkdir(parents=True, exist_ok=True)
        place(row.path, dest)
        image_id[row.sample_id] = i
        doc["images"].append(
            {
                "id": i,
                "file_name": key.as_posix(),
                "width": int(row.width),
                "height": int(row.height),
            }
        )
    for j, b in enumerate(boxes.itertuples(index=False), 1):
        w, h = b.x2 - b.x1, b.y2 - b.y1
        ann = {
            "id": j,
            "image_id": image_id[b.sample_id],
            "category_id": int(b.label) + 1,
            "bbox": [round(b.x1, 4), round(b.y1, 4), round(w, 4), round(h, 4)],
            "area": round(w * h, 4),
            "iscrowd": int(b.iscrowd),
            "segmentation": [],
        }
        if b.difficult:
            ann["difficult"] = 1
        doc["annotations"].append(ann)
    (out / "annotations.json").write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")


__all__ = ["coco_files", "read_coco", "write_coco"]
