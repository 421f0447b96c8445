"""Augmentation of whole batches as tensors: random crop with padding, flip, random erasing.

Per-image augmentation runs Python (albumentations) once per image in the
DataLoader; for 28-64 px images that costs as much as the model's step on a
CPU and idles a GPU. Here one batch (uint8 or float, ``(B, C, H, W)``, on any
device) is augmented with a handful of vectorised tensor operations.

Why not ``torchvision.transforms.v2`` on the batch: v2 treats leading
dimensions as one image, so a whole batch would share one crop offset, one
flip and one erasing box. Each sample here draws its own.

Every random number comes from the ``generator`` passed in (a CPU generator;
the training module seeds it from (seed, epoch, batch index)), and the same
numbers are drawn whatever the probabilities, so the result is a pure function
of (batch, seed): reproducible, and identical after a resume.
"""

from __future__ import annotations

import torch

from ..config import BatchAugmentConfig


class BatchAugment:
    """``(x (B, C, H, W), generator) -> x'`` of the same dtype and device; ``x`` is not modified.

    Erased boxes are filled with 0: on uint8 input that is black, the same value
    the padding of the crop uses (Fashion-MNIST's background).
    """

    def __init__(self, cfg: BatchAugmentConfig) -> None:
        self.cfg = cfg

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        b, _, h, w = x.shape
        g = generator
        pad = self.cfg.crop_padding
        # All draws happen every time, in a fixed order (see the module docstring).
        offsets = torch.randint(0, 2 * pad + 1, (2, b), generator=g)
        flip = torch.rand(b, generator=g) < self.cfg.hflip
        erase = torch.rand(b, generator=g) < self.cfg.erasing
        lo, hi = self.cfg.erasing_area
        area = lo + (hi - lo) * torch.rand(b, generator=g)
        log_ratio = torch.empty(b).uniform_(-1.2, 1.2, generator=g)  # aspect 0.3 .. 3.3
        centre = torch.rand(2, b, generator=g)
        dev = x.device
        if pad:
            x = _crop(x, pad, offsets.to(dev))
        if self.cfg.hflip > 0:
            x = torch.where(flip.to(dev).view(b, 1, 1, 1), x.flip(3), x)
        if self.cfg.erasing > 0:
            ratio = log_ratio.exp()
            eh = (area * h * w * ratio).sqrt().clamp(1, h)
            ew = (area * h * w / ratio).sqrt().clamp(1, w)
            y0 = (centre[0] * (h - eh)).floor()
            x0 = (centre[1] * (w - ew)).floor()
            ys = torch.arange(h).view(1, h, 1)
            xs = torch.arange(w).view(1, 1, w)
            box = (
                (ys >= y0.view(b, 1, 1))
                & (ys < (y0 + eh).view(b, 1, 1))
                & (xs >= x0.view(b, 1, 1))
                & (xs < (x0 + ew).view(b, 1, 1))
                & erase.view(b, 1, 1)
            )
            x = x.masked_fill(box.to(dev).unsqueeze(1), 0)
        return x

    def __repr__(self) -> str:
        c = self.cfg
        return f"BatchAugment(crop_padding={c.crop_padding}, hflip={c.hflip}, erasing={c.erasing})"


def _crop(x: torch.Tensor, pad: int, offsets: torch.Tensor) -> torch.Tensor:
    """Each sample's (H, W) window at its own offset (0..2·pad) of the zero-padded batch."""
    b, c, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    rows = (offsets[0].view(b, 1) + torch.arange(h, device=x.device)).view(b, 1, h, 1)
    cols = (offsets[1].view(b, 1) + torch.arange(w, device=x.device)).view(b, 1, 1, w)
    batch = torch.arange(b, device=x.device).view(b, 1, 1, 1)
    chans = torch.arange(c, device=x.device).view(1, c, 1, 1)
    return padded[batch, chans, rows, cols]


def build_batch_augment(cfg: BatchAugmentConfig | None) -> BatchAugment | None:
    """The batch augmenter, or None when nothing in ``cfg`` can change an image."""
    if cfg is None or (cfg.crop_padding == 0 and cfg.hflip == 0 and cfg.erasing == 0):
        return None
    return BatchAugment(cfg)
