"""From a config to callables: resize → augment (train only) → tensor → normalise.

``build_transforms`` returns two :class:`ImageTransform` callables,
``(image uint8 HWC, seed=None) -> FloatTensor (C, H, W)``. Resize comes first
and is separable (``build_resize`` / ``include_resize=False``) so a RAM cache
of resized images can skip it. With a ``seed`` the augmentation is a pure
function of (image, seed): the training loop passes e.g. a hash of (run seed,
epoch, sample index), so a resumed run sees exactly the augmentations of an
uninterrupted one, whatever the DataLoader worker layout.

``build_batch_mix`` returns the batch-level CutMix/MixUp step, which turns
labels into soft targets (rows summing to 1) for a loss that accepts them.
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping, Sequence
from typing import Any

import albumentations as A
import numpy as np
import torch
import torch.nn.functional as F

from ..config import AugmentConfig, DataConfig, MixConfig, NormalizeValues
from ..data.resize import _UNRESOLVED, RESIZE_MODES, Resize, resize_op  # noqa: F401  (re-exported)
from ..errors import ConfigError, unknown_name_message
from .ops import build_op
from .presets import preset_ops

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# ---------------------------------------------------------------- resize


def build_resize(data_cfg: DataConfig) -> Resize:
    return resize_op(
        data_cfg.resize, data_cfg.image_size, data_cfg.interpolation, data_cfg.crop_pct
    )


# ---------------------------------------------------------------- normalisation


def _dataset_stats(stats: Mapping[str, Any] | None, channels: int) -> tuple[list, list]:
    key = "gray" if channels == 1 else "rgb"
    if stats is not None and "normalization" in stats:  # a whole audit.json
        stats = stats["normalization"]
    entry = (stats or {}).get(key)
    if not entry or "mean" not in entry or "std" not in entry:
        raise ConfigError(
            f"data.normalize is 'dataset' but no {key!r} mean/std was given (they come from the "
            "workspace's stats.json or the audit's 'normalization'). Run `ensemblecv split DATA "
            "--workspace DIR` first, or set data.normalize to imagenet, none or "
            "{mean: [...], std: [...]}."
        )
    return list(entry["mean"]), list(entry["std"])


def resolve_normalization(
    normalize: str | NormalizeValues | Mapping[str, Sequence[float]],
    channels: int,
    audit_stats: Mapping[str, Any] | None = None,
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) on the 0..1 scale, one value per channel.

    ``imagenet`` on 1 channel averages the three ImageNet values; ``dataset``
    reads ``audit_stats`` (``{'gray': {'mean', 'std'}, 'rgb': {...}}``, or an
    audit dict holding that under ``normalization``); ``none`` is 0/1; explicit
    values must have ``channels`` entries or one (broadcast).
    """
    if channels not in (1, 3):
        raise ConfigError(f"channels must be 1 or 3, got {channels}.")
    if isinstance(normalize, str):
        if normalize == "imagenet":
            mean, std = list(IMAGENET_MEAN), list(IMAGENET_STD)
            if channels == 1:
                mean, std = [float(np.mean(mean))], [float(np.mean(std))]
        elif normalize == "none":
            mean, std = [0.0] * channels, [1.0] * channels
        elif normalize == "dataset":
            mean, std = _dataset_stats(audit_stats, channels)
        else:
            raise ConfigError(
                unknown_name_message("normalization", normalize, ["imagenet", "dataset", "none"])
            )
    else:
        values = (
            normalize
            if isinstance(normalize, NormalizeValues)
            else NormalizeValues.model_validate(normalize)
        )
        mean, std = list(values.mean), list(values.std)
    if len(mean) == 1 and len(std) == 1:
        mean, std = mean * channels, std * channels
    if len(mean) != channels or len(std) != channels:
        raise ConfigError(
            f"Normalisation needs {channels} mean/std value(s) (or 1), got mean={mean}, std={std}."
        )
    if not all(np.isfinite(mean)) or not all(np.isfinite(std)) or min(std) <= 0:
        raise ConfigError(
            f"Normalisation values must be finite with std > 0, got mean={mean}, std={std}."
        )
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


# ---------------------------------------------------------------- per-image transforms


class ImageTransform:
    """``(image uint8 (H, W, C), seed=None) -> FloatTensor (C, H, W)``, normalised.

    ``augment`` gives the uint8 image before the tensor conversion (previews,
    offline augmentation). A ``seed`` makes the result a pure function of
    (image, seed). One generator is shared by all ops: albumentations'
    ``set_random_seed`` would give every op the *same* stream (two p=0.5 flips
    would always fire together).
    """

    def __init__(
        self,
        resize: Resize | None,
        ops: Sequence[A.BasicTransform],
        mean: Sequence[float],
        std: Sequence[float],
        channels: int,
    ) -> None:
        self.resize = resize
        self.ops = A.Compose(list(ops)) if ops else None
        self.channels = channels
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
        self._pid = os.getpid()

    def _reseed(self, seed: int | None) -> None:
        if seed is not None:
            seed = int(seed) % 2**64  # numpy refuses negative seeds (e.g. from hash())
            self.ops.set_random_state(np.random.default_rng(seed), random.Random(seed))
        elif self._pid != os.getpid():
            # A forked DataLoader worker inherits copies of the parent's generators;
            # without fresh entropy every worker would repeat the same augmentations.
            self.ops.set_random_state(np.random.default_rng(), random.Random())
            self._pid = os.getpid()

    def augment(self, image: np.ndarray, seed: int | None = None) -> np.ndarray:
        if image.ndim == 2:
            image = image[:, :, None]
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != self.channels:
            raise ValueError(
                f"expected a uint8 (H, W, {self.channels}) image, got {image.dtype} {image.shape}"
            )
        if self.resize is not None:
            image = self.resize(image)
        if self.ops is not None:
            self._reseed(seed)
            image = self.ops(image=image)["image"]
            if image.ndim != 3 or image.shape[2] != self.channels or image.dtype != np.uint8:
                raise RuntimeError(f"an augmentation op returned {image.dtype} {image.shape}")
        return image

    def to_tensor(self, image: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).contiguous()
        return x.to(torch.float32).div_(255.0).sub_(self.mean).div_(self.std)

    def __call__(self, image: np.ndarray, seed: int | None = None) -> torch.Tensor:
        return self.to_tensor(self.augment(image, seed))

    def __repr__(self) -> str:
        ops = [type(t).__name__ for t in self.ops] if self.ops is not None else []
        return (
            f"ImageTransform(resize={self.resize is not None}, ops={ops}, channels={self.channels})"
        )


