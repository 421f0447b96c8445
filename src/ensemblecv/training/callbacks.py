"""Callbacks and plugins that keep the loop small: history file, atomic checkpoints."""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pandas as pd
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from .._io import atomic_write_text  # noqa: F401  (re-exported for older imports)

HISTORY_COLUMNS = [
    "epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "time_s", "train_time_s"
]  # fmt: skip


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write to a temporary file, then rename: a crash mid-write leaves the old file intact."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        super().save_checkpoint(checkpoint, tmp, storage_options)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)


class HistoryWriter(pl.Callback):
    """One row per epoch in ``history.csv``, rewritten atomically after each epoch.

    On resume, rows of epochs that are about to be re-run are dropped, so the
    file never holds an epoch twice. Under DDP only global rank 0 reads and
    writes the file (the metrics it records are already synced over ranks).
    """

    def __init__(self, path: Path, metrics: list[str] | None = None) -> None:
        self.path = Path(path)
        #: Metric columns (the task's: losses, accuracy, mAP, ...) between epoch and lr.
        self.columns = (
            HISTORY_COLUMNS
            if metrics is None
            else ["epoch", *metrics, "lr", "time_s", "train_time_s"]
        )
        self.rows: list[dict] = []
        self._start = 0.0
        self._train_end: float | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # on_train_start runs after a checkpoint is restored, so current_epoch is the resumed one.
        if trainer.is_global_zero and self.path.is_file():
            old = pd.read_csv(self.path)
            self.rows = old[old["epoch"] < trainer.current_epoch].to_dict("records")

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = time.perf_counter()
        self._train_end = None

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Validation runs inside the training epoch; time_s covers both,
        # train_time_s only the optimisation steps (what throughput is about).
        if self._train_end is None:
            self._train_end = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        m = trainer.callback_metrics
        lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else float("nan")

        def get(key: str) -> float:
            return float(m[key]) if key in m else float("nan")

        metrics = [c for c in self.columns if c not in ("epoch", "lr", "time_s", "train_time_s")]
        self.rows.append(
            {
                "epoch": trainer.current_epoch,
                **{key: get(key) for key in metrics},
                "lr": lr,
                "time_s": round(time.perf_counter() - self._start, 3),
                "train_time_s": round((self._train_end or time.perf_counter()) - self._start, 3),
            }
        )
        atomic_write_text(
            self.path, pd.DataFrame(self.rows, columns=self.columns).to_csv(index=False)
        )


class NumericsGuard(pl.Callback):
    """Records what exact resume depends on, and warns when a resume changes it.

    A resumed run reproduces an uninterrupted one bit for bit only with the same
    intra-op thread count and library versions: a float reduction split over
    another number of threads rounds differently, and training amplifies the
    last-digit difference. The checkpoint keeps the settings; resuming under
    others still works but says that the predictions may differ slightly.
    """

    @staticmethod
    def _settings() -> dict[str, Any]:
        import torch

        return {"torch_threads": torch.get_num_threads(), "torch": str(torch.__version__)}

    def state_dict(self) -> dict[str, Any]:
        return self._settings()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        now = self._settings()
        changed = [
            f"{k} {state_dict[k]} -> {now[k]}" for k in now if state_dict.get(k, now[k]) != now[k]
        ]
        if changed:
            warnings.warn(
                "resuming with other numerics than the interrupted run ("
                + ", ".join(changed)
                + "): its predictions may differ from an uninterrupted run in the last digits; "
                "set the same thread count (OMP_NUM_THREADS or torch.set_num_threads) for an "
                "exact resume.",
                UserWarning,
                stacklevel=2,
            )
