"""Decoding a mask file into class indices, the one rule every reader, the audit and training share.

A mask is an image of class indices (``uint8``, ``ignore_index`` for pixels
that are not scored, VOC's 255 void border). How a file becomes indices
depends on its PNG mode, not on the dataset layout:

* palette (``P``) PNGs, VOC's: the stored indices, whatever the colours;
* grey (``L``, ``1``, 16-bit ``I;16`` below 256): the values as they are;
* RGB(A): mapped through the dataset's palette (colour of class ``k`` → ``k``,
  the ignore colour → ``ignore_index``); an RGB file whose three channels are
  equal everywhere is a grey mask saved as RGB and read as grey. An RGB mask
  with colours but no palette to map them is refused (``rgb_without_palette``):
  guessing an order of colours would silently permute the classes.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ...errors import DataError

#: Pascal VOC's 21 classes, index = mask value.
VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip

#: Reason tags of bad segmentation input: stable strings written to bad_masks.csv.
BAD_REASONS = {
    "mask_missing": "image has no mask (image left out)",
    "image_missing": "mask or index entry names an image that does not exist (left out)",
    "size_mismatch": "mask size differs from its image's (image left out)",
    "unknown_value": "mask holds values that are no class and not ignore_index (image left out)",
    "rgb_without_palette": "RGB mask but no palette maps its colours to classes (image left out)",
    "unreadable": "image or mask file cannot be read (image left out)",
    "malformed": "index row or annotation cannot be parsed (skipped)",
    "unknown_class": "annotation's category is not in the class list (skipped)",
    "no_segmentation": "COCO annotation has neither polygon nor RLE, only a box (skipped)",
}


class MaskError(DataError):
    """One mask cannot be used; ``reason`` is a key of :data:`BAD_REASONS`."""

    def __init__(self, path: str, reason: str, detail: str = "") -> None:
        self.path, self.reason, self.detail = str(path), reason, detail
        super().__init__(f"{path}: {reason}" + (f" ({detail})" if detail else ""))


def voc_palette(n: int = 256) -> np.ndarray:
    """VOC's colour map (bit-interleaved), ``(n, 3)`` uint8: 0 black, 1 dark red, 255 (224, 224, 192)."""
    out = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        c, rgb = i, [0, 0, 0]
        for j in range(8):
            for k in range(3):
                rgb[k] |= ((c >> k) & 1) << (7 - j)
            c >>= 3
        out[i] = rgb
    return out


#: VOC's void colour, the colour of ``ignore_index`` 255 in its palette.
VOC_IGNORE_COLOR = (224, 224, 192)


