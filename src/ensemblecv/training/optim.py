"""Optimizers and learning-rate schedules from the config, in Lightning's format.

Schedules step per optimizer step (``interval: step``) except reduce-on-plateau,
which needs a validation metric and steps per epoch — so warm-up and OneCycle
behave the same whatever the batch count.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..config import TrainConfig


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay on biases and normalisation parameters (standard practice, timm too)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.dim() <= 1 else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    groups = _param_groups(model, cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0
        )
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr)
    return torch.optim.AdamW(groups, lr=cfg.lr)


def _cosine_with_warmup(total: int, warmup: int, min_ratio: float):
    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def _poly_with_warmup(total: int, warmup: int, power: float):
    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        return max(0.0, 1 - (step - warmup) / max(1, total - warmup)) ** power

    return factor


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    cfg: TrainConfig,
    steps_per_epoch: int,
    monitor: str = "val_loss",
    mode: str = "min",
) -> dict | None:
    """A Lightning ``lr_scheduler`` dict, or None for a constant rate.

    ``monitor``/``mode``: the validation metric ``plateau`` follows (the task's, e.g. val_map).
    """
    sched = torch.optim.lr_scheduler
    total = max(1, cfg.epochs * steps_per_epoch)
    if cfg.scheduler == "none":
        return None
    if cfg.scheduler == "plateau":
        s = sched.ReduceLROnPlateau(
            optimizer, mode=mode, factor=cfg.gamma, patience=cfg.plateau_patience, min_lr=cfg.min_lr
        )
        return {"scheduler": s, "interval": "epoch", "monitor": monitor}
    if cfg.scheduler == "step":
        s = sched.StepLR(optimizer, step_size=cfg.step_size * steps_per_epoch, gamma=cfg.gamma)
    elif cfg.scheduler == "multistep":
        s = sched.MultiStepLR(
            optimizer, [m * steps_per_epoch for m in cfg.milestones], gamma=cfg.gamma
        )
    elif cfg.scheduler == "poly":
        # The torchvision segmentation reference: (1 - t/T) ** 0.9 per iteration, after warm-up.
        fn = _poly_with_warmup(total, cfg.warmup_epochs * steps_per_epoch, cfg.poly_power)
        s = sched.LambdaLR(optimizer, fn)
    elif cfg.scheduler == "onecycle":
        s = sched.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=total)
    else:
        fn = _cosine_with_warmup(total, cfg.warmup_epochs * steps_per_epoch, cfg.min_lr / cfg.lr)
        s = sched.LambdaLR(optimizer, fn)
    return {"scheduler": s, "interval": "step"}
