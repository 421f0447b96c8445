"""Losses that accept hard labels or soft targets (CutMix/MixUp), registered by name.

Focal loss follows Lin et al. (2017): ``-alpha * (1 - p_t)^gamma * log p_t``,
generalised to soft targets as ``-sum_c t_c * alpha * (1 - p_c)^gamma * log p_c``,
which reduces to the definition for one-hot targets. Label smoothing mixes the
target with the uniform distribution before either loss, as PyTorch does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .._registry import Registry
from ..config import TrainConfig

_losses: Registry = Registry("loss")


def list_losses() -> list[str]:
    return _losses.names()


def soft_targets(target: torch.Tensor, num_classes: int, smoothing: float = 0.0) -> torch.Tensor:
    """One-hot (or given soft) targets, smoothed towards uniform by ``smoothing``."""
    if target.dim() == 1:
        target = F.one_hot(target.long(), num_classes).to(torch.float32)
    if smoothing > 0:
        target = target * (1.0 - smoothing) + smoothing / num_classes
    return target


class SoftCrossEntropy(nn.Module):
    def __init__(self, smoothing: float = 0.0) -> None:
        super().__init__()
        self.smoothing = smoothing

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if target.dim() == 1:  # the fused kernel is faster for hard labels
            return F.cross_entropy(logits, target, label_smoothing=self.smoothing)
        t = soft_targets(target, logits.shape[1], self.smoothing)
        return -(t * F.log_softmax(logits.float(), dim=1)).sum(1).mean()


class FocalLoss(nn.Module):
    def __init__(
        self, gamma: float = 2.0, alpha: float | None = None, smoothing: float = 0.0
    ) -> None:
        super().__init__()
        self.gamma, self.alpha, self.smoothing = gamma, alpha, smoothing

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        t = soft_targets(target, logits.shape[1], self.smoothing)
        log_p = F.log_softmax(logits.float(), dim=1)
        weight = (1.0 - log_p.exp()).clamp_min(0).pow(self.gamma)
        if self.alpha is not None:
            weight = weight * self.alpha
        return -(t * weight * log_p).sum(1).mean()


class WeightedSum(nn.Module):
    def __init__(self, parts: list[tuple[float, nn.Module]]) -> None:
        super().__init__()
        self.weights = [w for w, _ in parts]
        self.parts = nn.ModuleList(m for _, m in parts)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return sum(w * m(logits, target) for w, m in zip(self.weights, self.parts))


@_losses.register("cross_entropy")
def _ce(cfg: TrainConfig) -> nn.Module:
    return SoftCrossEntropy(cfg.label_smoothing)


@_losses.register("focal")
def _focal(cfg: TrainConfig) -> nn.Module:
    return FocalLoss(cfg.focal_gamma, cfg.focal_alpha, cfg.label_smoothing)


@_losses.register("focal+cross_entropy")
def _focal_ce(cfg: TrainConfig) -> nn.Module:
    return WeightedSum([(cfg.focal_weight, _focal(cfg)), (1.0 - cfg.focal_weight, _ce(cfg))])


def build_loss(cfg: TrainConfig) -> nn.Module:
    return _losses.get(cfg.loss)(cfg)


def weight_penalty(model: nn.Module, l1: float, l2: float) -> torch.Tensor | None:
    """``l1 * sum|w| + l2 * sum w^2`` over trainable weight tensors (biases and norms excluded)."""
    if l1 <= 0 and l2 <= 0:
        return None
    total = None
    for p in model.parameters():
        if not p.requires_grad or p.dim() < 2:
            continue
        term = 0.0
        if l1 > 0:
            term = term + l1 * p.abs().sum()
        if l2 > 0:
            term = term + l2 * p.pow(2).sum()
        total = term if total is None else total + term
    return total


def coral_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """DomainBed's CORAL distance between feature sets (n, d) and (m, d):
    mean squared difference of the means plus of the covariances (unbiased)."""
    mean_a, mean_b = a.mean(0, keepdim=True), b.mean(0, keepdim=True)
    ca, cb = a - mean_a, b - mean_b
    cov_a = ca.t() @ ca / max(len(a) - 1, 1)
    cov_b = cb.t() @ cb / max(len(b) - 1, 1)
    return (mean_a - mean_b).pow(2).mean() + (cov_a - cov_b).pow(2).mean()


def coral_penalty(features: torch.Tensor, domains: torch.Tensor) -> torch.Tensor:
    """Mean CORAL distance over all pairs of domains present in the batch (0 with fewer than 2).

    Domains with a single sample in the batch are skipped: they have no covariance.
    """
    present = [d for d in torch.unique(domains) if int((domains == d).sum()) >= 2]
    feats = features.float()
    total, pairs = feats.new_zeros(()), 0
    for i in range(len(present)):
        for j in range(i + 1, len(present)):
            total = total + coral_distance(
                feats[domains == present[i]], feats[domains == present[j]]
            )
            pairs += 1
    return total / pairs if pairs else total
