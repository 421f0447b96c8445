"""The OOF probability-map store: bytes per image, and mIoU from stored maps vs full resolution.

Part 1 (always): VOC-like scenes of 512x384 px with 21 classes (filled
ellipses and boxes of 20 object classes on background, a 5 px void border
of 255 around each object). The "model" is DeepLab-like: its logits live at
output stride 8 (64x48: the one-hot truth, area-averaged, plus spatially
coherent noise, ``--noise``) and are bilinearly upsampled to the image, as
torchvision's heads do. Those full-resolution probabilities are written through the
store exactly as a fold writes them (:class:`MapWriter`); the figures are
the file's bytes per image (and per 1,000 images) and mIoU of the full
prediction vs mIoU of the stored maps resized back, against the truth.

Part 2 (``--workspace WS``): the same two figures for every finished run of
a real workspace (e.g. the segmentation demo's), from its oof_metrics.json.

    PYTHONPATH=src python benchmarks/segment_store.py [--n 200] [--workspace runs/demo-segment]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np


def scene(rng, h=384, w=512, k=21):
    import cv2

    mask = np.zeros((h, w), np.uint8)
    ring = np.zeros((h, w), np.uint8)
    for _ in range(int(rng.integers(1, 5))):
        c = int(rng.integers(1, k))
        shape = np.zeros((h, w), np.uint8)
        cy, cx = int(rng.integers(40, h - 40)), int(rng.integers(40, w - 40))
        ry, rx = int(rng.integers(25, 140)), int(rng.integers(25, 170))
        if rng.random() < 0.5:
            cv2.ellipse(shape, (cx, cy), (rx, ry), float(rng.uniform(0, 180)), 0, 360, 1, -1)
        else:
            cv2.rectangle(shape, (cx - rx, cy - ry), (cx + rx, cy + ry), 1, -1)
        mask[shape > 0] = c
        ring[shape > 0] = 0
        ring |= cv2.dilate(shape, np.ones((5, 5), np.uint8)) - cv2.erode(
            shape, np.ones((5, 5), np.uint8)
        )
    mask[ring > 0] = 255
    return mask


def deeplab_like(mask, k, noise, rng):
    import torch
    import torch.nn.functional as F

    h, w = mask.shape
    onehot = np.eye(k + 1, dtype=np.float32)[np.where(mask == 255, k, mask)][..., :k]
    t = torch.from_numpy(onehot).permute(2, 0, 1)[None]
    low = F.interpolate(t, size=(h // 8, w // 8), mode="area")
    # A model's errors are spatially coherent (a wrong region, not salt and pepper): noise
    # drawn at stride 32 and upsampled to the head's stride 8.
    coarse = torch.from_numpy(rng.normal(size=(1, k, h // 32, w // 32)).astype(np.float32))
    coarse = F.interpolate(coarse, size=low.shape[-2:], mode="bilinear", align_corners=False)
    logits = low * 6 + noise * coarse
    return F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)[0].softmax(0)


def part1(args) -> None:
    from ensemblecv.tasks.segment.metrics import scores_from_confusion
    from ensemblecv.tasks.segment.store import MapWriter, store_side

    k = 21
    rng = np.random.default_rng(0)
    side = store_side(k, args.store_bytes, args.dtype)
    path = Path(tempfile.mkdtemp()) / "oof_maps.npy"
    writer = MapWriter(path, args.n, k, side, args.dtype, 255)
    for i in range(args.n):
        mask = scene(rng)
        writer.add(i, deeplab_like(mask, k, args.noise, rng), mask)
    writer.close(None)
    size = path.stat().st_size
    full = scores_from_confusion(writer.cm["full"])["miou"]
    stored = scores_from_confusion(writer.cm["stored"])["miou"]
    print(
        f"{args.n} images of 512x384, 21 classes, {args.dtype}, budget {args.store_bytes} B/image"
    )
    print(f"store: {side}x{side} per class, {size / args.n:,.0f} bytes/image "
          f"= {size / args.n * 1000 / 1e6:.1f} MB per 1,000 images (target <= 50)")  # fmt: skip
    print(f"mIoU full resolution {full * 100:.2f}, from stored maps {stored * 100:.2f}, "
          f"difference {abs(full - stored) * 100:.2f} points (target <= 0.5)")  # fmt: skip


def part2(ws: Path) -> None:
    for path in sorted(ws.glob("runs/*/oof_metrics*.json")):
        m = json.loads(path.read_text())
        run = path.parent.name + ("+tta" if path.stem.endswith("_tta") else "")
        maps = np.load(path.parent / "fold_0" / "oof_maps.npy", mmap_mode="r")
        bpi = maps[0].nbytes
        full, stored = m["full"]["miou"], m["stored"]["miou"]
        print(f"{run:<14} stored {maps.shape[-1]}x{maps.shape[-1]}x{maps.shape[1]} {maps.dtype}, "
              f"{bpi:,} bytes/image; OOF mIoU full {full * 100:.2f}, stored {stored * 100:.2f}, "
              f"difference {abs(full - stored) * 100:.2f} points")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--store-bytes", type=int, default=49152)
    ap.add_argument("--dtype", default="uint8", choices=["uint8", "float16"])
    ap.add_argument("--noise", type=float, default=3.0)
    ap.add_argument("--workspace", type=Path, default=None)
    args = ap.parse_args()
    if args.n > 0:  # --n 0: only the workspace's figures
        part1(args)
    if args.workspace is not None:
        part2(args.workspace)


if __name__ == "__main__":
    main()
