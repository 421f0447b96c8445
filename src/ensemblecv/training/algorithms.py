"""Training algorithms, one class per algorithm (DomainBed's ``algorithms.py`` style).

Each turns a (normalised, possibly mixed) batch into logits and a loss; everything
else — optimizer, schedule, logging, the NaN guard — is shared by the
LightningModule. ERM is the plain classifier; CORAL adds the distance between the
training domains' feature covariances (Sun & Saenko, 2016; DomainBed's
``mmd_gamma``-weighted form). MixStyle is not an algorithm here but a model option
(``model.mixstyle``), so it combines with either.
"""

from __future__ import annotations

import torch
from torch import nn

from .._registry import Registry
from ..config import TrainConfig
from ..models.mixstyle import mixstyle_domains
from .losses import coral_penalty

_algorithms: Registry = Registry("training algorithm")


def list_algorithms() -> list[str]:
    return _algorithms.names()


class ERM:
    """Empirical risk minimisation: the loss of the model's predictions."""

    needs_domains = False

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg

    def step(
        self, model: nn.Module, criterion, x: torch.Tensor, target, domains: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, loss) of a batch; ``domains`` (B,) int ids or None."""
        with mixstyle_domains(model, domains):
            logits = model(x)
        return logits, criterion(logits, target)


class CORAL(ERM):
    """ERM plus ``coral_weight`` × the mean CORAL distance between the batch's domains,
    on the penultimate features (what the classifier sees)."""

    needs_domains = True

    def step(self, model, criterion, x, target, domains):
        with mixstyle_domains(model, domains):
            feats = model.forward_head(model.forward_features(x), pre_logits=True)
        logits = model.get_classifier()(feats)
        loss = criterion(logits, target)
        if domains is not None and self.cfg.coral_weight > 0:
            loss = loss + self.cfg.coral_weight * coral_penalty(feats.flatten(1), domains)
        return logits, loss


_algorithms.register("erm")(ERM)
_algorithms.register("coral")(CORAL)


def build_algorithm(cfg: TrainConfig) -> ERM:
    return _algorithms.get(cfg.algorithm)(cfg)
