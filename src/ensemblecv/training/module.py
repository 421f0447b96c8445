"""The LightningModule: a classifier, its loss, optimizer and schedule.

Hyper-parameters saved in checkpoints are plain data (the resolved config as a
dict), never modules or datasets, so a checkpoint can be reloaded anywhere.

With ``train.ema`` a timm ``ModelEmaV3`` copy of the network follows the
training weights. It is what validation scores (so ``best.ckpt`` is chosen by
the EMA's metric), and every checkpoint stores the EMA weights as ``model.*``
(the raw training weights go under ``ema.module.*`` and are swapped back on a
Lightning resume), so OOF/test predictions, ``predict``, ``explain`` and
``export`` — which all load ``model`` — use the EMA weights with no special case.
"""

from __future__ import annotations

import lightning.pytorch as pl
import numpy as np
import torch
import torch.nn.functional as F

from ..config import ExperimentConfig
from .data import mix_seed
from .losses import build_loss, weight_penalty
from .optim import build_optimizer, build_scheduler


class NonFiniteLossError(RuntimeError):
    """Raised from a training step whose loss is NaN or infinite (no checkpoint is written then)."""


class ClassifierModule(pl.LightningModule):
    def __init__(
        self,
        config: dict,
        num_classes: int,
        steps_per_epoch: int,
        mean: list[float] | None = None,
        std: list[float] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        channels = config["data"]["channels"]
        # Normalisation lives in the model (and its checkpoint): batches arrive as
        # uint8 and are normalised in one vectorised step, on the device.
        self.register_buffer(
            "pixel_mean",
            torch.tensor(mean or [0.0] * channels).view(1, -1, 1, 1) * 255.0,
            persistent=False,
        )
        self.register_buffer(
            "pixel_std",
            torch.tensor(std or [1.0] * channels).view(1, -1, 1, 1) * 255.0,
            persistent=False,
        )
        from ..augment import build_batch_mix
        from ..models import create_model, resolve_inputs

        # Runs save their config resolved; a hand-made one is resolved the same way here.
        self.cfg = resolve_inputs(ExperimentConfig.model_validate(config))
        self.model = create_model(
            self.cfg.model,
            num_classes=num_classes,
            in_chans=self.cfg.data.channels,
            image_size=self.cfg.data.image_size,
        )
        self.num_classes = num_classes
        self.criterion = build_loss(self.cfg.train)
        from .algorithms import build_algorithm

        self.algorithm = build_algorithm(self.cfg.train)
        #: Domain id per workspace row (set by the runner for multi-domain data), not saved.
        self.domain_of_row: torch.Tensor | None = None
        self.batch_mix = build_batch_mix(self.cfg.augment, num_classes)
        self._mix_generator: torch.Generator | None = None
        from ..augment.batch import build_batch_augment

        self.batch_augment = build_batch_augment(self.cfg.augment.batch)
        self._augment_generator: torch.Generator | None = None
        self.ema = None
        if self.cfg.train.ema is not None:
            from timm.utils import ModelEmaV3

            self.ema = ModelEmaV3(
                self.model, decay=self.cfg.train.ema.decay, use_warmup=self.cfg.train.ema.warmup
            )
            # timm leaves the copy in eval mode; Lightning sets modes itself (and warns about
            # eval-mode modules at the start of fit). Only validation runs the copy.
            self.ema.train()
        if self.cfg.train.channels_last:
            self.to(memory_format=torch.channels_last)

    def setup(self, stage: str) -> None:
        if self.cfg.model.freeze:
            from ..models import freeze

            freeze(self.model, self.cfg.model.freeze)

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self.cfg.model.batchnorm != "train":
            from ..models import apply_batchnorm_policy

            apply_batchnorm_policy(self.model, self.cfg.model.batchnorm)
        return self

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 images (B, C, H, W) → normalised float; float input is taken as already normalised."""
        if x.dtype == torch.uint8:
            return (x.float() - self.pixel_mean) / self.pixel_std
        return x

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        x = self.normalize(x)
        if self.cfg.train.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self._input(x))

    @property
    def scoring_model(self) -> torch.nn.Module:
        """The network validation scores: the EMA during training with ``train.ema``."""
        return self.ema.module if self.ema is not None else self.model

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        # Seeding every batch from (seed, epoch, batch) makes a resumed run
        # identical to an uninterrupted one: Lightning draws from the global RNG
        # (e.g. creating DataLoader iterators) at different moments when it
        # restarts from a checkpoint, so an epoch-level seed is not enough.
        seed = mix_seed(self.cfg.train.seed, self.current_epoch, batch_idx, 2)
        torch.manual_seed(seed)
        self._mix_generator = torch.Generator().manual_seed(seed)
        self._augment_generator = torch.Generator().manual_seed(
            mix_seed(self.cfg.train.seed, self.current_epoch, batch_idx, 4)
        )

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        if self.ema is not None and (batch_idx + 1) % self.trainer.accumulate_grad_batches == 0:
            # The step count sets the warm-up decay, so a resumed run continues it exactly.
            self.ema.update(self.model, step=self.global_step)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Store the EMA weights as ``model.*`` (what predictions load), the raw ones aside."""
        if self.ema is not None:
            _swap_ema(checkpoint["state_dict"])
            checkpoint["ema_in_model"] = True

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """A Lightning resume trains the raw weights on and keeps the EMA as the EMA."""
        if checkpoint.pop("ema_in_model", False):
            _swap_ema(checkpoint["state_dict"])

    @property
    def _sync(self) -> bool:
        """Average epoch metrics over DDP ranks, so that every rank's ModelCheckpoint and
        EarlyStopping see the same, global ``val_loss`` (and history.csv the global
        figures). Off with one process, where syncing would be a no-op anyway."""
        return self._trainer is not None and self.trainer.world_size > 1

    def set_domains(self, domain_of_row) -> None:
        """Domain ids (ints) per workspace row, for CORAL and cross-domain MixStyle."""
        self.domain_of_row = torch.tensor(np.asarray(domain_of_row), dtype=torch.long)

    def _batch_domains(self, rows) -> torch.Tensor | None:
        if self.domain_of_row is None or not isinstance(rows, torch.Tensor):
            return None
        return self.domain_of_row[rows.cpu()].to(rows.device)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y, rows = batch
        if self.batch_augment is not None:
            x = self.batch_augment(x, generator=self._augment_generator)
        x = self._input(x)
        target = y
        if self.batch_mix is not None:
            x, target = self.batch_mix(x, y, generator=self._mix_generator)
        logits, loss = self.algorithm.step(
            self.model, self.criterion, x, target, self._batch_domains(rows)
        )
        penalty = weight_penalty(self.model, self.cfg.train.l1, self.cfg.train.l2)
        if penalty is not None:
            loss = loss + penalty
        # Reading the loss on the host waits for the device: on an accelerator only every
        # 50th step does (a non-finite loss stays non-finite once the weights are).
        if (loss.device.type == "cpu" or batch_idx % 50 == 49) and not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"loss became {loss.item()} at epoch {self.current_epoch}, step {self.global_step}; "
                "try a lower train.lr, gradient clipping (train.gradient_clip_val) or precision 32"
            )
        acc = (logits.argmax(1) == y).float().mean()
        self.log(
            "train_loss",
            loss.detach(),
            on_step=False,
            on_epoch=True,
            prog_bar=True,
            batch_size=len(y),
            sync_dist=self._sync,
        )
        self.log(
            "train_acc", acc, on_step=False, on_epoch=True, batch_size=len(y), sync_dist=self._sync
        )
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        x, y, _ = batch
        logits = self.scoring_model(self._input(x))
        loss = F.cross_entropy(logits.float(), y)
        acc = (logits.argmax(1) == y).float().mean()
        # Under DDP each rank validates its share of the rows (Lightning's DistributedSampler
        # repeats a few to even them out), so the synced figure is a close estimate; the
        # OOF predictions written after the fold cover every row exactly once.
        sync = self._sync
        self.log("val_loss", loss, on_epoch=True, prog_bar=True, batch_size=len(y), sync_dist=sync)
        self.log("val_acc", acc, on_epoch=True, prog_bar=True, batch_size=len(y), sync_dist=sync)

    def predict_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, _, _ = batch
        return torch.softmax(self(x).float(), dim=1)

    def configure_optimizers(self):
        optimizer = build_optimizer(self.model, self.cfg.train)
        steps = self.hparams.steps_per_epoch
        scheduler = build_scheduler(optimizer, self.cfg.train, steps)
        if scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": scheduler}


def _swap_ema(state: dict) -> None:
    """Exchange ``model.*`` and ``ema.module.*`` entries of a state dict, in place."""
    for key in [k for k in state if k.startswith("model.")]:
        other = "ema.module." + key[len("model.") :]
        if other in state:
            state[key], state[other] = state[other], state[key]