def _rgb_codes(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.uint32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def _map_rgb(
    rgb: np.ndarray, path, palette: np.ndarray | None, ignore_index: int, ignore_color
) -> np.ndarray:
    if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
        return np.ascontiguousarray(rgb[..., 0])
    if palette is None:
        raise MaskError(
            path,
            "rgb_without_palette",
            "colours cannot be mapped to class indices; give each class its colour "
            "(classes.txt lines 'name R G B') or save index masks (palette or grey PNG)",
        )
    lut = {int(c): k for k, c in enumerate(_rgb_codes(np.asarray(palette, np.uint8)))}
    if ignore_color is not None:
        lut.setdefault(int(_rgb_codes(np.asarray(ignore_color, np.uint8))), ignore_index)
    codes, inverse = np.unique(_rgb_codes(rgb), return_inverse=True)
    missing = [int(c) for c in codes if int(c) not in lut]
    if missing:
        shown = ", ".join(f"({c >> 16}, {(c >> 8) & 255}, {c & 255})" for c in missing[:5])
        raise MaskError(
            path,
            "unknown_value",
            f"{len(missing)} colour(s) not in the palette: {shown}"
            + (" ..." if len(missing) > 5 else ""),
        )
    values = np.array([lut[int(c)] for c in codes], dtype=np.uint8)
    return values[inverse.reshape(rgb.shape[:2])]


def open_mask(path: str | os.PathLike) -> Image.Image:
    """The mask file opened (not yet decoded), or :class:`MaskError` ``unreadable``."""
    try:
        img = Image.open(path)
        img.load()
        return img
    except FileNotFoundError:
        raise MaskError(path, "mask_missing", "file not found") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise MaskError(path, "unreadable", str(exc) or type(exc).__name__) from None


def decode_mask(
    path: str | os.PathLike,
    palette: np.ndarray | None = None,
    ignore_index: int = 255,
    ignore_color: tuple[int, int, int] | None = None,
) -> np.ndarray:
    """The mask at ``path`` as class indices, ``(H, W)`` uint8 (see the module docstring).

    Raises :class:`MaskError` (``unreadable``, ``rgb_without_palette``,
    ``unknown_value``); which values are classes is checked by the caller, who
    knows the class count.
    """
    img = open_mask(path)
    mode = img.mode
    if mode in ("P", "L"):
        return np.asarray(img, dtype=np.uint8).copy()
    if mode in ("PA", "LA"):
        return np.asarray(img)[..., 0].astype(np.uint8)
    if mode == "1":
        return np.asarray(img).astype(np.uint8)
    if mode.startswith("I"):
        arr = np.asarray(img)
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            raise MaskError(
                path, "unknown_value", f"{mode} mask holds values up to {int(arr.max())} (> 255)"
            )
        return arr.astype(np.uint8)
    if mode in ("RGB", "RGBA"):
        rgb = np.asarray(img)[..., :3]
        return _map_rgb(rgb, path, palette, ignore_index, ignore_color)
    raise MaskError(path, "unreadable", f"image mode {mode} is not a mask mode (P, L, 1, I, RGB)")


def png_palette(path: str | os.PathLike, n: int) -> np.ndarray | None:
    """The first ``n`` colours of a palette PNG's palette, or None for another mode."""
    try:
        with Image.open(path) as img:
            if img.mode not in ("P", "PA"):
                return None
            pal = np.frombuffer(bytes(img.getpalette("RGB") or []), dtype=np.uint8)
    except (OSError, ValueError, SyntaxError):
        return None
    pal = pal[: 3 * (len(pal) // 3)].reshape(-1, 3)
    if len(pal) < n:
        pal = np.vstack([pal, np.zeros((n - len(pal), 3), np.uint8)])
    return pal[:n].copy()


def save_index_png(
    mask: np.ndarray, path: str | os.PathLike, palette: np.ndarray | None = None
) -> Path:
    """Write class indices as a palette PNG (VOC's palette when none is given): values stay exact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(np.asarray(mask, dtype=np.uint8), mode="P")
    full = voc_palette()
    if palette is not None:
        full[: len(palette)] = np.asarray(palette, np.uint8)[:256]
    img.putpalette(full.ravel().tolist())
    img.save(path, optimize=False)
    return path


def value_counts(mask: np.ndarray) -> np.ndarray:
    """Pixels per value 0..255 of a uint8 mask, ``(256,)`` int64."""
    return np.bincount(np.asarray(mask, dtype=np.uint8).ravel(), minlength=256).astype(np.int64)


def read_classes_file(path: str | os.PathLike) -> tuple[list[str], np.ndarray | None]:
    """``classes.txt``: one class per line in index order, optionally ``name R G B``.

    Blank lines and ``#`` comments are skipped. Colours, when every line has
    them, are the palette RGB masks are mapped through (and predictions drawn in).
    """
    path = Path(path)
    names, colors = [], []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) >= 4 and all(p.isdigit() for p in parts[-3:]):
            rgb = [int(p) for p in parts[-3:]]
            if max(rgb) > 255:
                raise DataError(f"{path}:{n}: colour values must be 0..255, got {line!r}")
            names.append(" ".join(parts[:-3]))
            colors.append(rgb)
        else:
            names.append(line)
            colors.append(None)
    if not names:
        raise DataError(f"{path} lists no class.")
    if len(set(names)) != len(names):
        dup = sorted({c for c in names if names.count(c) > 1})
        raise DataError(f"{path} lists a class twice: {', '.join(dup[:10])}")
    given = [c is not None for c in colors]
    if any(given) and not all(given):
        raise DataError(
            f"{path}: give a colour (name R G B) on every line or on none; "
            f"{sum(given)} of {len(names)} lines have one."
        )
    palette = np.array(colors, dtype=np.uint8) if all(given) else None
    return names, palette


__all__ = [
    "BAD_REASONS",
    "VOC_CLASSES",
    "VOC_IGNORE_COLOR",
    "MaskError",
    "decode_mask",
    "read_classes_file",
    "save_index_png",
    "value_counts",
    "voc_palette",
]
