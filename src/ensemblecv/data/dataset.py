"""The torch ``Dataset`` over a sample table, which a bad file cannot crash.

Files are checked by the scan before training, but a file can still vanish or
be rewritten while a run is going (a sync client, a user cleaning up). Then the
item comes back as a blank image with ``ok == False`` and a warning naming the
file, instead of an exception that kills the DataLoader worker and, with it,
hours of training.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import ImageLoadError
from .imageio import load_image
from .samples import SampleTable


class ImageDataset(Dataset):
    """Items are dicts: ``image`` (transformed), ``target`` (int, -1 if unlabelled),
    ``index`` (row in the table) and ``ok`` (False if the file failed to load).

    ``transform`` receives a (H, W, C) uint8 array and returns the model input;
    without one, the image is returned as a (C, H, W) float tensor in [0, 1].
    ``fallback_size`` is the (H, W) of the blank image used for a failed file.
    """

    def __init__(
        self,
        table: SampleTable,
        channels: int = 3,
        transform: Callable[[np.ndarray], object] | None = None,
        fallback_size: tuple[int, int] = (32, 32),
    ) -> None:
        self.paths = table.frame["path"].tolist()
        self.targets = table.frame["label"].to_numpy(dtype=np.int64)
        self.channels = channels
        self.transform = transform
        self.fallback_size = fallback_size

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, index: int) -> tuple[np.ndarray, bool]:
        try:
            return load_image(self.paths[index], self.channels), True
        except ImageLoadError as exc:
            warnings.warn(
                f"Skipping unreadable image during loading: {exc}", RuntimeWarning, stacklevel=2
            )
            h, w = self.fallback_size
            return np.full((h, w, self.channels), 255, dtype=np.uint8), False

    def __getitem__(self, index: int) -> dict:
        image, ok = self.load(index)
        if self.transform is not None:
            image = self.transform(image)
        else:
            image = torch.from_numpy(image).permute(2, 0, 1).float().div_(255.0)
        return {"image": image, "target": int(self.targets[index]), "index": index, "ok": ok}
