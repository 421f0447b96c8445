"""Tiny detection datasets with known boxes, in any format: for tests, the demo and benchmarks.

Each class has its own colour and one of three shapes (filled rectangle,
ellipse, triangle, in turn), drawn on a noisy background, so a small detector can learn it on
CPU in minutes and a reader's output can be checked box by box.
"""

from __future__ import annotations

import colorsys
import os
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from ._common import BOX_COLUMNS, IMAGE_COLUMNS, BadLabels
from .labels_coco import write_coco
from .labels_labelme import write_labelme
from .labels_voc import write_voc
from .labels_yolo import write_yolo
from .read import DetectionData

_WRITERS = {"yolo": write_yolo, "coco": write_coco, "voc": write_voc, "labelme": write_labelme}
#: Where each layout puts its images, i.e. the prefix of the sample ids it reads back.
IMAGE_PREFIX = {"yolo": "images/", "coco": "images/", "voc": "JPEGImages/", "labelme": ""}
SHAPES = ("rectangle", "ellipse", "triangle")


def class_color(label: int, n_classes: int) -> tuple[int, int, int]:
    """Hues spread evenly over the classes, so no two classes share shape and colour."""
    r, g, b = colorsys.hsv_to_rgb(label / max(n_classes, 1), 0.85, 0.9)
    return int(r * 255), int(g * 255), int(b * 255)


def _draw(draw: ImageDraw.ImageDraw, kind: str, box: tuple[int, int, int, int], color) -> None:
    """Fill exactly the pixels [x1, x2) × [y1, y2) bounds (PIL's corners are inclusive)."""
    x1, y1, x2, y2 = box
    if kind == "rectangle":
        draw.rectangle([x1, y1, x2 - 1, y2 - 1], fill=color)
    elif kind == "ellipse":
        draw.ellipse([x1, y1, x2 - 1, y2 - 1], fill=color)
    else:
        draw.polygon([(x1, y2 - 1), (x2 - 1, y2 - 1), ((x1 + x2 - 1) / 2, y1)], fill=color)


