"""The detection LightningModule: a torchvision-style detector, its optimizer, val mAP.

Hyper-parameters are plain data (the resolved config, class count, steps per
epoch, mean/std), as for :class:`~ensemblecv.training.module.ClassifierModule`,
so a checkpoint rebuilds its model anywhere. Training reuses the classifier's
optimizer, schedule, per-batch seeding (resume = uninterrupted run) and NaN
guard; validation collects detections and logs COCO ``val_map`` /
``val_map50``, which checkpoints and early stopping follow.
"""

from __future__ import annotations

import lightning.pytorch as pl
import numpy as np
import torch

from ...config import ExperimentConfig
from ...training.data import mix_seed
from ...training.module import NonFiniteLossError
from ...training.optim import build_optimizer, build_scheduler


class DetectorModule(pl.LightningModule):
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
        from .models import create_detector

        self.cfg = ExperimentConfig.model_validate(config)
        self.num_classes = num_classes
        self.model = create_detector(
            self.cfg.model,
            num_classes,
            self.cfg.data.image_size,
            mean or [0.0] * 3,
            std or [1.0] * 3,
            self.cfg.detect,
        )
        self._val: list[tuple[int, dict]] = []
        #: Ground truth of the validation rows, in the resized frame: {row: (boxes, labels, crowd)}.
        self.val_truth: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self.cfg.model.batchnorm != "train":
            from ...models import apply_batchnorm_policy

            apply_batchnorm_policy(self.model, self.cfg.model.batchnorm)
        return self

    @staticmethod
    def images(x: torch.Tensor) -> list[torch.Tensor]:
        """uint8 (B, C, H, W) → list of float (3, H, W) in [0, 1]; the detector normalises."""
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return list(x)

    def forward(self, x: torch.Tensor) -> list[dict]:
        """Detections (boxes in the pixels of ``x``, labels = class + 1, scores) per image.

        Heads without a background class (RetinaNet, FCOS) still have the unused
        label 0 of the one-rule mapping; its (near-zero) scores are dropped here.
        """
        out = []
        for det in self.model(self.images(x)):
            keep = det["labels"] > 0
            out.append({k: v[keep] for k, v in det.items()})
        return out

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        # As the classifier: the global RNG is a function of (seed, epoch, batch), so a
        # run resumed from last.ckpt draws what the uninterrupted one drew.
        torch.manual_seed(mix_seed(self.cfg.train.seed, self.current_epoch, batch_idx, 2))

    @property
    def _sync(self) -> bool:
        return self._trainer is not None and self.trainer.world_size > 1

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, targets, _ = batch
        losses = self.model(self.images(x), targets)
        loss = sum(losses.values())
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"loss became {loss.item()} at epoch {self.current_epoch}, step {self.global_step}; "
                "try a lower train.lr, gradient clipping (train.gradient_clip_val) or precision 32"
            )
        self.log(
            "train_loss",
            loss.detach(),
            on_step=False,
            on_epoch=True,
            prog_bar=True,
            batch_size=len(targets),
            sync_dist=self._sync,
        )
        return loss

    def on_validation_epoch_start(self) -> None:
        self._val = []

    def validation_step(self, batch, batch_idx: int) -> None:
        x, targets, rows = batch
        for row, det, tgt in zip(rows.tolist(), self(x), targets):
            self._val.append((row, det, tgt))

    def on_validation_epoch_end(self) -> None:
        from .metrics import coco_scores

        truth, dets = [], []
        for row, det, tgt in self._val:
            truth.append(
                {
                    "image": row,
                    "boxes": tgt["boxes"].cpu().numpy(),
                    "labels": tgt["labels"].cpu().numpy() - 1,
                }
            )
            dets.append(
                {
                    "image": row,
                    "boxes": det["boxes"].detach().float().cpu().numpy(),
                    "labels": det["labels"].cpu().numpy() - 1,
                    "scores": det["scores"].detach().float().cpu().numpy(),
                }
            )
        scores = coco_scores(truth, dets, self.num_classes, per_class=False)
        self._val = []
        # Under DDP each rank scores its share; the synced mean is a close estimate, the
        # stored OOF detections (and their pooled mAP) cover every row exactly once.
        for key in ("map", "map50"):
            self.log(f"val_{key}", float(scores[key]), prog_bar=True, sync_dist=self._sync)

    def configure_optimizers(self):
        optimizer = build_optimizer(self.model, self.cfg.train)
        scheduler = build_scheduler(
            optimizer, self.cfg.train, self.hparams.steps_per_epoch, monitor="val_map", mode="max"
        )
        if scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": scheduler}
