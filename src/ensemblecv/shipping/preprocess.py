"""Bytes of an uploaded image → the uint8 array an exported ensemble takes.

The same two steps as training and ``predict``: the project's one decoder
(:mod:`ensemblecv.data.imageio`: EXIF orientation, transparency onto white,
any PIL mode to 1 or 3 channels, truncation and decompression bombs refused
with a reason) and the project's resize (:func:`ensemblecv.data.resize.resize_op`:
stretch, letterbox with the border's median colour, or centre crop, area
interpolation when shrinking). Nothing here is a second copy of either, and
nothing here imports torch (a server of an ONNX file does not need it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.imageio import MAX_PIXELS, load_image_bytes
from ..data.resize import resize_op


@dataclass(frozen=True)
class InputSpec:
    """What the graph's input must be: (N, size, size, channels) uint8, resized with ``resize``."""

    size: int
    channels: int
    resize: str
    #: The filter for enlarging and centre crop's fraction (``data.interpolation`` / ``crop_pct``).
    interpolation: str = "auto"
    crop_pct: float | None = None

    def to_dict(self) -> dict:
        return {
            "name": "images",
            "dtype": "uint8",
            "layout": "NHWC",
            "height": self.size,
            "width": self.size,
            "channels": self.channels,
            "resize": self.resize,
            "interpolation": self.interpolation,
            "crop_pct": self.crop_pct,
        }

    @classmethod
    def from_dict(cls, spec: dict) -> InputSpec:
        """From ``model.json``'s ``input`` (files exported before interpolation existed: auto)."""
        return cls(
            int(spec["height"]),
            int(spec["channels"]),
            str(spec["resize"]),
            str(spec.get("interpolation") or "auto"),
            spec.get("crop_pct"),
        )


@dataclass
class PreparedImage:
    """A decoded upload: ``original`` (H, W, C) as decoded, ``pixels`` resized for the model."""

    name: str
    original: np.ndarray
    pixels: np.ndarray


class Preprocessor:
    """``(bytes, name) -> PreparedImage`` for one :class:`InputSpec`; raises ImageLoadError."""

    def __init__(self, spec: InputSpec, max_pixels: int = MAX_PIXELS) -> None:
        self.spec = spec
        self.max_pixels = int(max_pixels)
        self._resize = resize_op(spec.resize, spec.size, spec.interpolation, spec.crop_pct)

    def __call__(self, data: bytes, name: str = "upload") -> PreparedImage:
        image = load_image_bytes(data, self.spec.channels, name, self.max_pixels)
        return PreparedImage(name, image, self._resize(image))

    def resize(self, image: np.ndarray) -> np.ndarray:
        """Resize an already decoded (H, W, C) uint8 image."""
        return self._resize(image)
