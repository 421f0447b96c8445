"""A built-in segmentation dataset generated from data that ships here: shapes and digits on texture.

Each image is a textured background (smoothed noise plus stripes) with a few
filled circles, squares and triangles and upscaled sklearn digits drawn on
it in random colours, partly overlapping; masks are exact (drawn with the
same geometry) and carry VOC's void border: a ring of ``255`` around every
object, which the metrics and losses ignore. Written as ``images/`` +
``masks/`` (palette PNGs, VOC colours) + ``classes.txt`` per split, a layout
the segmentation reader reads.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

CLASSES = ["background", "circle", "square", "triangle", "digit"]


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    import cv2

    base = rng.uniform(60, 200, 3)
    noise = rng.normal(0, 1, (h // 4 + 1, w // 4 + 1, 3)).astype(np.float32)
    noise = cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC) * rng.uniform(10, 35)
    yy, xx = np.mgrid[0:h, 0:w]
    angle, period = rng.uniform(0, np.pi), rng.uniform(4, 12)
    stripes = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period)
    img = base + noise + stripes[..., None] * rng.uniform(5, 25)
    return np.clip(img, 0, 255)


def _draw_scene(rng: np.random.Generator, h: int, w: int, digits: np.ndarray):
    import cv2

    img = _texture(rng, h, w)
    mask = np.zeros((h, w), np.uint8)
    border = np.zeros((h, w), np.uint8)
    for _ in range(int(rng.integers(2, 5))):
        kind = int(rng.integers(1, len(CLASSES)))
        shape = np.zeros((h, w), np.uint8)
        r = int(rng.integers(max(4, min(h, w) // 8), max(6, min(h, w) // 3)))
        cy, cx = int(rng.integers(r, h - r)), int(rng.integers(r, w - r))
        if kind == 1:
            cv2.circle(shape, (cx, cy), r, 1, -1)
        elif kind == 2:
            cv2.rectangle(shape, (cx - r, cy - r), (cx + r, cy + r), 1, -1)
        elif kind == 3:
            pts = np.array([[cx, cy - r], [cx - r, cy + r], [cx + r, cy + r]], np.int32)
            cv2.fillPoly(shape, [pts], 1)
        else:
            d = digits[int(rng.integers(len(digits)))].astype(np.float32)
            big = cv2.resize(d, (2 * r, 2 * r), interpolation=cv2.INTER_LINEAR) > 5
            y0, x0 = cy - r, cx - r
            shape[y0 : y0 + 2 * r, x0 : x0 + 2 * r] = big[: h - y0, : w - x0]
        on = shape.astype(bool)
        colour = rng.uniform(0, 255, 3)
        shade = rng.normal(0, 12, (h, w, 1))
        img[on] = np.clip(colour + shade[on], 0, 255)
        mask[on] = kind
        ring = cv2.dilate(shape, np.ones((3, 3), np.uint8)) - cv2.erode(
            shape, np.ones((3, 3), np.uint8)
        )
        border[on] = 0
        border |= ring
    img = np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)
    mask[border.astype(bool)] = 255
    return img, mask


def make_shapes_dataset(
    root: str | Path, n_train: int = 240, n_test: int = 60, size: tuple[int, int] = (48, 64),
    seed: int = 0,
) -> Path:  # fmt: skip
    """Write ``root/train`` and ``root/test`` (images/, masks/, classes.txt); returns ``root``.

    ``size``: (height, width) of most images; a quarter are 3/4 of it, so the
    pipeline meets more than one image size. Deterministic in ``seed``.
    """
    from PIL import Image
    from sklearn.datasets import load_digits

    from .masks import voc_palette

    root = Path(root)
    digits = load_digits().images  # (1797, 8, 8), 0..16
    rng = np.random.default_rng(seed)
    pal = voc_palette().reshape(-1).tolist()
    for split, n in (("train", n_train), ("test", n_test)):
        (root / split / "images").mkdir(parents=True, exist_ok=True)
        (root / split / "masks").mkdir(parents=True, exist_ok=True)
        (root / split / "classes.txt").write_text("\n".join(CLASSES) + "\n", encoding="utf-8")
        for i in range(n):
            h, w = size if rng.random() > 0.25 else (size[0] * 3 // 4, size[1] * 3 // 4)
            img, mask = _draw_scene(rng, h, w, digits)
            Image.fromarray(img).save(root / split / "images" / f"{split}_{i:04d}.png")
            m = Image.fromarray(mask, mode="P")
            m.putpalette(pal)
            m.save(root / split / "masks" / f"{split}_{i:04d}.png")
    return root


__all__ = ["CLASSES", "make_shapes_dataset"]
