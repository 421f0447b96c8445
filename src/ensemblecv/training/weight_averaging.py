"""Weight averaging over training (SWA / SWAD-style uniform mean, or EMA), as a callback.

Averaged weights find flatter minima, which is what carries over to an unseen
domain (Cha et al., SWAD, 2021; Arpit et al., ensembles of moving averages, 2022).
From epoch ``floor(start * epochs)`` on, every optimizer step's weights enter a
uniform running mean (``swa``) or an exponential one (``ema``). At the end of
training the averaged weights replace the model's, BatchNorm statistics are
recomputed for them on the training data (averaged weights do not match any
snapshot's running statistics), and the result is saved as ``best.ckpt``, so the
out-of-fold and test predictions, ``predict`` and ``explain`` all use the average.
The running mean is part of the callback state, so ``--resume`` continues it.
"""

from __future__ import annotations

import math
from pathlib import Path

import lightning.pytorch as pl
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..config import WeightAveragingConfig


class WeightAveraging(pl.Callback):
    """Average the LightningModule's floating-point parameters; see the module docstring."""

    def __init__(
        self, cfg: WeightAveragingConfig, epochs: int, checkpoint: Path | None = None
    ) -> None:
        self.method, self.decay, self.bn_batches = cfg.method, cfg.decay, cfg.bn_batches
        self.start_epoch = min(epochs - 1, math.floor(cfg.start * epochs))
        self.checkpoint = checkpoint
        self.average: dict[str, torch.Tensor] = {}
        self.count = 0

    # -- the average -------------------------------------------------------------------
    @staticmethod
    def _params(module: nn.Module) -> dict[str, torch.Tensor]:
        return {n: p for n, p in module.named_parameters() if p.dtype.is_floating_point}

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        """Add the current weights: uniform mean (swa) or ``decay``-EMA (ema)."""
        params = self._params(module)
        if not self.average:
            self.average = {n: p.detach().clone().float() for n, p in params.items()}
            self.count = 1
            return
        self.count += 1
        for n, p in params.items():
            avg = self.average[n]
            if self.method == "swa":
                avg.add_((p.detach().float() - avg) / self.count)
            else:
                avg.mul_(self.decay).add_(p.detach().float(), alpha=1 - self.decay)

    @torch.no_grad()
    def apply_to(self, module: nn.Module) -> None:
        """Copy the averaged weights into ``module``."""
        for n, p in self._params(module).items():
            p.copy_(self.average[n].to(p.device, p.dtype))

    # -- Lightning hooks -----------------------------------------------------------------
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step_done = (batch_idx + 1) % trainer.accumulate_grad_batches == 0
        if trainer.current_epoch >= self.start_epoch and step_done:
            self.update(pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.average:
            return
        self.apply_to(pl_module)
        recompute_batchnorm(pl_module, trainer.train_dataloader, self.bn_batches)
        if self.checkpoint is not None:
            trainer.save_checkpoint(str(self.checkpoint))

    def state_dict(self) -> dict:
        return {"average": self.average, "count": self.count}

    def load_state_dict(self, state_dict: dict) -> None:
        self.average = dict(state_dict.get("average", {}))
        self.count = int(state_dict.get("count", 0))


@torch.no_grad()
def recompute_batchnorm(module: nn.Module, loader, max_batches: int | None = None) -> int:
    """Re-estimate every BatchNorm's running mean/var with a cumulative average over
    ``loader``; everything else (dropout, MixStyle) in eval mode. Returns batches used."""
    was_training = module.training
    module.train()  # applies the model.batchnorm policy: frozen statistics stay frozen
    bns = [
        m for m in module.modules() if isinstance(m, _BatchNorm) and m.track_running_stats
        and m.training
    ]  # fmt: skip
    if not bns or loader is None:
        module.train(was_training)
        return 0
    momenta = {}
    module.eval()
    for bn in bns:
        momenta[bn] = bn.momentum
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average
        bn.train()
    device = next(module.parameters()).device
    used = 0
    for batch in loader:
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        module(x.to(device))
        used += 1
        if max_batches is not None and used >= max_batches:
            break
    for bn, m in momenta.items():
        bn.momentum = m
    module.train(was_training)
    return used
