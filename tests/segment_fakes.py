"""Tiny segmentation datasets for tests, in every layout the readers know, written with PIL.

Masks are drawn from a seed: background 0, one to three rectangles of random
classes, a one-pixel ``ignore`` border (VOC's void 255) on some images. The
``truth`` each maker returns maps sample id to the exact index mask, so a
reader's output can be compared pixel for pixel.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from PIL import Image

from ensemblecv.tasks.segment.masks import VOC_IGNORE_COLOR, voc_palette

W, H = 24, 16


def draw_mask(rng: np.random.Generator, n_classes: int, border: bool, size=(W, H)) -> np.ndarray:
    w, h = size
    mask = np.zeros((h, w), dtype=np.uint8)
    for _ in range(int(rng.integers(1, 4))):
        c = int(rng.integers(1, n_classes))
        x, y = int(rng.integers(0, w - 6)), int(rng.integers(0, h - 5))
        mask[y : y + int(rng.integers(3, 6)), x : x + int(rng.integers(3, 7))] = c
    if border:
        mask[0, :] = mask[-1, :] = 255
    return mask


def image_for(mask: np.ndarray, seed: int) -> Image.Image:
    """An RGB picture whose colour follows the mask (so models could learn it) plus noise."""
    rng = np.random.default_rng(seed)
    base = (np.asarray(mask, np.int64)[..., None] * np.array([37, 91, 53]) % 256).astype(np.uint8)
    noise = rng.integers(0, 20, size=base.shape, dtype=np.uint8)
    return Image.fromarray(np.clip(base.astype(int) + noise, 0, 255).astype(np.uint8), "RGB")


def save_palette_png(mask: np.ndarray, path: Path, palette: np.ndarray | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(mask, mode="P")
    img.putpalette((voc_palette() if palette is None else palette).ravel().tolist())
    img.save(path)


def save_rgb_png(mask: np.ndarray, path: Path, palette: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    full = np.zeros((256, 3), np.uint8)
    full[: len(palette)] = palette
    full[255] = VOC_IGNORE_COLOR
    Image.fromarray(full[mask], "RGB").save(path)


def make_voc(root: Path, n: int = 10, n_classes: int = 21, seed: int = 0, lists: bool = True):
    """VOC layout: JPEGImages/*.jpg, palette PNGs in SegmentationClass/, ImageSets lists."""
    rng = np.random.default_rng(seed)
    truth = {}
    ids = [f"2007_{i:06d}" for i in range(n)]
    for i, image_id in enumerate(ids):
        mask = draw_mask(rng, n_classes, border=i % 2 == 0)
        (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
        image_for(mask, i).save(root / "JPEGImages" / f"{image_id}.jpg", quality=95)
        save_palette_png(mask, root / "SegmentationClass" / f"{image_id}.png")
        truth[f"JPEGImages/{image_id}.jpg"] = mask
    if lists:
        sets = root / "ImageSets" / "Segmentation"
        sets.mkdir(parents=True, exist_ok=True)
        half = n // 2
        (sets / "train.txt").write_text("\n".join(ids[:half]) + "\n", encoding="utf-8")
        (sets / "val.txt").write_text("\n".join(ids[half:]) + "\n", encoding="utf-8")
        (sets / "trainval.txt").write_text("\n".join(ids) + "\n", encoding="utf-8")
    return truth


def make_folders(
    root: Path,
    n: int = 10,
    n_classes: int = 4,
    mode: str = "P",
    seed: int = 0,
    image_ext: str = ".jpg",
    subdir: str = "",
):
    """images/ + masks/ matched by stem; masks as palette (P), grey (L) or RGB PNGs."""
    rng = np.random.default_rng(seed)
    palette = voc_palette(n_classes)
    truth = {}
    for i in range(n):
        mask = draw_mask(rng, n_classes, border=i % 3 == 0)
        stem = f"{subdir}/img_{i:03d}" if subdir else f"img_{i:03d}"
        image = root / "images" / f"{stem}{image_ext}"
        image.parent.mkdir(parents=True, exist_ok=True)
        image_for(mask, i).save(image)
        dest = root / "masks" / f"{stem}.png"
        dest.parent.mkdir(parents=True, exist_ok=True)
        if mode == "P":
            save_palette_png(mask, dest)
        elif mode == "L":
            Image.fromarray(mask, "L").save(dest)
        else:
            save_rgb_png(mask, dest, palette)
        truth[f"images/{stem}{image_ext}"] = mask
    return truth


def make_csv(root: Path, n: int = 10, n_classes: int = 4, seed: int = 0, groups: bool = False):
    """pics/*.png + labels/*.png (grey masks) and index.csv with relative paths (and a group)."""
    rng = np.random.default_rng(seed)
    truth, lines = {}, ["image_path,mask_path" + (",group" if groups else "")]
    for i in range(n):
        mask = draw_mask(rng, n_classes, border=False)
        (root / "pics").mkdir(parents=True, exist_ok=True)
        (root / "labels").mkdir(parents=True, exist_ok=True)
        image_for(mask, i).save(root / "pics" / f"p{i}.png")
        Image.fromarray(mask, "L").save(root / "labels" / f"p{i}_mask.png")
        lines.append(f"pics/p{i}.png,labels/p{i}_mask.png" + (f",g{i // 2}" if groups else ""))
        truth[f"pics/p{i}.png"] = mask
    (root / "index.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return truth


def make_coco(root: Path, n: int = 6, seed: int = 0):
    """images/*.png + annotations.json: rectangles as polygons, one RLE and one crowd region.

    Polygons are drawn on pixel edges (x..x+w) so pycocotools' rasterisation
    covers exactly the rectangle's pixels; the returned truth is exact.
    """
    from faster_coco_eval.core import mask as cocomask

    rng = np.random.default_rng(seed)
    cats = [{"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}]  # ids with gaps: labels 1, 2
    doc = {"images": [], "annotations": [], "categories": cats}
    truth, ann_id = {}, 1
    for i in range(n):
        mask = np.zeros((H, W), np.uint8)
        (root / "images").mkdir(parents=True, exist_ok=True)
        doc["images"].append({"id": i + 1, "file_name": f"im{i}.png", "width": W, "height": H})
        for j in range(2):
            label = int(rng.integers(1, 3))
            x, y, w, h = int(rng.integers(0, 12)), int(rng.integers(0, 8)), 6, 5
            mask[y : y + h, x : x + w] = label  # the second overlaps the first: later wins
            if j == 0 and i % 2:  # an RLE annotation on odd images
                region = np.zeros((H, W), np.uint8, order="F")
                region[y : y + h, x : x + w] = 1
                rle = cocomask.encode(np.asfortranarray(region))
                segm = {"size": [H, W], "counts": rle["counts"].decode()}
            else:
                segm = [[x, y, x + w, y, x + w, y + h, x, y + h]]
            doc["annotations"].append({"id": ann_id, "image_id": i + 1, "category_id": cats[label - 1]["id"],
                                       "segmentation": segm, "iscrowd": 0, "bbox": [x, y, w, h]})  # fmt: skip
            ann_id += 1
        if i == 0:  # a crowd region: ignored
            doc["annotations"].append({"id": ann_id, "image_id": 1, "category_id": 3, "iscrowd": 1,
                                       "segmentation": [[0, 0, 3, 0, 3, 3, 0, 3]], "bbox": [0, 0, 3, 3]})  # fmt: skip
            ann_id += 1
            mask[0:3, 0:3] = 255
        image_for(mask, i).save(root / "images" / f"im{i}.png")
        truth[f"im{i}.png"] = mask  # a COCO file's sample ids are relative to its image folder
    (root / "annotations.json").write_text(json.dumps(doc), encoding="utf-8")
    return truth


def tree_hash(root: Path) -> dict[str, str]:
    """Every file below ``root`` with its SHA-1 and mtime: to prove a source was not touched."""
    out = {}
    for p in sorted(Path(root).rglob("*")):
        if p.is_file():
            out[p.relative_to(root).as_posix()] = (
                hashlib.sha1(p.read_bytes()).hexdigest() + f":{p.stat().st_mtime_ns}"
            )
    return out
