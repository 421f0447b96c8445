"""Feeding a segmenter: images and masks decoded once, resized together, seeded joint augmentation.

An image is resized to ``data.image_size`` with the project's one resize
(``stretch`` or ``letterbox``; ``center_crop`` would cut pixels away that the
stored maps must cover and is refused); its mask takes the same geometry
with nearest-neighbour sampling, letterbox padding becoming ``ignore_index``
so it never counts. Both live in RAM when they fit ``data.cache_ram_mb``.
:meth:`SegmentSource.content_box` tells where the original image sits in
the model's square frame, which :mod:`.store` uses to map predictions back.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from ...errors import ConfigError, DataError


def read_mask(
    path: str, palette: np.ndarray | None = None, ignore_index: int = 255, ignore_color=None
) -> np.ndarray:
    """A mask file → uint8 class ids (H, W), by the data half's one rule (:func:`.masks.decode_mask`)."""
    from .masks import VOC_IGNORE_COLOR, decode_mask

    return decode_mask(path, palette, ignore_index, ignore_color or VOC_IGNORE_COLOR)


def frame_geometry(h: int, w: int, size: int, mode: str) -> tuple[int, int, int, int]:
    """``(top, left, nh, nw)``: where an (h, w) image lands in the ``size`` square frame."""
    if mode == "stretch":
        return 0, 0, size, size
    if mode == "letterbox":
        scale = size / max(h, w)
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        return (size - nh) // 2, (size - nw) // 2, nh, nw
    raise ConfigError(
        f"data.resize {mode!r} is not available for segmentation (it would crop pixels the "
        "masks and stored maps must cover); use letterbox or stretch."
    )


def resize_mask(mask: np.ndarray, size: int, mode: str, ignore_index: int) -> np.ndarray:
    """Nearest-neighbour resize into the square frame; letterbox padding = ``ignore_index``."""
    import cv2

    top, left, nh, nw = frame_geometry(*mask.shape[:2], size, mode)
    small = cv2.resize(mask, (nw, nh), interpolation=cv2.INTER_NEAREST)
    out = np.full((size, size), ignore_index, np.uint8)
    out[top : top + nh, left : left + nw] = small
    return out


class SegmentSource:
    """Rows of a segmentation image table, resized to the model frame, with their masks.

    ``images``: sample_id, image_path (or path), mask_path (None for unlabelled
    test images), width, height. ``palette``: (K, 3) for RGB masks.
    """

    def __init__(
        self,
        images: pd.DataFrame,
        image_size: int,
        mode: str,
        cache_ram_mb: int,
        ignore_index: int = 255,
        palette: np.ndarray | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        from ...data.resize import resize_op

        frame_geometry(1, 1, image_size, mode)  # refuse center_crop before decoding anything
        col = "image_path" if "image_path" in images else "path"
        self.paths = images[col].astype(str).tolist()
        masks = images["mask_path"] if "mask_path" in images else [None] * len(images)
        self.mask_paths = [None if m is None or pd.isna(m) else str(m) for m in masks]
        self.sample_ids = images["sample_id"].astype(str).tolist()
        self.size, self.mode, self.ignore_index = int(image_size), mode, int(ignore_index)
        self.palette = palette
        self._resize = resize_op(mode, self.size)
        self.original: list[tuple[int, int] | None] = [None] * len(self.paths)
        if {"height", "width"} <= set(images.columns):
            for i, (h, w) in enumerate(zip(images["height"], images["width"])):
                if pd.notna(h) and pd.notna(w):
                    self.original[i] = (int(h), int(w))
        self.cache: tuple[np.ndarray, np.ndarray] | None = None
        need_mb = len(self.paths) * self.size * self.size * 4 / 2**20
        if cache_ram_mb > 0 and need_mb <= cache_ram_mb:
            imgs = np.empty((len(self.paths), self.size, self.size, 3), np.uint8)
            msks = np.empty((len(self.paths), self.size, self.size), np.uint8)

            def fill(start: int) -> int:
                stop = min(len(self.paths), start + 128)
                for i in range(start, stop):
                    imgs[i], msks[i] = self._decode(i)
                return stop - start

            with ThreadPoolExecutor(max_workers=2) as pool:
                for done in pool.map(fill, range(0, len(self.paths), 128)):
                    if progress:
                        progress(done)
            self.cache = (imgs, msks)

    def raw_image(self, index: int) -> np.ndarray:
        from ...data.imageio import load_image

        image = load_image(self.paths[index], 3)
        self.original[index] = image.shape[:2]
        return image

    def raw_mask(self, index: int) -> np.ndarray | None:
        """The mask at the image's own size (None for unlabelled images)."""
        path = self.mask_paths[index]
        return None if path is None else read_mask(path, self.palette, self.ignore_index)

    def _decode(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        try:
            image = self.raw_image(index)
        except Exception:  # the scan excluded unreadable files; one broken since is blank
            image = np.zeros((self.size, self.size, 3), np.uint8)
            self.original[index] = image.shape[:2]
        mask = self.raw_mask(index)
        if mask is None:
            mask = np.full(image.shape[:2], self.ignore_index, np.uint8)
        if mask.shape != image.shape[:2]:
            raise DataError(
                f"{self.mask_paths[index]}: mask is {mask.shape[1]}x{mask.shape[0]} but its image "
                f"{self.paths[index]} is {image.shape[1]}x{image.shape[0]}."
            )
        return self._resize(image), resize_mask(mask, self.size, self.mode, self.ignore_index)

    def __len__(self) -> int:
        return len(self.paths)

    def item(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(image (S, S, 3) uint8, mask (S, S) uint8) in the model frame."""
        if self.cache is not None:
            return self.cache[0][index], self.cache[1][index]
        return self._decode(index)

    def original_size(self, index: int) -> tuple[int, int]:
        if self.original[index] is None:
            self.raw_image(index)
        return self.original[index]

    def content_box(self, index: int) -> tuple[int, int, int, int]:
        """``(top, left, nh, nw)`` of the original image inside the model frame."""
        return frame_geometry(*self.original_size(index), self.size, self.mode)


class SegmentDataset(Dataset):
    """Items ``(uint8 image (3, S, S), int64 mask (S, S), row)``; seeded ``(position, seed)`` items."""

    def __init__(self, source: SegmentSource, rows: np.ndarray, transform=None) -> None:
        self.source, self.rows, self.transform = source, np.asarray(rows), transform

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, item):
        pos, seed = item if isinstance(item, tuple) else (item, None)
        row = int(self.rows[pos])
        image, mask = self.source.item(row)
        if self.transform is not None:
            image, mask = self.transform(image, mask, seed=seed)
        image = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
        return image, torch.from_numpy(np.ascontiguousarray(mask).astype(np.int64)), row


__all__ = [
    "SegmentDataset",
    "SegmentSource",
    "frame_geometry",
    "read_mask",
    "resize_mask",
]
