"""``ensemblecv convert`` for masks: any readable segmentation layout into folders, VOC or COCO.

The source is read with :func:`read_segmentation` (bad masks left out and
listed exactly as for training, COCO polygons/RLE rasterised with the same
rules) and written with every image copied, or hard-linked, into the new
layout. Masks are written as palette PNGs of class indices in the dataset's
palette (VOC's by default), so values are exact and viewers show colours;
``classes.txt`` (``name R G B`` per line) keeps the class names and colours.
Targets:

* ``folders``: ``images/<key>`` + ``masks/<key stem>.png``;
* ``voc``: ``JPEGImages/``, ``SegmentationClass/``, ``ImageSets/Segmentation/``
  (``trainval.txt``, plus the source's own split lists when it has them);
* ``coco``: ``images/`` + ``annotations.json``, one compressed-RLE annotation
  per class present in an image; classes after index 0 (background) are the
  categories, and ignored pixels are one ``iscrowd`` annotation (the COCO
  reader maps crowd regions to ``ignore_index``), so a round trip is exact.

The source is never touched and a non-empty ``out`` is refused.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ...data.split import check_output_dir
from ...errors import DataError, unknown_name_message
from ..detect._common import layout_key
from ..detect.convert import _check_label_names, _placer
from .masks import save_index_png
from .read import SegmentationData, read_segmentation

TARGETS = ("folders", "voc", "coco")


@dataclass
class SegmentConvertResult:
    out: Path
    source_format: str
    target_format: str
    n_images: int
    n_bad: int


def _write_classes(data: SegmentationData, out: Path) -> None:
    from .overlay import mask_colors

    colors = mask_colors(np.arange(data.num_classes, dtype=np.uint8)[None], data.palette)[0]
    lines = [f"{name} {r} {g} {b}" for name, (r, g, b) in zip(data.classes, colors.tolist())]
    (out / "classes.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _write_folders(data: SegmentationData, out: Path, place) -> None:
    for i, row in enumerate(data.images.itertuples(index=False)):
        key = layout_key(row.sample_id)
        dest = out / "images" / key
        dest.parent.mkdir(parents=True, exist_ok=True)
        place(row.image_path, dest)
        save_index_png(data.load_mask(i), out / "masks" / key.with_suffix(".png"), data.palette)
    _write_classes(data, out)


def _write_voc(data: SegmentationData, out: Path, place) -> None:
    ids = []
    for i, row in enumerate(data.images.itertuples(index=False)):
        key = layout_key(row.sample_id)
        dest = out / "JPEGImages" / key
        dest.parent.mkdir(parents=True, exist_ok=True)
        place(row.image_path, dest)
        save_index_png(
            data.load_mask(i), out / "SegmentationClass" / key.with_suffix(".png"), data.palette
        )
        ids.append(key.with_suffix("").as_posix())
    sets = out / "ImageSets" / "Segmentation"
    sets.mkdir(parents=True, exist_ok=True)
    (sets / "trainval.txt").write_text("\n".join(ids) + "\n", encoding="utf-8")
    if "split" in data.images:
        for split, rows in pd.Series(ids).groupby(data.images["split"].to_numpy()):
            if split != "trainval":
                (sets / f"{split}.txt").write_text("\n".join(rows) + "\n", encoding="utf-8")
    _write_classes(data, out)


def _rle(region: np.ndarray) -> dict:
    from faster_coco_eval.core import mask as cocomask

    rle = cocomask.encode(np.asfortranarray(region.astype(np.uint8)))
    bbox = [float(v) for v in cocomask.toBbox(rle)]
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}, bbox


def _write_coco(data: SegmentationData, out: Path, place) -> None:
    if data.num_classes < 2:
        raise DataError("COCO needs at least one category besides background (class 0).")
    doc = {
        "info": {"description": "written by ensemblecv convert (semantic masks as RLE)"},
        "images": [],
        "annotations": [],
        "categories": [
            {"id": k, "name": c, "supercategory": ""} for k, c in enumerate(data.classes) if k
        ],
    }
    ann_id = 1
    for i, row in enumerate(data.images.itertuples(index=False), 1):
        key = layout_key(row.sample_id)
        dest = out / "images" / key
        dest.parent.mkdir(parents=True, exist_ok=True)
        place(row.image_path, dest)
        doc["images"].append({"id": i, "file_name": key.as_posix(), "width": int(row.width),
                              "height": int(row.height)})  # fmt: skip
        mask = data.load_mask(i - 1)
        regions = [(k, mask == k, 0) for k in np.unique(mask) if 0 < k < data.num_classes]
        if (mask == data.ignore_index).any():
            regions.append((1, mask == data.ignore_index, 1))  # crowd: read back as ignore
        for k, region, crowd in regions:
            segm, bbox = _rle(region)
            doc["annotations"].append({"id": ann_id, "image_id": i, "category_id": int(k),
                                       "segmentation": segm, "area": int(region.sum()), "bbox": bbox,
                                       "iscrowd": crowd})  # fmt: skip
            ann_id += 1
    (out / "annotations.json").write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")


_WRITERS = {"folders": _write_folders, "voc": _write_voc, "coco": _write_coco}


def convert_segmentation(
    src: str | os.PathLike,
    to: str,
    out: str | os.PathLike,
    format: str | None = None,
    classes=None,
    ignore_index: int = 255,
    link: bool = False,
    strict: bool = False,
) -> SegmentConvertResult:
    """Write the segmentation dataset at ``src`` (layout ``format`` or detected) as ``to`` into ``out``.

    ``classes``/``ignore_index`` as for :func:`read_segmentation`. ``link``
    hard-links images instead of copying (a copy across file systems).
    """
    if to not in _WRITERS:
        raise DataError(unknown_name_message("segmentation target format", to, TARGETS))
    out = Path(out).absolute()
    src_path = Path(src)
    check_output_dir(out, src_path if src_path.is_dir() else src_path.parent)
    data = read_segmentation(
        src_path, format=format, classes=classes, ignore_index=ignore_index, strict=strict
    )
    check_output_dir(out, data.root)  # a COCO file's images may live above its folder
    _check_label_names(data.images["sample_id"], "coco" if to == "coco" else "mask")
    out.mkdir(parents=True, exist_ok=True)
    _WRITERS[to](data, out, _placer(link))
    return SegmentConvertResult(out, data.format, to, len(data), len(data.bad))


__all__ = ["TARGETS", "SegmentConvertResult", "convert_segmentation"]
