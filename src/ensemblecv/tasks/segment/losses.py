"""Per-pixel losses with ``ignore_index``: cross-entropy, Dice, focal, Lovász, Jaccard, weighted sums.

Dice, focal, Lovász and Jaccard are segmentation-models-pytorch's (multiclass
mode; each takes ``ignore_index`` and leaves those pixels out of the loss and
its gradient, tested); cross-entropy is torch's. ``segment.loss`` is a name
or ``{name: weight, ...}`` (a weighted sum, e.g. ``{dice: 0.5, cross_entropy: 0.5}``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..._registry import Registry
from ...errors import ConfigError, EnsembleCVError

_LOSSES: Registry[Callable[[int], nn.Module]] = Registry("segmentation loss")


def list_seg_losses() -> list[str]:
    return _LOSSES.names()


@_LOSSES.register("cross_entropy")
def _ce(ignore_index: int) -> nn.Module:
    return nn.CrossEntropyLoss(ignore_index=ignore_index)


@_LOSSES.register("dice")
def _dice(ignore_index: int) -> nn.Module:
    from segmentation_models_pytorch.losses import DiceLoss

    return DiceLoss("multiclass", ignore_index=ignore_index)


@_LOSSES.register("jaccard")
def _jaccard(ignore_index: int) -> nn.Module:
    from segmentation_models_pytorch.losses import JaccardLoss

    return JaccardLoss("multiclass", ignore_index=ignore_index)


@_LOSSES.register("focal")
def _focal(ignore_index: int) -> nn.Module:
    from segmentation_models_pytorch.losses import FocalLoss

    return FocalLoss("multiclass", ignore_index=ignore_index)


@_LOSSES.register("lovasz")
def _lovasz(ignore_index: int) -> nn.Module:
    from segmentation_models_pytorch.losses import LovaszLoss

    return LovaszLoss("multiclass", ignore_index=ignore_index)


class WeightedLoss(nn.Module):
    """``sum(w * loss(logits, mask))`` over named parts."""

    def __init__(self, parts: dict[str, float], ignore_index: int) -> None:
        super().__init__()
        self.weights = [float(w) for w in parts.values()]
        self.parts = nn.ModuleList([_LOSSES.get(n)(ignore_index) for n in parts])

    def forward(self, logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return sum(w * loss(logits, mask) for w, loss in zip(self.weights, self.parts))


def build_seg_loss(spec: str | dict[str, float], ignore_index: int = 255) -> nn.Module:
    """The loss named by ``segment.loss``; unknown names fail listing the known ones."""
    parts = {spec: 1.0} if isinstance(spec, str) else dict(spec)
    if not parts:
        raise ConfigError("segment.loss is empty; name a loss, e.g. cross_entropy.")
    for name, weight in parts.items():
        try:
            _LOSSES.get(name)
        except EnsembleCVError as exc:
            raise ConfigError(f"segment.loss: {exc}") from None
        if weight < 0:
            raise ConfigError(f"segment.loss: weight of {name} is {weight}; weights must be >= 0.")
    return WeightedLoss(parts, ignore_index)


__all__ = ["WeightedLoss", "build_seg_loss", "list_seg_losses"]
