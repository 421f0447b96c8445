"""MixStyle (Zhou et al., ICLR 2021): mix instance-level feature statistics across samples.

After some stages of a CNN, each feature map ``x`` is re-styled with statistics
interpolated between its own and another sample's:
``(x - mu) / sigma * (lam * sigma + (1 - lam) * sigma_j) + lam * mu + (1 - lam) * mu_j``
with ``lam ~ Beta(alpha, alpha)`` and ``mu, sigma`` the per-channel spatial mean
and standard deviation (treated as constants for the gradient, as in the paper).
The partner ``j`` is any other sample (``random``) or one from another training
domain (``crossdomain``, which needs domain ids per batch and domain-balanced
batches). It is identity at ``p = 0`` and in eval mode, so predictions and
checkpoints are those of the plain network — MixStyle adds no parameters.

It is inserted with forward hooks on the model's stage modules, so it works on any
timm CNN and the built-ins without touching their code.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from ..errors import ConfigError

_STEM_NAMES = {"conv1", "bn1", "act1", "stem", "conv_stem", "bn_stem", "bn1.act"}


def mix_statistics(
    x: torch.Tensor, lam: torch.Tensor, perm: torch.Tensor, eps: float = 1e-6
) -> torch.Tensor:
    """``x`` (B, C, H, W) with each sample's channel statistics mixed with sample ``perm[i]``'s.

    ``lam`` (B,) is the weight of the sample's own statistics.
    """
    mu = x.mean(dim=(2, 3), keepdim=True)
    sigma = (x.var(dim=(2, 3), keepdim=True) + eps).sqrt()
    mu, sigma = mu.detach(), sigma.detach()
    lam = lam.to(x.dtype).view(-1, 1, 1, 1)
    mu_mix = lam * mu + (1 - lam) * mu[perm]
    sigma_mix = lam * sigma + (1 - lam) * sigma[perm]
    return (x - mu) / sigma * sigma_mix + mu_mix


def crossdomain_partners(domains: torch.Tensor) -> torch.Tensor:
    """For each sample a random partner from another domain (any sample if there is none)."""
    b = len(domains)
    scores = torch.rand(b, b, device=domains.device)
    other = domains.view(-1, 1) != domains.view(1, -1)
    scores = torch.where(other, scores + 1.0, scores)  # another domain always wins
    return scores.argmax(dim=1)


class MixStyle(nn.Module):
    """One MixStyle layer; ``domains`` (B,) is set per batch for cross-domain mixing."""

    def __init__(
        self, p: float = 0.5, alpha: float = 0.1, mix: str = "random", eps: float = 1e-6
    ) -> None:
        super().__init__()
        if mix not in ("random", "crossdomain"):
            raise ConfigError(f"model.mixstyle.mix must be random or crossdomain, not {mix!r}.")
        self.p, self.alpha, self.mix, self.eps = p, alpha, mix, eps
        self.domains: torch.Tensor | None = None

    def extra_repr(self) -> str:
        return f"p={self.p}, alpha={self.alpha}, mix={self.mix}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p <= 0 or x.dim() != 4 or len(x) < 2:
            return x
        if torch.rand(1).item() > self.p:
            return x
        b = len(x)
        lam = torch.distributions.Beta(self.alpha, self.alpha).sample((b,)).to(x.device)
        if self.mix == "crossdomain" and self.domains is not None and len(self.domains) == b:
            perm = crossdomain_partners(self.domains.to(x.device))
        else:
            perm = torch.randperm(b, device=x.device)
        return mix_statistics(x, lam, perm, self.eps)


def stage_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model's stages in order: ``stages.*`` (built-ins, ConvNeXt, ...), ``layer1..``
    (ResNets), else timm's ``feature_info`` modules without the stem."""
    stages = getattr(model, "stages", None)
    if isinstance(stages, (nn.Sequential, nn.ModuleList)):
        return [(f"stages.{i}", m) for i, m in enumerate(stages)]
    layers = [n for n, _ in model.named_children() if n.startswith("layer") and n[5:].isdigit()]
    if layers:
        layers.sort(key=lambda n: int(n[5:]))
        return [(n, getattr(model, n)) for n in layers]
    info = getattr(model, "feature_info", None)
    names = []
    if info is not None:
        entries = info.get_dicts() if hasattr(info, "get_dicts") else list(info)
        names = [e["module"] for e in entries if e.get("module") not in _STEM_NAMES]
    if not names:
        raise ConfigError(
            f"{type(model).__name__} does not expose its stages (no 'stages', 'layerN' or timm "
            "feature_info), so model.mixstyle cannot be inserted."
        )
    return [(n, model.get_submodule(n)) for n in names]


def _after_stage(layer: MixStyle, module: nn.Module, inputs, output):
    return layer(output) if isinstance(output, torch.Tensor) else output


def attach_mixstyle(
    model: nn.Module, p: float, alpha: float, mix: str, stages: list[int] | None = None
) -> None:
    """Insert MixStyle after the given 1-based ``stages`` of ``model`` (forward hooks).

    ``stages=None``: after every stage but the last, at most the first three (the
    paper's res1-res3 for a ResNet); the last stage's statistics carry the class.

    The layers become ``model.mixstyle_layers`` so ``train()``/``eval()`` reach them;
    they hold no parameters, so the state dict is that of the plain model.
    """
    found = stage_modules(model)
    if stages is None:
        stages = list(range(1, min(3, len(found) - 1) + 1)) or [1]
    bad = [s for s in stages if not 1 <= s <= len(found)]
    if bad:
        names = ", ".join(f"{i + 1}={n}" for i, (n, _) in enumerate(found))
        raise ConfigError(
            f"model.mixstyle.stages {bad} out of range: {type(model).__name__} has "
            f"{len(found)} stages ({names})."
        )
    layers = nn.ModuleList()
    for s in sorted(set(stages)):
        layer = MixStyle(p, alpha, mix)
        found[s - 1][1].register_forward_hook(functools.partial(_after_stage, layer))
        layers.append(layer)
    model.add_module("mixstyle_layers", layers)


def mixstyle_layers(model: nn.Module) -> list[MixStyle]:
    return [m for m in model.modules() if isinstance(m, MixStyle)]


@contextmanager
def mixstyle_domains(model: nn.Module, domains: torch.Tensor | None) -> Iterator[None]:
    """Tell the model's MixStyle layers the batch's domain ids for one forward pass."""
    layers = mixstyle_layers(model)
    for layer in layers:
        layer.domains = domains
    try:
        yield
    finally:
        for layer in layers:
            layer.domains = None
