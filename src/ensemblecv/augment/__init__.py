"""Image augmentation: named ops and presets, the resize/normalise pipeline, CutMix/MixUp.

Configs name ops (``augment.ops``) or a preset (``augment.preset``);
:func:`build_transforms` turns them into per-image callables and
:func:`build_batch_mix` into the batch-level mixer. ``list_ops()`` and
``list_presets()`` say what exists.
"""

from __future__ import annotations

import os

# albumentations 2.x asks PyPI for a newer version on every import (a 2 s
# timeout offline, and a network call nobody asked for); it must be off before
# the first import of albumentations, which happens in .ops.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from .batch import BatchAugment, build_batch_augment  # noqa: E402
from .ops import build_op, get_op, list_ops, op_params, register_op  # noqa: E402
from .pipeline import (  # noqa: E402
    IMAGENET_MEAN,
    IMAGENET_STD,
    RESIZE_MODES,
    BatchMix,
    ImageTransform,
    augment_specs,
    build_batch_mix,
    build_resize,
    build_transforms,
    resize_op,
    resolve_normalization,
)
from .presets import list_presets, preset_ops, register_preset  # noqa: E402
from .preview import preview_grid  # noqa: E402

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "RESIZE_MODES",
    "BatchAugment",
    "BatchMix",
    "ImageTransform",
    "augment_specs",
    "build_batch_augment",
    "build_batch_mix",
    "build_op",
    "build_resize",
    "build_transforms",
    "get_op",
    "list_ops",
    "list_presets",
    "op_params",
    "preset_ops",
    "preview_grid",
    "register_op",
    "register_preset",
    "resize_op",
    "resolve_normalization",
]
