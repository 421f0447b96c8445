"""The project's one resize: ``stretch | letterbox | center_crop`` to a square, uint8 in and out.

Training, ``predict``, ``explain`` and ``serve`` all resize through
:func:`resize_op`. It lives here, beside the decoder and away from the
augmentation pipeline, because it needs only numpy and OpenCV: a server of an
exported ONNX model imports it without loading torch.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import cv2
import numpy as np

from ..errors import ConfigError, unknown_name_message

RESIZE_MODES = ("stretch", "letterbox", "center_crop")

Resize = Callable[[np.ndarray], np.ndarray]


def _resize(img: np.ndarray, h: int, w: int) -> np.ndarray:
    """cv2 resize that keeps the channel axis; area interpolation when shrinking
    (no aliasing), bilinear when enlarging (area would be nearest-like)."""
    if img.shape[:2] == (h, w):
        return img
    shrink = h * w < img.shape[0] * img.shape[1]
    out = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return out if out.ndim == 3 else out[:, :, None]


def _border_value(img: np.ndarray) -> np.ndarray:
    """Per-channel median of the outermost pixels: white for sketches on paper,
    black for digits, the backdrop for product photos — a pad that looks like
    more background rather than a frame the model could learn from."""
    edge = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]], axis=0)
    return np.median(edge, axis=0).round().astype(np.uint8)


def _stretch(img: np.ndarray, size: int) -> np.ndarray:
    return _resize(img, size, size)


def _letterbox(img: np.ndarray, size: int) -> np.ndarray:
    h, w = img.shape[:2]
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    resized = _resize(img, nh, nw)
    if (nh, nw) == (size, size):
        return resized
    out = np.empty((size, size, img.shape[2]), dtype=img.dtype)
    out[:] = _border_value(img)  # the original's border: thin frames survive
    top, left = (size - nh) // 2, (size - nw) // 2
    out[top : top + nh, left : left + nw] = resized
    return out


def _center_crop(img: np.ndarray, size: int) -> np.ndarray:
    h, w = img.shape[:2]
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    resized = _resize(img, nh, nw)
    top, left = (nh - size) // 2, (nw - size) // 2
    return resized[top : top + size, left : left + size]


_RESIZERS = {"stretch": _stretch, "letterbox": _letterbox, "center_crop": _center_crop}


def resize_op(mode: str, size: int) -> Resize:
    """``img (H, W, C) uint8 -> (size, size, C) uint8``.

    stretch: ignore the aspect ratio; letterbox: fit the longer side and pad
    (with the image's median border colour, see :func:`_border_value`);
    center_crop: fit the shorter side and crop the middle.
    """
    if mode not in _RESIZERS:
        raise ConfigError(unknown_name_message("resize mode", mode, RESIZE_MODES))
    if size < 1:
        raise ConfigError(f"Resize size must be >= 1, got {size}.")
    return partial(_RESIZERS[mode], size=int(size))
