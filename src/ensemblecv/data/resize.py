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


#: cv2 filters for enlarging, by ``data.interpolation`` (timm's names; auto = bilinear).
_ENLARGE = {
    "auto": cv2.INTER_LINEAR,
    "bilinear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC,
    "lanczos": cv2.INTER_LANCZOS4,
    "nearest": cv2.INTER_NEAREST,
}


def _resize(img: np.ndarray, h: int, w: int, interpolation: str = "auto") -> np.ndarray:
    """cv2 resize that keeps the channel axis; area interpolation when shrinking
    (no aliasing — cv2's bilinear/bicubic would skip pixels, unlike PIL's), the
    ``interpolation`` filter when enlarging (area would be nearest-like)."""
    if img.shape[:2] == (h, w):
        return img
    shrink = h * w < img.shape[0] * img.shape[1]
    flag = _ENLARGE[interpolation]
    if shrink and interpolation != "nearest":
        flag = cv2.INTER_AREA
    out = cv2.resize(img, (w, h), interpolation=flag)
    return out if out.ndim == 3 else out[:, :, None]


def _border_value(img: np.ndarray) -> np.ndarray:
    """Per-channel median of the outermost pixels: white for sketches on paper,
    black for digits, the backdrop for product photos — a pad that looks like
    more background rather than a frame the model could learn from."""
    edge = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]], axis=0)
    return np.median(edge, axis=0).round().astype(np.uint8)


def _stretch(img: np.ndarray, size: int, interpolation: str, crop_pct: float) -> np.ndarray:
    return _resize(img, size, size, interpolation)


def _letterbox(img: np.ndarray, size: int, interpolation: str, crop_pct: float) -> np.ndarray:
    h, w = img.shape[:2]
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    resized = _resize(img, nh, nw, interpolation)
    if (nh, nw) == (size, size):
        return resized
    out = np.empty((size, size, img.shape[2]), dtype=img.dtype)
    out[:] = _border_value(img)  # the original's border: thin frames survive
    top, left = (size - nh) // 2, (size - nw) // 2
    out[top : top + nh, left : left + nw] = resized
    return out


def _center_crop(img: np.ndarray, size: int, interpolation: str, crop_pct: float) -> np.ndarray:
    h, w = img.shape[:2]
    # timm's eval crop: the shorter side becomes size / crop_pct, the middle size px are kept.
    scale = size / crop_pct / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    resized = _resize(img, nh, nw, interpolation)
    top, left = (nh - size) // 2, (nw - size) // 2
    return resized[top : top + size, left : left + size]


_RESIZERS = {"stretch": _stretch, "letterbox": _letterbox, "center_crop": _center_crop}
_UNRESOLVED = (
    "data.image_size is unset: resolve the config against its model first "
    "(ensemblecv.models.resolve_inputs; train and the launchers do), or set data.image_size."
)


def resize_op(
    mode: str, size: int, interpolation: str = "auto", crop_pct: float | None = None
) -> Resize:
    """``img (H, W, C) uint8 -> (size, size, C) uint8``.

    stretch: ignore the aspect ratio; letterbox: fit the longer side and pad
    (with the image's median border colour, see :func:`_border_value`);
    center_crop: fit the shorter side to ``size / crop_pct`` (default 1) and
    crop the middle. ``interpolation`` is the filter for enlarging.
    """
    if mode not in _RESIZERS:
        raise ConfigError(unknown_name_message("resize mode", mode, RESIZE_MODES))
    if interpolation not in _ENLARGE:
        raise ConfigError(unknown_name_message("interpolation", interpolation, list(_ENLARGE)))
    if size is None:
        raise ConfigError(_UNRESOLVED)
    if size < 1:
        raise ConfigError(f"Resize size must be >= 1, got {size}.")
    return partial(
        _RESIZERS[mode], size=int(size), interpolation=interpolation, crop_pct=crop_pct or 1.0
    )