def make_shapes_dataset(
    root: str | os.PathLike,
    n_images: int = 24,
    size: int | tuple[int, int] = 64,
    classes: int | list[str] = 3,
    seed: int = 0,
    format: str = "yolo",
    max_boxes: int = 3,
    background: float = 0.1,
) -> DetectionData:
    """Write ``n_images`` PNGs with up to ``max_boxes`` shapes each, labelled in ``format``.

    ``size`` is the side (or ``(width, height)``) in pixels; ``classes`` a count
    or names; about ``background`` of the images have no object. Returns the
    ground truth as :class:`DetectionData` with the sample ids that
    :func:`read_detection` gives for ``root``, so tests can compare exactly.
    """
    if format not in _WRITERS:
        raise ValueError(f"format must be one of {sorted(_WRITERS)}, got {format!r}")
    root = Path(root)
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root} is not empty")
    names = [f"class_{i}" for i in range(classes)] if isinstance(classes, int) else list(classes)
    width, height = (size, size) if isinstance(size, int) else size
    rng = np.random.default_rng(seed)
    arrays, image_rows, box_rows = {}, [], []
    for i in range(n_images):
        sample_id = f"{IMAGE_PREFIX[format]}img_{i:04d}.png"
        pixels = rng.integers(90, 166, size=(height, width, 3), dtype=np.uint8)
        img = Image.fromarray(pixels)
        draw = ImageDraw.Draw(img)
        n = 0 if rng.random() < background else int(rng.integers(1, max_boxes + 1))
        for _ in range(n):
            label = int(rng.integers(len(names)))
            bw = int(rng.integers(max(2, width // 6), max(3, width // 2)))
            bh = int(rng.integers(max(2, height // 6), max(3, height // 2)))
            x1, y1 = int(rng.integers(0, width - bw + 1)), int(rng.integers(0, height - bh + 1))
            box = (x1, y1, x1 + bw, y1 + bh)
            _draw(draw, SHAPES[label % len(SHAPES)], box, class_color(label, len(names)))
            box_rows.append((sample_id, label, names[label], *map(float, box), False, False))
        arrays[sample_id] = np.asarray(img)
        image_rows.append((sample_id, sample_id, width, height, sample_id))
    images = pd.DataFrame(image_rows, columns=IMAGE_COLUMNS)
    boxes = pd.DataFrame(box_rows, columns=BOX_COLUMNS)
    root.mkdir(parents=True, exist_ok=True)
    _WRITERS[format](
        images, boxes, names, root, lambda src, dest: Image.fromarray(arrays[src]).save(dest)
    )
    images["path"] = [str((root / sid).absolute()) for sid in images["sample_id"]]
    return DetectionData(images, boxes, names, BadLabels(root).frame(), format, root, str(root))


def _texture(rng, height: int, width: int) -> np.ndarray:
    """A textured canvas: coarse colour blotches (bilinear-upscaled noise) plus fine grain."""
    shape = (max(2, height // 12), max(2, width // 12))
    coarse = rng.integers(60, 180, size=(*shape, 1)) + rng.integers(-25, 26, size=(*shape, 3))
    img = Image.fromarray(np.clip(coarse, 0, 255).astype(np.uint8)).resize(
        (width, height), Image.BILINEAR
    )
    grain = rng.normal(0, 12, size=(height, width, 3))
    return np.clip(np.asarray(img, np.float64) + grain, 0, 255)


def make_objects_dataset(
    root: str | os.PathLike,
    n_images: int = 200,
    size: int = 96,
    items: str = "digits",
    classes: tuple[int, ...] = (0, 1, 4, 7),
    seed: int = 0,
    max_objects: int = 4,
    scale: tuple[int, int] = (14, 40),
    split: str = "train",
) -> DetectionData:
    """Built-in items (``digits`` or ``fashion-mnist``) pasted at random scales onto textured
    canvases, in YOLO layout, with exact boxes (the tight box of each item's visible pixels).

    ``classes`` picks item classes (their names become the class names); each object's
    side is drawn from ``scale`` px; items of the ``train`` split make the training set
    and those of ``test`` a test set, so no item is seen in both.
    """
    from ...data.builtin import load_split

    root = Path(root)
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root} is not empty")
    data = load_split(items, split)
    names = [data.classes[c] for c in classes]
    pools = [np.flatnonzero(data.labels == c) for c in classes]
    rng = np.random.default_rng(seed)
    arrays, image_rows, box_rows = {}, [], []
    for i in range(n_images):
        sample_id = f"images/img_{i:04d}.png"
        canvas = _texture(rng, size, size)
        for _ in range(int(rng.integers(0, max_objects + 1))):
            label = int(rng.integers(len(classes)))
            item = data.images[rng.choice(pools[label])].astype(np.float64)
            side = int(rng.integers(scale[0], min(scale[1], size) + 1))
            alpha = np.asarray(Image.fromarray(item.astype(np.uint8)).resize((side, side),
                                Image.BILINEAR), np.float64) / 255.0  # fmt: skip
            ys, xs = np.nonzero(alpha > 0.25)
            if not len(xs):
                continue
            x0, y0 = int(rng.integers(0, size - side + 1)), int(rng.integers(0, size - side + 1))
            color = np.array(class_color(label, len(classes)), np.float64)
            region = canvas[y0 : y0 + side, x0 : x0 + side]
            region[:] = region * (1 - alpha[..., None]) + color * alpha[..., None]
            box = (x0 + xs.min(), y0 + ys.min(), x0 + xs.max() + 1, y0 + ys.max() + 1)
            box_rows.append((sample_id, label, names[label], *map(float, box), False, False))
        arrays[sample_id] = canvas.astype(np.uint8)
        image_rows.append((sample_id, sample_id, size, size, sample_id))
    images = pd.DataFrame(image_rows, columns=IMAGE_COLUMNS)
    boxes = pd.DataFrame(box_rows, columns=BOX_COLUMNS)
    root.mkdir(parents=True, exist_ok=True)
    write_yolo(
        images, boxes, names, root, lambda src, dest: Image.fromarray(arrays[src]).save(dest)
    )
    images["path"] = [str((root / sid).absolute()) for sid in images["sample_id"]]
    return DetectionData(images, boxes, names, BadLabels(root).frame(), "yolo", root, str(root))


__all__ = ["SHAPES", "class_color", "make_objects_dataset", "make_shapes_dataset"]
