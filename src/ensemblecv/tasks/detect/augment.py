"""Box-aware augmentation: the classification op registry, driven with albumentations' bbox support.

The same op dicts as ``augment.ops`` / ``augment.preset`` (flips, rotate,
shear, perspective, scale/crop, colour, blur, noise, dropout); albumentations
moves the boxes with the pixels, clips them to the image and drops those
left with less than ``detect.min_visibility`` of their area or narrower than
``detect.min_box_size`` px. Ops that move pixels without telling the boxes
(the torchvision policies, the reflect-padded crop) are refused. Seeding is
the classification pipeline's: one generator shared by all ops, reseeded per
item, so a resumed run sees the same augmentations.
"""

from __future__ import annotations

import os
import random

import numpy as np

from ...config import AugmentConfig, DetectConfig
from ...errors import ConfigError

#: Ops that change geometry but cannot move boxes (image-only wrappers).
NOT_BOX_AWARE = ("autoaugment", "randaugment", "trivialaugment", "random_crop_reflect")


class BoxTransform:
    """``(image uint8 HWC, boxes (n, 4) xyxy px, labels (n,), seed) -> same, augmented``."""

    def __init__(self, ops: list, min_visibility: float, min_size: float) -> None:
        import albumentations as A

        params = A.BboxParams(
            format="pascal_voc",
            label_fields=["labels"],
            min_visibility=min_visibility,
            min_width=min_size,
            min_height=min_size,
            clip=True,
        )
        self.ops = A.Compose(list(ops), bbox_params=params) if ops else None
        self._pid = os.getpid()

    def _reseed(self, seed: int | None) -> None:
        if seed is not None:
            seed = int(seed) % 2**64
            self.ops.set_random_state(np.random.default_rng(seed), random.Random(seed))
        elif self._pid != os.getpid():
            self.ops.set_random_state(np.random.default_rng(), random.Random())
            self._pid = os.getpid()

    def __call__(self, image: np.ndarray, boxes: np.ndarray, labels: np.ndarray, seed=None):
        if self.ops is None:
            return image, boxes, labels
        self._reseed(seed)
        h, w = image.shape[:2]
        # Boxes touching the border by rounding must not fail albumentations' range check.
        boxes = np.clip(np.asarray(boxes, np.float32).reshape(-1, 4), 0, [w, h, w, h])
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        out = self.ops(image=image, bboxes=boxes[keep], labels=np.asarray(labels)[keep])
        new_boxes = np.asarray(out["bboxes"], np.float32).reshape(-1, 4)
        return out["image"], new_boxes, np.asarray(out["labels"], np.int64).reshape(-1)


def build_box_transform(
    augment: AugmentConfig, detect: DetectConfig, image_size: int
) -> BoxTransform:
    """The training transform of ``augment`` for boxes; refuses ops that cannot move boxes."""
    from ...augment import augment_specs, build_op

    if augment.cutmix.p > 0 or augment.mixup.p > 0:
        raise ConfigError(
            "augment.cutmix / augment.mixup mix labels of whole images and do not apply to "
            "detection; set their p to 0 (task: detect)."
        )
    ops = []
    for i, spec in enumerate(augment_specs(augment)):
        where = (
            f"augment.ops[{i}]" if augment.ops is not None else f"augment.preset {augment.preset!r}"
        )
        if isinstance(spec, dict) and spec.get("name") in NOT_BOX_AWARE:
            raise ConfigError(
                f"{where}: op {spec['name']!r} moves pixels without moving boxes, so it cannot "
                f"be used with task: detect. Box-aware alternatives: hflip, vflip, rotate, shear, "
                "shift_scale_rotate, perspective, random_resized_crop (try augment.preset: detect)."
            )
        try:
            ops.append(build_op(spec, image_size))
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    return BoxTransform(ops, detect.min_visibility, detect.min_box_size)
