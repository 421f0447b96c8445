"""Image + mask augmentation: albumentations moves both, the mask by nearest neighbour.

``augment.preset`` for segmentation: ``none``, ``light`` (horizontal flip) and
``reference`` — torchvision's segmentation reference recipe: random scale
0.5–2.0, pad to the crop with the image's 0 and the mask's ``ignore_index``,
random crop back to ``data.image_size``, horizontal flip. ``augment.ops``
take the classification op dicts (flips, rotate, shift_scale_rotate, colour,
blur, noise, ...); geometric ops fill new mask pixels with ``ignore_index``.
Ops that move pixels without telling the mask (the torchvision policies,
the reflect-padded crop) are refused. Seeding is per item, as everywhere.
"""

from __future__ import annotations

import os
import random

import numpy as np

from ...config import AugmentConfig
from ...errors import ConfigError

#: Ops that change geometry but cannot move a mask (image-only wrappers).
NOT_MASK_AWARE = ("autoaugment", "randaugment", "trivialaugment", "random_crop_reflect")
SEGMENT_PRESETS = ("none", "light", "reference")


class MaskTransform:
    """``(image uint8 HWC, mask uint8 HW, seed) -> (image, mask)``, augmented jointly."""

    def __init__(self, ops: list, ignore_index: int) -> None:
        import albumentations as A

        self.ops = A.Compose(list(ops)) if ops else None
        self.ignore_index = ignore_index
        self._pid = os.getpid()

    def _reseed(self, seed: int | None) -> None:
        if seed is not None:
            seed = int(seed) % 2**64
            self.ops.set_random_state(np.random.default_rng(seed), random.Random(seed))
        elif self._pid != os.getpid():
            self.ops.set_random_state(np.random.default_rng(), random.Random())
            self._pid = os.getpid()

    def __call__(self, image: np.ndarray, mask: np.ndarray, seed=None):
        if self.ops is None:
            return image, mask
        self._reseed(seed)
        out = self.ops(image=image, mask=mask)
        return out["image"], out["mask"]


def reference_ops(size: int, ignore_index: int) -> list:
    """torchvision's reference: RandomResize(0.5-2.0 x), RandomHorizontalFlip, RandomCrop (pad 255)."""
    import albumentations as A
    import cv2

    return [
        A.RandomScale(
            scale_limit=(-0.5, 1.0),
            interpolation=cv2.INTER_LINEAR,
            mask_interpolation=cv2.INTER_NEAREST,
            p=1.0,
        ),
        A.PadIfNeeded(size, size, border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=ignore_index),
        A.RandomCrop(size, size),
        A.HorizontalFlip(p=0.5),
    ]


def _set_fill(op, ignore_index: int) -> None:
    """New mask pixels of geometric ops (rotate, shift, perspective) are void, not background."""
    import cv2

    if hasattr(op, "fill_mask"):
        op.fill_mask = ignore_index
    if hasattr(op, "mask_interpolation"):
        op.mask_interpolation = cv2.INTER_NEAREST


def build_mask_transform(
    augment: AugmentConfig, image_size: int, ignore_index: int
) -> MaskTransform:
    """The training transform for images with masks; refuses ops that cannot move masks."""
    import albumentations as A

    from ...augment import build_op

    if augment.cutmix.p > 0 or augment.mixup.p > 0:
        raise ConfigError(
            "augment.cutmix / augment.mixup mix whole-image labels and do not apply to "
            "segmentation; set their p to 0 (task: segment)."
        )
    if augment.ops is None:
        if augment.preset not in SEGMENT_PRESETS:
            raise ConfigError(
                f"augment.preset {augment.preset!r} is not a segmentation preset; choose one of "
                f"{', '.join(SEGMENT_PRESETS)}, or list augment.ops."
            )
        if augment.preset == "none":
            return MaskTransform([], ignore_index)
        if augment.preset == "light":
            return MaskTransform([A.HorizontalFlip(p=0.5)], ignore_index)
        return MaskTransform(reference_ops(image_size, ignore_index), ignore_index)
    ops = []
    for i, spec in enumerate(augment.ops):
        if isinstance(spec, dict) and spec.get("name") in NOT_MASK_AWARE:
            raise ConfigError(
                f"augment.ops[{i}]: op {spec['name']!r} moves pixels without moving the mask, so "
                "it cannot be used with task: segment. Mask-aware alternatives: hflip, vflip, "
                "rotate, shift_scale_rotate, perspective, random_resized_crop, or preset reference."
            )
        try:
            op = build_op(spec, image_size)
        except ConfigError as exc:
            raise ConfigError(f"augment.ops[{i}]: {exc}") from None
        _set_fill(op, ignore_index)
        ops.append(op)
    return MaskTransform(ops, ignore_index)


__all__ = ["MaskTransform", "SEGMENT_PRESETS", "build_mask_transform", "reference_ops"]
