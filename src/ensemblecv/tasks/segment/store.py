"""Out-of-fold probability maps in bounded storage, memory-mapped.

nnU-Net keeps every fold's full-resolution softmax and warns it needs "a lot
of disk space". Here each image's probabilities are stored in the image's
own frame (the letterbox padding cut away) resampled to an ``s x s`` square
by area averaging, quantised to uint8 (``p * 255``, default) or float16, in
one ``.npy`` per fold that :func:`open_maps` memory-maps. ``s`` follows the
budget ``segment.store_bytes`` per image: ``K * s * s * itemsize <= budget``
(48 px for 21 classes in uint8 = 48.4 kB, so 1,000 images fit 50 MB).

Scores are computed both ways while the full-resolution prediction is at
hand: ``full`` (the model's probabilities resized to the original image)
and ``stored`` (the stored map, dequantised and resized back the same way),
so the cost of the compression is measured, not assumed
(``benchmarks/segment_store.py``). Because the stored frame is the original
image (not the model's input square), maps of runs with different input
sizes or resize modes line up pixel for pixel; runs with different ``s`` are
resampled to a common side when ensembled.

Per fold: ``oof_maps.npy`` (N, K, s, s) for exactly the fold's validation
images, ``oof_samples.parquet`` (sample_id, fold, height, width, in map
order), ``oof_confusion.json`` ({full, stored} K x K counts); with
``segment.tta``, ``oof_maps_tta.npy`` + its confusions, a member of its own;
with ``data.test``, ``test_maps.npy`` (+ ``_tta``) and ``test_samples.parquet``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .metrics import confusion

_ITEMSIZE = {"uint8": 1, "float16": 2}


def store_side(num_classes: int, store_bytes: int, dtype: str, size: int | None = None) -> int:
    """Side of the stored square maps: ``size`` if given, else the largest that fits the budget."""
    if size is not None:
        return int(size)
    return max(4, int(math.isqrt(int(store_bytes) // (num_classes * _ITEMSIZE[dtype]))))


def encode(probs: torch.Tensor, dtype: str) -> np.ndarray:
    """(K, s, s) float probabilities → stored array."""
    if dtype == "uint8":
        return (probs.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    return probs.to(torch.float16).cpu().numpy()


def decode(stored: np.ndarray) -> np.ndarray:
    """Stored maps (..., K, s, s) → float32 probabilities (rows renormalised to sum 1)."""
    p = np.asarray(stored, dtype=np.float32)
    if stored.dtype == np.uint8:
        p = p / 255.0
    total = p.sum(axis=-3, keepdims=True)
    return p / np.maximum(total, 1e-6)


def resize_probs(probs: np.ndarray | torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(K, h, w) → (K, height, width) float32, bilinear (probability maps stay smooth)."""
    t = torch.as_tensor(np.asarray(probs, np.float32) if isinstance(probs, np.ndarray) else probs)
    t = t.float()[None]
    if t.shape[-2:] != (height, width):
        t = F.interpolate(t, size=(height, width), mode="bilinear", align_corners=False)
    return t[0]


def open_maps(path: Path | str) -> np.ndarray:
    """A stored map file, memory-mapped read-only."""
    return np.load(path, mmap_mode="r")


def read_confusion(path: Path) -> dict[str, np.ndarray]:
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    return {k: np.asarray(v, np.int64) for k, v in raw.items()}


def frame_probs(model, x: torch.Tensor, tta: list[str], scales: list[float]) -> torch.Tensor:
    """Softmax (B, K, S, S) of uint8 images (B, 3, S, S); with TTA the mean over flips/scales."""
    x = x.float() / 255.0
    size = x.shape[-2:]
    flips = (False, True) if "hflip" in tta else (False,)
    variants = [(s, f) for s in (scales if "scales" in tta else [1.0]) for f in flips]
    total = None
    for scale, flip in variants:
        xi = x
        if scale != 1.0:
            side = [max(8, round(d * scale)) for d in size]
            xi = F.interpolate(x, size=side, mode="bilinear", align_corners=False)
        if flip:
            xi = xi.flip(-1)
        logits = model(xi)["out"]
        if flip:
            logits = logits.flip(-1)
        if logits.shape[-2:] != size:
            logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        p = logits.float().softmax(1)
        total = p if total is None else total + p
    return total / len(variants)


class MapWriter:
    """Writes one map file (N, K, s, s) row by row and the two confusions of its predictions."""

    def __init__(self, path: Path, n: int, k: int, side: int, dtype: str, ignore_index: int):
        self.path, self.k, self.side, self.dtype = Path(path), k, side, dtype
        self.ignore_index = ignore_index
        self.tmp = self.path.with_name(self.path.stem + ".tmp.npy")
        self.maps = np.lib.format.open_memmap(self.tmp, "w+", np.dtype(dtype), (n, k, side, side))
        self.cm = {"full": np.zeros((k, k), np.int64), "stored": np.zeros((k, k), np.int64)}
        self.per_image: list[np.ndarray] = []

    def add(self, i: int, probs: torch.Tensor, truth: np.ndarray | None) -> None:
        """``probs``: (K, H, W) at the original image size; ``truth``: (H, W) or None."""
        small = F.interpolate(probs[None].float(), size=(self.side, self.side), mode="area")[0]
        self.maps[i] = encode(small, self.dtype)
        if truth is None:
            return
        h, w = truth.shape
        full = confusion(truth, probs.argmax(0).cpu().numpy(), self.k, self.ignore_index)
        back = resize_probs(decode(self.maps[i]), h, w).argmax(0).numpy()
        stored = confusion(truth, back, self.k, self.ignore_index)
        self.cm["full"] += full
        self.cm["stored"] += stored
        self.per_image.append(stored)

    def close(self, confusion_path: Path | None) -> None:
        self.maps.flush()
        del self.maps
        self.tmp.replace(self.path)
        if confusion_path is not None:
            text = json.dumps({k: v.tolist() for k, v in self.cm.items()})
            Path(confusion_path).write_text(text, encoding="utf-8")


def to_original(probs: torch.Tensor, box: tuple[int, int, int, int], height: int, width: int):
    """(K, S, S) model-frame probabilities → (K, height, width) of the original image."""
    top, left, nh, nw = box
    return resize_probs(probs[:, top : top + nh, left : left + nw], height, width)


__all__ = [
    "MapWriter",
    "decode",
    "encode",
    "frame_probs",
    "open_maps",
    "read_confusion",
    "resize_probs",
    "store_side",
    "to_original",
]
