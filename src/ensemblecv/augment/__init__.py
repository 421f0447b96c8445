"""Image augmentation: named ops and presets, the resize/normalise pipeline, CutMix/MixUp.

Configs name ops (``augment.ops``) or a preset (``augment.preset``);
:func:`build_transforms` turns them into per-image callables and
:func:`build_batch_mix` into the batch-level mixer. ``list_ops()`` and
``list_presets()`` say what exists.
"""

from __future__ import annotations

from .ops import build_op, get_op, list_ops, op_params, register_op
from .pipeline import (
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
from .presets import list_presets, preset_ops, register_preset
from .preview import preview_grid

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "RESIZE_MODES",
    "BatchMix",
    "ImageTransform",
    "augment_specs",
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
