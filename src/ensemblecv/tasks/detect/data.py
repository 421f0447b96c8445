"""Feeding a detector: decoded, resized images with their boxes, seeded augmentation, collate.

Images are decoded once, resized to ``data.image_size`` (``letterbox`` keeps
the aspect ratio and pads, ``stretch`` does not) and held in RAM when they fit
``data.cache_ram_mb``; boxes are mapped into the resized frame with the same
geometry, which :meth:`DetectSource.to_original` inverts for the stored
detections. ``center_crop`` would cut boxes away and is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from ...errors import ConfigError

#: (scale_x, scale_y, offset_x, offset_y): resized = original * scale + offset.
Geometry = tuple[float, float, float, float]


def _geometry(h: int, w: int, size: int, mode: str) -> tuple[Geometry, tuple[int, int]]:
    if mode == "stretch":
        return (size / w, size / h, 0.0, 0.0), (size, size)
    if mode == "letterbox":
        scale = size / max(h, w)
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        top, left = (size - nh) // 2, (size - nw) // 2
        return (nw / w, nh / h, float(left), float(top)), (nh, nw)
    raise ConfigError(
        f"data.resize {mode!r} is not available for detection (it would crop boxes away); "
        "use letterbox or stretch."
    )


class DetectSource:
    """Rows of an image table, resized, with their (non-crowd) boxes in the resized frame.

    ``boxes`` is the box table (sample_id, label, x1..y2 in original pixels,
    iscrowd); crowd boxes are not trained on (they only mark regions the
    metric ignores).
    """

    def __init__(
        self,
        images: pd.DataFrame,
        boxes: pd.DataFrame | None,
        image_size: int,
        mode: str,
        cache_ram_mb: int,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        from ...data.resize import resize_op

        _geometry(1, 1, image_size, mode)  # refuse center_crop before any decoding
        self.paths = images["path"].astype(str).tolist()
        self.sample_ids = images["sample_id"].astype(str).tolist()
        self.size, self.mode = int(image_size), mode
        self._resize = resize_op(mode, int(image_size))  # the same letterbox/stretch as classify
        self.geometry: list[Geometry | None] = [None] * len(self.paths)
        self.original: list[tuple[int, int] | None] = [None] * len(self.paths)
        self._boxes, self._labels = self._group_boxes(boxes)
        self.cache: np.ndarray | None = None
        need_mb = len(self.paths) * image_size * image_size * 3 / 2**20
        if cache_ram_mb > 0 and need_mb <= cache_ram_mb:
            self.cache = np.empty((len(self.paths), image_size, image_size, 3), np.uint8)

            def fill(start: int) -> int:
                stop = min(len(self.paths), start + 256)
                for i in range(start, stop):
                    self.cache[i] = self._decode(i)
                return stop - start

            with ThreadPoolExecutor(max_workers=2) as pool:
                for done in pool.map(fill, range(0, len(self.paths), 256)):
                    if progress:
                        progress(done)

    def _group_boxes(self, boxes: pd.DataFrame | None):
        empty_b, empty_l = np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
        out_b = [empty_b] * len(self.paths)
        out_l = [empty_l] * len(self.paths)
        if boxes is None or not len(boxes):
            return out_b, out_l
        crowd = boxes["iscrowd"].astype(bool) if "iscrowd" in boxes else False
        train = boxes[~crowd]
        where = {sid: i for i, sid in enumerate(self.sample_ids)}
        for sid, part in train.groupby("sample_id", sort=False):
            i = where.get(str(sid))
            if i is not None:
                out_b[i] = part[["x1", "y1", "x2", "y2"]].to_numpy(np.float32)
                out_l[i] = part["label"].to_numpy(np.int64)
        return out_b, out_l

    def _decode(self, index: int) -> np.ndarray:
        from ...data.imageio import load_image

        try:
            image = load_image(self.paths[index], 3)
        except Exception:  # the scan excluded unreadable files; a file broken since is blank
            image = np.zeros((self.size, self.size, 3), np.uint8)
        h, w = image.shape[:2]
        self.original[index] = (h, w)
        self.geometry[index] = _geometry(h, w, self.size, self.mode)[0]
        return self._resize(image)

    def __len__(self) -> int:
        return len(self.paths)

    def image(self, index: int) -> np.ndarray:
        return self.cache[index] if self.cache is not None else self._decode(index)

    def targets(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Boxes (in the resized frame) and labels of row ``index``."""
        if self.geometry[index] is None:
            self._decode(index)
        sx, sy, ox, oy = self.geometry[index]
        b = self._boxes[index] * np.array([sx, sy, sx, sy], np.float32)
        return b + np.array([ox, oy, ox, oy], np.float32), self._labels[index]

    def to_original(self, index: int, boxes: np.ndarray) -> np.ndarray:
        """Boxes predicted in the resized frame → pixels of the original image (clipped)."""
        if self.geometry[index] is None:
            self._decode(index)
        sx, sy, ox, oy = self.geometry[index]
        h, w = self.original[index]
        out = (np.asarray(boxes, np.float64) - [ox, oy, ox, oy]) / [sx, sy, sx, sy]
        return np.clip(out, 0, [w, h, w, h])


class DetectDataset(Dataset):
    """Items ``(uint8 image (3, S, S), {boxes, labels}, row)``; labels are class + 1 (0 = background).

    Accepts ``(position, seed)`` items from the seeded sampler, so augmentation
    is a pure function of (seed, epoch, item), as for classification.
    """

    def __init__(self, source: DetectSource, rows: np.ndarray, transform=None) -> None:
        self.source, self.rows, self.transform = source, np.asarray(rows), transform

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, item):
        pos, seed = item if isinstance(item, tuple) else (item, None)
        row = int(self.rows[pos])
        image = self.source.image(row)
        boxes, labels = self.source.targets(row)
        if self.transform is not None:
            image, boxes, labels = self.transform(image, boxes, labels, seed=seed)
        target = {
            "boxes": torch.as_tensor(np.asarray(boxes, np.float32).reshape(-1, 4)),
            "labels": torch.as_tensor(np.asarray(labels, np.int64).reshape(-1) + 1),
        }
        image = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
        return image, target, row


def collate_detections(items: list) -> tuple[torch.Tensor, list[dict], torch.Tensor]:
    """Images stacked (all are ``image_size`` square), targets kept as a list of dicts."""
    images = torch.stack([it[0] for it in items])
    return images, [it[1] for it in items], torch.tensor([it[2] for it in items])
