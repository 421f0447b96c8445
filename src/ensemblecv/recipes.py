"""Recipes: named, measured presets of config keys (``recipe: small-cpu`` in a config).

A recipe is a nested mapping of config keys applied as *defaults under* the
user's: every key the user writes (in the file or as ``key.sub=value``) wins,
key by key, and everything else comes from the recipe, then from the config's
own defaults. The resolved config a run saves holds the merged values and the
recipe's name, so a run folder says exactly what it trained with.

Each recipe states what it was measured to reach, on what data and hardware,
in how long (``ensemblecv recipes`` prints them); a recipe without a
measurement says so. Registering one is one call::

    register_recipe(Recipe("segment-small", "…", {"task": "segment", ...}, measured="…"))

A value may be a callable of no arguments, resolved when the recipe is applied:
how a recipe tunes itself to the machine (batch size, mixed precision on a
GPU). The resolved config records the value chosen.

Importing this module is cheap (no torch): config validation uses it.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ._registry import Registry
from .errors import ConfigError, EnsembleCVError


@dataclass(frozen=True)
class Recipe:
    """``config``: nested config keys, as in a YAML file (``{"train": {"epochs": 12}}``)."""

    name: str
    description: str
    config: dict[str, Any]
    #: What it was measured to reach, on what, in how long (one line; "not measured yet").
    measured: str = "not measured yet"
    #: Longer notes for ``ensemblecv recipes --verbose`` and docs/recipes.md.
    notes: list[str] = field(default_factory=list)

    def resolved(self) -> dict[str, Any]:
        """The config keys with machine-dependent values settled for this machine."""
        return _resolved(self.config)


_RECIPES: Registry[Recipe] = Registry("recipe")


def register_recipe(recipe: Recipe) -> Recipe:
    """Add ``recipe`` under its name (a second recipe of the same name is an error)."""
    return _RECIPES.register(recipe.name)(recipe)


def list_recipes() -> list[str]:
    return _RECIPES.names()


def get_recipe(name: str) -> Recipe:
    """The recipe ``name``; an unknown name fails listing the known ones (and close matches)."""
    try:
        return _RECIPES.get(name)
    except EnsembleCVError as exc:
        raise ConfigError(f"{exc}. See `ensemblecv recipes`.") from None


def has_cuda() -> bool:
    """Whether a CUDA GPU is usable, answered without importing torch when it is not loaded
    yet (config errors must answer fast): the NVIDIA driver's /proc entry on Linux."""
    if "torch" in sys.modules:
        return bool(sys.modules["torch"].cuda.is_available())
    from pathlib import Path

    return Path("/proc/driver/nvidia/version").is_file()


def on_machine(cpu: Any, cuda: Any) -> Callable[[], Any]:
    """A recipe value that is ``cuda`` where a GPU is usable, else ``cpu``."""
    return lambda: cuda if has_cuda() else cpu


def _resolved(value: Any) -> Any:
    if callable(value):
        return value()
    if isinstance(value, dict):
        return {k: _resolved(v) for k, v in value.items()}
    return value


