"""The segmentation LightningModule: a :class:`~.models.Segmenter`, its loss, val mIoU.

Hyper-parameters are plain data (the resolved config, class count, ignore
index, steps per epoch, mean/std), so a checkpoint rebuilds its model
anywhere. Training reuses the classifier's optimizer, schedules (``poly``
per iteration for the reference recipe), per-batch seeding and NaN guard;
the auxiliary head's loss (DeepLabV3, FCN) is added with
``segment.aux_weight``. Validation accumulates one dataset-level confusion
matrix in the model frame and logs ``val_miou`` / ``val_pixel_acc``.
"""

from __future__ import annotations

import lightning.pytorch as pl
import numpy as np
import torch

from ...config import ExperimentConfig
from ...training.data import mix_seed
from ...training.module import NonFiniteLossError
from ...training.optim import build_optimizer, build_scheduler


class SegmenterModule(pl.LightningModule):
    def __init__(
        self,
        config: dict,
        num_classes: int,
        steps_per_epoch: int,
        mean: list[float] | None = None,
        std: list[float] | None = None,
        ignore_index: int = 255,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        from .losses import build_seg_loss
        from .models import create_segmenter

        self.cfg = ExperimentConfig.model_validate(config)
        self.num_classes, self.ignore_index = num_classes, int(ignore_index)
        self.model = create_segmenter(
            self.cfg.model, num_classes, mean or [0.0] * 3, std or [1.0] * 3
        )
        self.loss = build_seg_loss(self.cfg.segment.loss, self.ignore_index)
        self._cm = np.zeros((num_classes, num_classes), np.int64)

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self.cfg.model.batchnorm != "train":
            from ...models import apply_batchnorm_policy

            apply_batchnorm_policy(self.model, self.cfg.model.batchnorm)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, K, H, W) of uint8 or 0-1 images (B, 3, H, W)."""
        return self.model(x)["out"]

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        torch.manual_seed(mix_seed(self.cfg.train.seed, self.current_epoch, batch_idx, 2))

    @property
    def _sync(self) -> bool:
        return self._trainer is not None and self.trainer.world_size > 1

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, mask, _ = batch
        out = self.model(x)
        loss = self.loss(out["out"], mask)
        if "aux" in out and self.cfg.segment.aux_weight > 0:
            loss = loss + self.cfg.segment.aux_weight * self.loss(out["aux"], mask)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"loss became {loss.item()} at epoch {self.current_epoch}, step {self.global_step}; "
                "try a lower train.lr, gradient clipping (train.gradient_clip_val) or precision 32"
            )
        self.log(
            "train_loss", loss.detach(), on_step=False, on_epoch=True, prog_bar=True,
            batch_size=len(x), sync_dist=self._sync,
        )  # fmt: skip
        return loss

    def on_validation_epoch_start(self) -> None:
        self._cm = np.zeros((self.num_classes, self.num_classes), np.int64)

    def validation_step(self, batch, batch_idx: int) -> None:
        x, mask, _ = batch
        logits = self(x)
        self.log(
            "val_loss", self.loss(logits, mask), on_epoch=True, batch_size=len(x),
            sync_dist=self._sync,
        )  # fmt: skip
        k = self.num_classes
        t, p = mask.reshape(-1), logits.argmax(1).reshape(-1)
        keep = (t != self.ignore_index) & (t >= 0) & (t < k)
        cm = torch.bincount(k * t[keep] + p[keep], minlength=k * k).reshape(k, k)
        self._cm += cm.cpu().numpy()

    def on_validation_epoch_end(self) -> None:
        from .metrics import scores_from_confusion

        scores = scores_from_confusion(self._cm)
        # Under DDP each rank scores its share; the stored OOF maps cover every row exactly once.
        for key in ("miou", "pixel_acc"):
            value = scores[key] if np.isfinite(scores[key]) else 0.0
            self.log(f"val_{key}", float(value), prog_bar=True, sync_dist=self._sync)

    def configure_optimizers(self):
        optimizer = build_optimizer(self.model, self.cfg.train)
        scheduler = build_scheduler(
            optimizer, self.cfg.train, self.hparams.steps_per_epoch, monitor="val_miou", mode="max"
        )
        if scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": scheduler}


__all__ = ["SegmenterModule"]
