"""COCO polygons and RLE rasterised into semantic masks.

Classes are ``background`` (index 0: every pixel no annotation covers)
followed by the categories in id order, so category ``i`` (the ``i``-th
smallest id) is mask value ``i + 1``. Overlaps: annotations are painted in
file order and a later one wins. Crowd annotations (``iscrowd: 1``) mark
regions that hold many instances without outlines; they become
``ignore_index`` after all others are painted, so their pixels are never
scored either way. Polygons follow pycocotools' rasterisation (through
faster-coco-eval's mask utilities, a dependency already), which is what COCO
scores are computed on. Image lookup and category parsing are detection's
COCO reader's (:mod:`ensemblecv.tasks.detect.labels_coco`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ...errors import DataError
from ..detect.labels_coco import _categories, _image_base, _inside, coco_files, is_coco_doc
from .layout import _Candidate, _classes_arg, _Layout
from .masks import MaskError


def _segm_problem(segm) -> str | None:
    """Why ``segm`` is no polygon list or RLE, or None when it is one."""
    if isinstance(segm, dict):
        size, counts = segm.get("size"), segm.get("counts")
        if not (isinstance(size, list) and len(size) == 2 and counts is not None):
            return "RLE needs 'size' [h, w] and 'counts'"
        return None
    if not isinstance(segm, list) or not segm:
        return "no_segmentation"
    for poly in segm:
        if not isinstance(poly, list) or len(poly) < 6 or len(poly) % 2:
            return "a polygon needs at least 3 x, y pairs"
        if not all(isinstance(v, (int, float)) for v in poly):
            return "polygon coordinates must be numbers"
    return None


def _decode(segm, height: int, width: int, where: str) -> np.ndarray:
    from faster_coco_eval.core import mask as cocomask

    if isinstance(segm, dict):
        h, w = (int(v) for v in segm["size"])
        if (h, w) != (height, width):
            raise MaskError(where, "size_mismatch", f"RLE size {w}x{h}, image {width}x{height}")
        rle = segm
        if isinstance(segm["counts"], list):  # uncompressed RLE
            rle = cocomask.frPyObjects(segm, height, width)
        elif isinstance(segm["counts"], str):
            rle = {"size": segm["size"], "counts": segm["counts"].encode()}
        return cocomask.decode(rle).astype(bool)
    rles = cocomask.frPyObjects([[float(v) for v in p] for p in segm], height, width)
    return cocomask.decode(cocomask.merge(rles)).astype(bool)


def rasterize(annotations: list, height: int, width: int, ignore_index: int = 255) -> np.ndarray:
    """The semantic mask ``(height, width)`` uint8 of ``[(class index, segmentation, iscrowd, where)]``."""
    mask = np.zeros((height, width), dtype=np.uint8)
    crowd = np.zeros((height, width), dtype=bool)
    for label, segm, iscrowd, where in annotations:
        region = _decode(segm, height, width, where)
        if iscrowd:
            crowd |= region
        else:
            mask[region] = label
    mask[crowd] = ignore_index
    return mask


def read_coco_masks(source: Path, classes=None):
    """The layout of one COCO file, or of every COCO file in a folder (sample ids relative to it)."""

    source = Path(source)
    files = coco_files(source) if source.is_dir() else [source]
    if not files:
        raise DataError(f"No COCO JSON file (with 'images' and 'annotations') found in {source}.")
    docs, categories = [], None
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
        if categories is not None and cats != categories:
            raise DataError(
                f"The COCO files {files[0].name} and {path.name} have different categories."
            )
        categories = cats
        names = [
            str(im.get("file_name", "")).replace("\\", "/")
            for im in doc["images"]
            if isinstance(im, dict)
        ]
        base, where = _image_base(path, names)
        docs.append((path, doc, base, where))
    root = source if source.is_dir() else docs[0][2]
    categories = categories or {}
    given, palette = _classes_arg(classes, root) if classes is not None else (None, None)
    names = given or ["background", *categories.values()]
    index = {n: i for i, n in enumerate(names)}
    label_of = {cid: index[name] for cid, name in categories.items() if name in index}
    found, bad, annotations, seen = [], [], {}, set()
    for path, doc, base, where in docs:
        sample_of: dict = {}
        for entry in doc["images"]:
            try:
                image_id, name = entry["id"], str(entry["file_name"]).replace("\\", "/")
            except (KeyError, TypeError):
                bad.append(
                    (path, "malformed", f"image entry without id or file_name: {entry!r:.80}")
                )
                continue
            image = base / name
            if not image.is_file():
                bad.append(
                    (path, "image_missing", f"image id {image_id}: {name} not found in {where}")
                )
                continue
            sample_id = (
                image.absolute().relative_to(root.absolute()).as_posix()
                if _inside(image, root)
                else name
            )
            if sample_id in seen:
                bad.append(
                    (path, "malformed", f"image id {image_id} ({name}) is listed twice; first kept")
                )
                continue
            seen.add(sample_id)
            sample_of[image_id] = sample_id
            annotations[sample_id] = []
            found.append(_Candidate(sample_id, image, path))
        for ann in doc.get("annotations") or []:
            what = f"annotation id {ann.get('id') if isinstance(ann, dict) else None}"
            if not isinstance(ann, dict) or ann.get("image_id") not in sample_of:
                if isinstance(ann, dict) and "image_id" in ann:
                    known = any(
                        isinstance(e, dict) and e.get("id") == ann["image_id"]
                        for e in doc["images"]
                    )
                    if known:
                        continue  # its image is missing, already listed
                bad.append((path, "malformed", f"{what}: no image_id of 'images'"))
                continue
            try:
                label = label_of[int(ann.get("category_id"))]
            except (KeyError, TypeError, ValueError):
                bad.append(
                    (path, "unknown_class", f"{what}: category_id {ann.get('category_id')!r}")
                )
                continue
            problem = _segm_problem(ann.get("segmentation"))
            if problem == "no_segmentation":
                bad.append((path, "no_segmentation", f"{what}: bbox only"))
                continue
            if problem:
                bad.append((path, "malformed", f"{what}: {problem}"))
                continue
            annotations[sample_of[ann["image_id"]]].append(
                (label, ann["segmentation"], bool(ann.get("iscrowd", 0)), str(path))
            )
    return _Layout(root, "coco", found, bad, names, palette, annotations=annotations)


__all__ = ["rasterize", "read_coco_masks"]
