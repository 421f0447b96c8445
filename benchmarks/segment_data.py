"""Time the segmentation data layer: read (every mask decoded once), folds, audit, convert.

    PYTHONPATH=src python benchmarks/segment_data.py --images 500 --width 500 --height 375

Writes a VOC-like dataset (JPEGs, palette PNG masks with random rectangles of
21 classes and a void border) to a temporary folder (deleted afterwards) and
prints seconds and images/s per step.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from ensemblecv.tasks.segment.audit import audit_segmentation
from ensemblecv.tasks.segment.convert import convert_segmentation
from ensemblecv.tasks.segment.folds import segmentation_folds
from ensemblecv.tasks.segment.masks import save_index_png
from ensemblecv.tasks.segment.read import read_segmentation


def _write_voc(root: Path, n: int, w: int, h: int, k: int) -> None:
    rng = np.random.default_rng(0)
    (root / "JPEGImages").mkdir(parents=True)
    ids = []
    for i in range(n):
        mask = np.zeros((h, w), np.uint8)
        for _ in range(int(rng.integers(1, 5))):
            x, y = int(rng.integers(0, w - 40)), int(rng.integers(0, h - 40))
            mask[y : y + int(rng.integers(20, h // 2)), x : x + int(rng.integers(20, w // 2))] = (
                int(rng.integers(1, k))
            )
        mask[:2], mask[-2:] = 255, 255
        image = (mask[..., None] * np.array([37, 91, 53]) % 256).astype(np.uint8)
        Image.fromarray(image, "RGB").save(root / "JPEGImages" / f"{i:06d}.jpg", quality=90)
        save_index_png(mask, root / "SegmentationClass" / f"{i:06d}.png")
        ids.append(f"{i:06d}")
    sets = root / "ImageSets" / "Segmentation"
    sets.mkdir(parents=True)
    (sets / "trainval.txt").write_text("\n".join(ids) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--width", type=int, default=500)
    parser.add_argument("--height", type=int, default=375)
    parser.add_argument("--classes", type=int, default=21)
    args = parser.parse_args()
    n = args.images
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        _write_voc(tmp / "voc", n, args.width, args.height, args.classes)
        print(
            f"write {n} images ({args.width}x{args.height}, VOC): {time.perf_counter() - t:.2f} s"
        )
        data = {}
        steps = {
            "read voc (decode every mask)": lambda: data.setdefault(
                "voc", read_segmentation(tmp / "voc")
            ),
            "folds (5, presence-stratified)": lambda: segmentation_folds(data["voc"], 5, 0),
            "audit (scan in-process + plots)": lambda: audit_segmentation(
                data["voc"], tmp / "audit", workers=0
            ),
            "convert voc->coco (RLE)": lambda: convert_segmentation(
                tmp / "voc", "coco", tmp / "coco", link=True
            ),
            "read coco (rasterise)": lambda: read_segmentation(tmp / "coco" / "annotations.json"),
            "convert coco->folders (PNG)": lambda: convert_segmentation(
                tmp / "coco" / "annotations.json", "folders", tmp / "folders", link=True
            ),
        }
        for name, step in steps.items():
            t = time.perf_counter()
            step()
            s = time.perf_counter() - t
            print(f"{name:34s} {s:7.2f} s  {n / s:8.0f} images/s")


if __name__ == "__main__":
    main()
