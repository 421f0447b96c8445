"""The one image loader used everywhere (audit, training, prediction).

Real datasets scraped from the web or drawn by hand arrive in every PIL mode,
with EXIF rotations, transparent backgrounds and the odd broken file. This
module turns any of them into a ``uint8`` array of shape (H, W, C) with C = 1
or 3, or raises :class:`ImageLoadError` with a short reason tag — it never
returns garbage and never lets a raw PIL exception escape.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import ImageLoadError
from .builtin import BUILTIN_SCHEME, resolve_builtin

#: Default pixel limit (width × height) above which a file is treated as a
#: decompression bomb. 100 MP is far above any photo a classifier is trained on.
MAX_PIXELS = 100_000_000

#: Extensions treated as images when listing folders. Files without an
#: extension are tried too (scraped data often lacks one); other extensions are
#: reported as ignored rather than silently dropped.
IMAGE_EXTENSIONS = frozenset(
    {
        ".png",
        ".jpg",
        ".jpeg",
        ".jpe",
        ".jfif",
        ".bmp",
        ".gif",
        ".tif",
        ".tiff",
        ".webp",
        ".ppm",
        ".pgm",
        ".pbm",
        ".pnm",
        ".ico",
        ".tga",
    }
)

#: Reason tags, stable strings that end up in audit.json and bad-file lists.
REASONS = {
    "missing": "file does not exist",
    "empty": "file is empty (0 bytes)",
    "not_an_image": "content is not a recognised image format",
    "truncated": "image data is truncated or corrupt",
    "decompression_bomb": "image is larger than the pixel limit (possible decompression bomb)",
    "unsupported_mode": "pixel mode cannot be converted",
    "unreadable": "file cannot be read",
}

_TRANSPARENT_MODES = {"LA", "La", "RGBA", "RGBa", "PA"}


def is_virtual(path: str) -> bool:
    return str(path).startswith(BUILTIN_SCHEME)


def _resolve_virtual(path: str) -> Image.Image:
    return Image.fromarray(resolve_builtin(path))


def open_image(path: str | os.PathLike, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Open and fully decode ``path`` with EXIF orientation applied, in its native mode.

    Decoding happens here (not lazily) so truncated files fail now, inside a
    ``try``, and not later inside a DataLoader worker.
    """
    path = str(path)
    if is_virtual(path):
        return _resolve_virtual(path)
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        raise ImageLoadError(path, "missing") from None
    except OSError as exc:
        raise ImageLoadError(path, "unreadable", str(exc)) from None
    if size == 0:
        raise ImageLoadError(path, "empty")
    return _decode(path, path, max_pixels)


def open_image_bytes(
    data: bytes, name: str = "upload", max_pixels: int = MAX_PIXELS
) -> Image.Image:
    """:func:`open_image` for bytes in memory (an upload), with the same checks and reasons.

    ``name`` only labels errors; nothing is written to disk.
    """
    if not data:
        raise ImageLoadError(name, "empty")
    return _decode(io.BytesIO(data), name, max_pixels)


def _decode(source, label: str, max_pixels: int) -> Image.Image:
    """Fully decode ``source`` (a path or a binary file object); errors name ``label``."""
    old_limit = Image.MAX_IMAGE_PIXELS
    try:
        # PIL warns between 1× and 2× the limit and raises above 2×; we want a
        # hard stop at the limit, so the warning is promoted to an error.
        Image.MAX_IMAGE_PIXELS = max_pixels
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as img:
                # PIL reads the limit from a global that concurrent callers (a
                # server's threads) may be restoring; this check uses ours.
                if img.width * img.height > max_pixels:
                    raise ImageLoadError(
                        label,
                        "decompression_bomb",
                        f"{img.width}x{img.height} px is over the limit of {max_pixels} px",
                    )
                img.load()
                fmt = img.format
                img = ImageOps.exif_transpose(img)
                img.format = fmt
                return img
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageLoadError(label, "decompression_bomb", str(exc).split(".")[0]) from None
    except UnidentifiedImageError:
        raise ImageLoadError(label, "not_an_image") from None
    except (IsADirectoryError, PermissionError) as exc:
        raise ImageLoadError(label, "unreadable", str(exc)) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        # PIL reports truncation and corrupt streams as OSError/SyntaxError.
        raise ImageLoadError(label, "truncated", str(exc)) from None
    finally:
        Image.MAX_IMAGE_PIXELS = old_limit


