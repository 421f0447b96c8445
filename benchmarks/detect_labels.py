"""Time the detection data layer: read (header-only sizes), convert, folds and audit.

    PYTHONPATH=src python benchmarks/detect_labels.py --images 1000 --size 256

Prints seconds and images/s per step on a synthetic shapes dataset written to
a temporary folder (deleted afterwards).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from ensemblecv.tasks.detect import (
    audit_detection,
    convert_detection,
    detection_folds,
    make_shapes_dataset,
    read_detection,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--classes", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        make_shapes_dataset(tmp / "yolo", args.images, args.size, args.classes, seed=0, max_boxes=5)
        print(f"write {args.images} images ({args.size}px, YOLO): {time.perf_counter() - t:.2f} s")
        steps = {
            "read yolo": lambda: read_detection(tmp / "yolo"),
            "convert yolo->coco (hard links)": lambda: convert_detection(
                tmp / "yolo", "coco", tmp / "coco", link=True
            ),
            "read coco": lambda: read_detection(tmp / "coco"),
            "convert coco->voc (hard links)": lambda: convert_detection(
                tmp / "coco", "voc", tmp / "voc", link=True
            ),
            "read voc": lambda: read_detection(tmp / "voc"),
        }
        data = None
        for name, step in steps.items():
            t = time.perf_counter()
            out = step()
            dt = time.perf_counter() - t
            data = out if hasattr(out, "boxes") else data
            print(f"{name:34s} {dt:7.2f} s  {args.images / dt:9,.0f} images/s")
        t = time.perf_counter()
        detection_folds(data.images, data.boxes, 5, seed=0)
        dt = time.perf_counter() - t
        print(
            f"{'folds (5, iterative stratification)':34s} {dt:7.2f} s  {args.images / dt:9,.0f} images/s"
        )
        t = time.perf_counter()
        audit_detection(data, tmp / "audit")
        dt = time.perf_counter() - t
        print(f"{'audit (json, html, 4 plots)':34s} {dt:7.2f} s  {args.images / dt:9,.0f} images/s")
        print(f"boxes: {len(data.boxes)}")


if __name__ == "__main__":
    main()