def augment_specs(augment_cfg: AugmentConfig | None) -> list[dict[str, Any]]:
    """The op list in effect: ``augment.ops`` when set (even empty), else the preset's."""
    if augment_cfg is None:
        return []
    return list(augment_cfg.ops) if augment_cfg.ops is not None else preset_ops(augment_cfg.preset)


def build_transforms(
    data_cfg: DataConfig,
    augment_cfg: AugmentConfig | None,
    mean: Sequence[float],
    std: Sequence[float],
    include_resize: bool = True,
) -> tuple[ImageTransform, ImageTransform]:
    """``(train_tf, eval_tf)``; eval only resizes and normalises."""
    channels = data_cfg.channels
    if data_cfg.image_size is None:
        raise ConfigError(_UNRESOLVED)
    if len(mean) != channels or len(std) != channels:
        raise ConfigError(
            f"mean/std need {channels} values for {channels}-channel images, got {mean}, {std}."
        )
    ops = []
    for i, spec in enumerate(augment_specs(augment_cfg)):
        try:
            ops.append(build_op(spec, data_cfg.image_size))
        except ConfigError as exc:
            where = (
                f"augment.ops[{i}]"
                if augment_cfg.ops is not None
                else f"augment.preset {augment_cfg.preset!r}"
            )
            raise ConfigError(f"{where}: {exc}") from None
    resize = build_resize(data_cfg) if include_resize else None
    return ImageTransform(resize, ops, mean, std, channels), ImageTransform(
        resize, [], mean, std, channels
    )


# ---------------------------------------------------------------- batch mixing


def _cutmix_box(rng: np.random.Generator, lam: float, h: int, w: int) -> tuple[int, int, int, int]:
    """A box of area ≈ (1 - lam) · h · w centred uniformly (clipped at the borders)."""
    ratio = np.sqrt(1.0 - lam)
    ch, cw = int(h * ratio), int(w * ratio)
    cy, cx = int(rng.integers(h)), int(rng.integers(w))
    y1, y2 = np.clip([cy - ch // 2, cy + ch // 2 + ch % 2], 0, h)
    x1, x2 = np.clip([cx - cw // 2, cx + cw // 2 + cw % 2], 0, w)
    return int(y1), int(y2), int(x1), int(x2)


class BatchMix:
    """CutMix with probability ``cutmix.p``, else MixUp with ``mixup.p``, else plain one-hot.

    ``(x FloatTensor[B, C, H, W], y LongTensor[B], generator=None) -> (x, y_soft[B, K])``.
    All randomness comes from one seed drawn from ``generator`` (torch's global
    RNG when None), and the same numbers are drawn whichever branch runs, so the
    stream stays aligned across resumed runs. The input is not modified.
    """

    def __init__(self, num_classes: int, cutmix: MixConfig, mixup: MixConfig) -> None:
        self.num_classes = num_classes
        self.cutmix = cutmix
        self.mixup = mixup

    def __call__(
        self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        seed = int(torch.randint(0, 2**62, (1,), generator=generator).item())
        rng = np.random.default_rng(seed)
        u_cut, u_mix = rng.random(2)
        perm_np = rng.permutation(x.shape[0])
        lam_cut = float(rng.beta(self.cutmix.alpha, self.cutmix.alpha))
        lam_mix = float(rng.beta(self.mixup.alpha, self.mixup.alpha))
        box = _cutmix_box(rng, lam_cut, x.shape[-2], x.shape[-1])
        target = F.one_hot(y.long(), self.num_classes).to(device=x.device, dtype=torch.float32)
        perm = torch.from_numpy(perm_np).to(x.device)
        if u_cut < self.cutmix.p:
            y1, y2, x1, x2 = box
            x = x.clone()
            x[:, :, y1:y2, x1:x2] = x[perm][:, :, y1:y2, x1:x2]
            lam = 1.0 - (y2 - y1) * (x2 - x1) / (x.shape[-2] * x.shape[-1])
        elif u_mix < self.mixup.p:
            lam = lam_mix
            x = x * lam + x[perm] * (1.0 - lam)
        else:
            return x, target
        return x, target * lam + target[perm] * (1.0 - lam)

    def __repr__(self) -> str:
        mix = f"cutmix={self.cutmix!r}, mixup={self.mixup!r}"
        return f"BatchMix(num_classes={self.num_classes}, {mix})"


def build_batch_mix(augment_cfg: AugmentConfig, num_classes: int) -> BatchMix | None:
    """The batch mixer, or None when neither CutMix nor MixUp can fire."""
    if augment_cfg.cutmix.p == 0 and augment_cfg.mixup.p == 0:
        return None
    if num_classes < 2:
        raise ConfigError(f"CutMix/MixUp need at least 2 classes, got {num_classes}.")
    return BatchMix(num_classes, augment_cfg.cutmix, augment_cfg.mixup)
