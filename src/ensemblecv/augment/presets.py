"""Named augmentation presets, written as the same op lists a config accepts.

A preset is only a starting point: ``preset_ops(name)`` returns its list so a
user can paste it under ``augment.ops`` and edit it. Geometric ops come first,
then policies and colour, then blur/noise, and dropout last so the holes are
not blurred or rotated.
"""

from __future__ import annotations

import copy
from typing import Any

from .._registry import Registry
from ..errors import ConfigError, EnsembleCVError

OpSpec = dict[str, Any]

_PRESETS: Registry[tuple[OpSpec, ...]] = Registry("augmentation preset")


def register_preset(name: str, ops: list[OpSpec]) -> None:
    _PRESETS.register(name)(tuple(ops))


def list_presets() -> list[str]:
    return _PRESETS.names()


def preset_ops(name: str) -> list[OpSpec]:
    """A fresh copy of preset ``name``'s op list (safe to edit)."""
    try:
        return copy.deepcopy(list(_PRESETS.get(name)))
    except EnsembleCVError as exc:
        raise ConfigError(str(exc)) from None


register_preset("none", [])

# Mild and safe for almost any dataset (natural images, digits, products).
register_preset(
    "light",
    [
        {"name": "hflip", "p": 0.5},
        {"name": "shift_scale_rotate", "shift": 0.05, "scale": 0.05, "rotate": 10, "p": 0.5},
    ],
)

# Black-on-white drawings: pose and stroke-width variation, partial strokes.
# No colour ops (there is no colour), dropout fills white (erases strokes).
register_preset(
    "sketch",
    [
        {"name": "hflip", "p": 0.5},
        {"name": "shift_scale_rotate", "shift": 0.05, "scale": 0.1, "rotate": 10, "p": 0.7},
        {"name": "random_crop_reflect", "padding": 0.1, "p": 0.5},
        {"name": "erode", "kernel": [2, 3], "p": 0.2},
        {"name": "dilate", "kernel": [2, 3], "p": 0.2},
        {
            "name": "coarse_dropout",
            "holes": [1, 3],
            "hole_size": [0.05, 0.15],
            "fill": 255,
            "p": 0.3,
        },
    ],
)

# Heavy regularisation for long schedules on natural images.
register_preset(
    "strong",
    [
        {"name": "random_resized_crop", "scale": [0.35, 1.0], "p": 1.0},
        {"name": "hflip", "p": 0.5},
        {"name": "rotate", "limit": 15, "p": 0.3},
        {"name": "trivialaugment", "p": 0.5},
        {
            "name": "color_jitter",
            "brightness": 0.3,
            "contrast": 0.3,
            "saturation": 0.3,
            "hue": 0.05,
            "p": 0.5,
        },
        {"name": "gaussian_blur", "sigma": [0.3, 1.2], "p": 0.15},
        {"name": "motion_blur", "blur": [3, 5], "p": 0.1},
        {"name": "gauss_noise", "std": [0.02, 0.08], "p": 0.2},
        {"name": "coarse_dropout", "holes": [1, 4], "hole_size": [0.05, 0.2], "p": 0.5},
    ],
)

# Detection (task: detect): box-aware ops only — boxes move, clip and drop with the pixels.
register_preset(
    "detect",
    [
        {"name": "hflip", "p": 0.5},
        {"name": "shift_scale_rotate", "shift": 0.1, "scale": 0.2, "rotate": 5, "p": 0.5},
        {"name": "color_jitter", "brightness": 0.2, "contrast": 0.2, "saturation": 0.2, "p": 0.5},
        {"name": "gaussian_blur", "sigma": [0.3, 1.0], "p": 0.1},
        {"name": "gauss_noise", "std": [0.02, 0.05], "p": 0.1},
    ],
)