def merge_under(defaults: dict, user: dict) -> dict:
    """``user`` with ``defaults`` filled in below it: sections merge key by key, the user's
    value wins wherever both have one (a non-mapping value replaces a whole section)."""
    out = copy.deepcopy(defaults)
    for key, value in user.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_under(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def apply_recipe(raw: dict) -> dict:
    """``raw`` (a config mapping) with its ``recipe``'s keys as defaults; unchanged without one."""
    name = raw.get("recipe")
    if name is None:
        return raw
    if not isinstance(name, str):
        raise ConfigError(f"recipe must be a recipe name, got {name!r}; see `ensemblecv recipes`.")
    return merge_under(get_recipe(name).resolved(), raw)


# ---------------------------------------------------------------- the built-in recipes

register_recipe(
    Recipe(
        name="small-cpu",
        description=(
            "small images (28-64 px, e.g. Fashion-MNIST) on a CPU budget: ResNet-9 sized for "
            "small inputs, SGD one-cycle, label smoothing, batch crop/flip/erasing, EMA "
            "weights, flip TTA, channels_last"
        ),
        config={
            # 3 folds and no refit: the 30 minutes go into epochs (3 x 7 on 40,000 images,
            # measured 8.8-11 min a fold on 2 idle cores) instead of 6 trainings of 4 epochs
            # (5 folds + refit, 39 min). Test and new images get the mean of the 3 fold models,
            # a bag CV does not score (docs/cv-protocol.md); measured, CV is 0.03 points off.
            "data": {"channels": 1, "normalize": "dataset", "folds": 3},
            "model": {"name": "resnet9_small"},
            "train": {
                "epochs": 7,
                "refit_full": False,
                "batch_size": on_machine(cpu=256, cuda=512),
                "optimizer": "sgd",
                "lr": 0.1,
                "momentum": 0.9,
                "nesterov": True,
                "weight_decay": 5e-4,
                "scheduler": "onecycle",
                "label_smoothing": 0.1,
                "ema": {"decay": 0.998},
                "tta": ["hflip"],
                "channels_last": True,
            },
            "augment": {
                "preset": "none",
                "batch": {"crop_padding": 2, "hflip": 0.5, "erasing": 0.5},
            },
            "trainer": {"precision": on_machine(cpu="32", cuda="16-mixed")},
        },
        measured=(
            "full Fashion-MNIST (60k/10k), 3 folds x 7 epochs, 2 idle CPU cores: test 0.9269 "
            "(3 fold models, flip TTA) at 28.9 min, best ensemble 0.9272 at 29.5 min; honest "
            "CV 0.9266 (ensemble 0.9276)"
        ),
        notes=[
            "Target: >= 0.950 test in <= 30 min on 2 idle cores; measure with "
            "`python benchmarks/time_to_accuracy.py` (docs/recipes.md).",
            "data.channels=3 for colour images.",
        ],
    )
)

register_recipe(
    Recipe(
        name="finetune-224",
        description=(
            "pretrained timm backbone fine-tuned at 224 px (the sketch report's setting): "
            "AdamW, cosine with warm-up, label smoothing, mixed precision"
        ),
        config={
            "data": {"image_size": 224, "channels": 3, "normalize": "imagenet"},
            "model": {"name": "resnet50", "pretrained": True},
            "train": {
                "epochs": 10,
                "batch_size": 32,
                "optimizer": "adamw",
                "lr": 3e-4,
                "weight_decay": 0.05,
                "scheduler": "cosine",
                "warmup_epochs": 1,
                "label_smoothing": 0.1,
                "tta": ["hflip"],
            },
            "augment": {"preset": "light"},
            "trainer": {"precision": on_machine(cpu="32", cuda="16-mixed")},
        },
        measured=(
            "not measured here (needs hub weights and a GPU); the sketch report's setting "
            "it packages reached its published figures on a GPU"
        ),
        notes=[
            "Mixed precision (16-mixed) where a GPU is usable, 32-bit on a CPU.",
            "Offline, point model.pretrained at a weights file instead of true.",
        ],
    )
)

register_recipe(
    Recipe(
        name="detect-small",
        description=(
            "object detection (task: detect): FCOS head on a small timm backbone, AdamW, "
            "cosine with warm-up, gradient clipping"
        ),
        config={
            "task": "detect",
            "data": {"image_size": 320, "channels": 3, "normalize": "imagenet"},
            "model": {"name": "fcos", "backbone": "resnet18"},
            "train": {
                "epochs": 12,
                "batch_size": 8,
                "optimizer": "adamw",
                "lr": 1e-3,
                "weight_decay": 1e-4,
                "scheduler": "cosine",
                "warmup_epochs": 1,
                "gradient_clip_val": 10.0,
            },
            "augment": {"preset": "light"},
        },
        measured="not measured yet (resolves and trains; no benchmark run)",
        notes=["Set model.backbone_pretrained to true (hub) or a weights file for real data."],
    )
)

register_recipe(
    Recipe(
        name="segment-voc",
        description=(
            "semantic segmentation (task: segment) the torchvision reference way: DeepLabV3 "
            "ResNet-50 with the auxiliary head at 480 px, SGD + poly LR per iteration, random "
            "scale 0.5-2.0 + flip + crop, CE (ignore 255) + aux loss 0.5, flip TTA"
        ),
        config={
            "task": "segment",
            "data": {
                "image_size": 480,
                "channels": 3,
                "normalize": "imagenet",
                "resize": "letterbox",
                "ignore_index": 255,
            },
            "model": {"name": "deeplabv3_resnet50", "backbone_pretrained": True},
            "train": {
                "epochs": 30,
                "batch_size": on_machine(cpu=4, cuda=16),
                "optimizer": "sgd",
                "lr": 0.02,
                "momentum": 0.9,
                "weight_decay": 1e-4,
                "scheduler": "poly",
                "poly_power": 0.9,
            },
            "augment": {"preset": "reference"},
            "segment": {"aux_weight": 0.5, "tta": ["hflip"]},
            "trainer": {"precision": on_machine(cpu="32", cuda="16-mixed")},
        },  # fmt: skip
        measured=(
            "not measured here (needs ImageNet weights and a GPU); torchvision's reference "
            "recipe it packages reaches 66.4 mIoU on COCO-VOC (DeepLabV3 R-50, 30 epochs)"
        ),
        notes=[
            "Offline, point model.backbone_pretrained at a weights file instead of true.",
            "The same keys as segment.recipe: torchvision, plus the model, size and TTA.",
        ],
    )
)

register_recipe(
    Recipe(
        name="segment-small",
        description=(
            "semantic segmentation (task: segment) from scratch on a CPU: smp FPN on timm's "
            "ResNet-10t at 64 px with slim decoders, AdamW + poly LR, CE + 0.5 Dice, flip TTA "
            "(the segmentation demo's setting)"
        ),
        config={
            "task": "segment",
            "data": {"image_size": 64, "folds": 3, "resize": "letterbox", "normalize": "dataset"},
            "model": {
                "name": "fpn",
                "backbone": "tu-resnet10t",
                "kwargs": {"decoder_pyramid_channels": 64, "decoder_segmentation_channels": 32},
            },
            "train": {
                "epochs": 20,
                "batch_size": 8,
                "optimizer": "adamw",
                "lr": 0.01,
                "weight_decay": 1e-4,
                "scheduler": "poly",
            },
            "augment": {"preset": "light"},
            "segment": {"loss": {"cross_entropy": 1.0, "dice": 0.5}, "tta": ["hflip"]},
        },  # fmt: skip
        measured="see `ensemblecv demo --task segment` (docs/segmentation.md)",
        notes=["For larger images raise data.image_size (and the decoder widths)."],
    )
)

__all__ = [
    "Recipe",
    "apply_recipe",
    "get_recipe",
    "list_recipes",
    "has_cuda",
    "merge_under",
    "on_machine",
    "register_recipe",
]