def _to_8bit(arr: np.ndarray) -> np.ndarray:
    """Map integer/float pixel data of any range onto 0..255.

    Floats in [0, 1] are scaled by 255; values already within 0..255 are kept;
    16-bit ranges are divided by 257 (65535 → 255); anything wider is min-max
    stretched, since there is no convention to rely on.
    """
    is_float = arr.dtype.kind == "f"  # checked before the cast below makes everything float
    arr = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = float(arr.min(initial=0.0)), float(arr.max(initial=0.0))
    if lo >= 0 and hi <= 1.0 and is_float:
        arr = arr * 255.0
    elif lo >= 0 and hi <= 255:
        pass
    elif lo >= 0 and hi <= 65535:
        arr = arr / 257.0
    else:
        arr = (arr - lo) / max(hi - lo, 1e-12) * 255.0
    return np.clip(np.rint(arr), 0, 255).astype(np.uint8)


def to_channels(img: Image.Image, channels: int) -> np.ndarray:
    """Convert any PIL mode to a (H, W, channels) uint8 array.

    Transparency is composited onto white, because sketches and logos are drawn
    black on a transparent (meant: white) background; compositing onto black
    would invert their meaning.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    mode = img.mode
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif mode == "1":
        img = img.convert("L")
    elif mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        img = Image.fromarray(_to_8bit(np.asarray(img)), mode="L")
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        img = img.convert("RGB")
    if img.mode in _TRANSPARENT_MODES:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode not in ("L", "RGB"):
        try:
            img = img.convert("RGB")
        except (ValueError, OSError) as exc:
            raise ImageLoadError(
                getattr(img, "filename", "?"), "unsupported_mode", img.mode
            ) from exc
    if channels == 1 and img.mode != "L":
        img = img.convert("L")
    elif channels == 3 and img.mode != "RGB":
        img = img.convert("RGB")
    arr = np.array(img, dtype=np.uint8)  # a writable copy: torch.from_numpy warns on read-only
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return np.ascontiguousarray(arr)


def load_image(
    path: str | os.PathLike, channels: int = 3, max_pixels: int = MAX_PIXELS
) -> np.ndarray:
    """Decode ``path`` to a (H, W, channels) uint8 array or raise :class:`ImageLoadError`."""
    img = open_image(path, max_pixels=max_pixels)
    try:
        return to_channels(img, channels)
    except ImageLoadError as exc:
        raise ImageLoadError(str(path), exc.reason, exc.detail) from None


def load_image_bytes(
    data: bytes, channels: int = 3, name: str = "upload", max_pixels: int = MAX_PIXELS
) -> np.ndarray:
    """:func:`load_image` for bytes in memory: (H, W, channels) uint8 or :class:`ImageLoadError`."""
    img = open_image_bytes(data, name, max_pixels=max_pixels)
    try:
        return to_channels(img, channels)
    except ImageLoadError as exc:
        raise ImageLoadError(name, exc.reason, exc.detail) from None


def has_image_extension(path: str | Path) -> bool:
    suffix = Path(path).suffix.lower()
    return suffix == "" or suffix in IMAGE_EXTENSIONS


#: EXIF orientations that swap width and height (transpose, 90° and 270° turns).
_SWAPPING_ORIENTATIONS = frozenset({5, 6, 7, 8})


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation tag without decoding pixels.

    PIL's ``getexif()`` on a PNG decodes the whole image to look for an eXIf
    chunk after the pixel data; the header's copy (``info["exif"]``) is what
    cameras and editors write, and it is all we read for PNG.
    """
    if img.format == "PNG":
        raw = img.info.get("exif")
        if not raw:
            return 1
        exif = Image.Exif()
        exif.load(raw)
        return int(exif.get(0x0112, 1) or 1)
    return int(img.getexif().get(0x0112, 1) or 1)


def read_header(path: str | os.PathLike) -> tuple[int, int, int]:
    """``(width, height, orientation)`` from the file header alone, without decoding pixels.

    ``width``/``height`` are those of the image as :func:`open_image` returns
    it (EXIF orientation applied); ``orientation`` is the raw EXIF tag (1 when
    absent). Label readers need the size of every image, and a header read is
    a hundred times cheaper than a decode; truncated pixel data is caught later
    by the scan, not here.
    """
    path = str(path)
    try:
        if os.stat(path).st_size == 0:
            raise ImageLoadError(path, "empty")
        with Image.open(path) as img:
            width, height = img.size
            try:
                orientation = _orientation(img)
            except (ValueError, TypeError, OSError, SyntaxError):
                orientation = 1  # a broken EXIF block: PIL's exif_transpose ignores it too
    except FileNotFoundError:
        raise ImageLoadError(path, "missing") from None
    except UnidentifiedImageError:
        raise ImageLoadError(path, "not_an_image") from None
    except (IsADirectoryError, PermissionError) as exc:
        raise ImageLoadError(path, "unreadable", str(exc)) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageLoadError(path, "truncated", str(exc)) from None
    if orientation in _SWAPPING_ORIENTATIONS:
        width, height = height, width
    return width, height, orientation
