"""A multi-domain set made from data that is here: one gray image set rendered in visual styles.

Each style is a domain, as in PACS (photo, art, cartoon, sketch): the classes and the
shapes are shared, the low-level statistics (polarity, colour, texture, strokes) are
not — exactly what domain generalisation methods such as MixStyle target. Each domain
gets *different* source images (image ``i`` goes to domain ``i mod D``), so no image
is seen in two styles, and the domains interleave, so a class-balanced ``data.limit``
keeps them balanced too. Rendering is seeded, so the set is the same everywhere.
"""

from __future__ import annotations

import numpy as np

DOMAIN_STYLES = ("photo", "inverted", "colour", "sketch")


def _gray_rgb(x: np.ndarray) -> np.ndarray:
    return np.repeat(x[..., None], 3, axis=-1)


def _photo(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return _gray_rgb(x)


def _inverted(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return _gray_rgb(255 - x)


def _colour(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random foreground colour on a random, different background colour."""
    n = len(x)
    fg = rng.integers(0, 256, (n, 1, 1, 3)).astype(np.float32)
    bg = rng.integers(0, 256, (n, 1, 1, 3)).astype(np.float32)
    close = np.abs(fg - bg).sum(-1, keepdims=True) < 200  # keep the object visible
    bg = np.where(close, 255.0 - fg, bg)
    a = x[..., None].astype(np.float32) / 255.0
    return np.clip(bg * (1 - a) + fg * a, 0, 255).astype(np.uint8)


def _sketch(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Dark edge strokes (gradient magnitude) on white paper with a little grain."""
    f = x.astype(np.float32)
    gx = np.zeros_like(f)
    gy = np.zeros_like(f)
    gx[:, :, 1:-1] = f[:, :, 2:] - f[:, :, :-2]
    gy[:, 1:-1, :] = f[:, 2:, :] - f[:, :-2, :]
    edges = np.sqrt(gx**2 + gy**2)
    edges = edges / np.maximum(edges.reshape(len(f), -1).max(1), 1.0)[:, None, None]
    grain = rng.normal(0, 12, f.shape)
    out = 255.0 - 255.0 * np.clip(edges * 1.5, 0, 1) + grain
    return _gray_rgb(np.clip(out, 0, 255).astype(np.uint8))


_RENDER = {"photo": _photo, "inverted": _inverted, "colour": _colour, "sketch": _sketch}


def render_domains(
    images: np.ndarray,
    labels: np.ndarray,
    per_domain: int,
    styles: tuple[str, ...] = DOMAIN_STYLES,
    seed: int = 0,
    upscale: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images (N, H, W, 3) uint8, labels, domain names) from gray ``images`` (M, H, W).

    Takes the first ``per_domain * len(styles)`` images (fewer if there are fewer);
    image ``i`` is rendered in style ``i mod len(styles)``. ``upscale`` enlarges
    tiny images (8×8 digits) by pixel repetition first.
    """
    n = min(len(images), per_domain * len(styles))
    x = images[:n]
    if upscale > 1:
        x = np.kron(x, np.ones((1, upscale, upscale), dtype=np.uint8))
    which = np.arange(n) % len(styles)
    out = np.empty((*x.shape, 3), dtype=np.uint8)
    rng = np.random.default_rng(seed)
    for k, style in enumerate(styles):
        idx = np.flatnonzero(which == k)
        out[idx] = _RENDER[style](x[idx], rng)
    return out, labels[:n].astype(np.int64), np.array(styles, dtype=object)[which]
