"""Train one config on every fold of the workspace: the ``train`` verb's engine.

Per fold it writes ``runs/<name>/fold_<k>/``: ``best.ckpt``, ``last.ckpt``,
``history.csv``, the task's OOF predictions of exactly that fold's validation
samples (classification: ``oof_probs.npy`` + ``oof_samples.parquet``;
detection: ``oof_detections.parquet``), the test predictions when the config
has a test set, and ``done.json`` last — a fold without it is unfinished and
can be resumed.

The loop is task-blind: what differs per task (inputs, LightningModule,
dataset, collate, monitored metric, prediction files) comes from
``ensemblecv.tasks.get_task(config.task)``.

Under Lightning DDP (``trainer.strategy=ddp`` launched by ``torchrun`` or
``srun``) every process runs this same code; global rank 0 alone writes files
(see :mod:`.distributed`), and the OOF/test files are the same rows in the same
order as a single-process run writes.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

from ..config import ExperimentConfig, to_yaml
from ..errors import ConfigError, DataError
from ..tasks import get_task
from .callbacks import AtomicCheckpointIO, HistoryWriter, NumericsGuard, atomic_write_text
from .classify_outputs import predict_probs
from .data import make_loader, mix_seed, steps_per_epoch
from .distributed import barrier, broadcast_from_zero, is_rank_zero
from .inputs import RunInputs, prepare_inputs
from .tracking import build_logger, log_artifacts


@dataclass
class FoldResult:
    run: str
    fold: str
    status: str
    epochs: int
    best_epoch: int | None
    val_loss: float | None
    val_acc: float | None
    seconds: float
    message: str = ""
    #: The task's validation scores of the stored OOF predictions (e.g. map, map50).
    metrics: dict = field(default_factory=dict)


def _check_run_dir(run_dir: Path, config: ExperimentConfig) -> None:
    """A run name is bound to one config; reusing it with another would mix results.

    Every DDP rank checks; only rank 0 writes ``config.yaml`` (atomically, so
    the others read no file or the whole one).
    """
    path = run_dir / "config.yaml"
    text = to_yaml(config)
    if path.is_file() and path.read_text(encoding="utf-8") != text:
        raise ConfigError(
            f"Run {run_dir.name!r} already exists in this workspace with a different config "
            f"({path}). Give this experiment another name (name=...) or delete that run folder."
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    if is_rank_zero():
        atomic_write_text(path, text)


def _quiet_lightning() -> None:
    """Lightning's INFO lines (GPU available, tips) drown the progress bars; keep warnings."""
    for name in ("lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    # A refit on all images ("full") has no validation rows by design.
    warnings.filterwarnings("ignore", message=r".*validation_step` but have no `val_dataloader.*")


def train(
    config: ExperimentConfig,
    folds: list[int] | None = None,
    resume: bool = False,
    progress: bool = True,
) -> list[FoldResult]:
    """Train ``config`` on the listed folds (default: all, plus ``full`` if refit_full)."""
    from ..tasks import resolve_config

    _quiet_lightning()
    if config.data.protocol == "leave_one_domain_out" and config.data.held_out is None:
        from ..domains.protocol import train_lodo  # one sub-experiment per held-out domain

        return train_lodo(config, train, folds=folds, resume=resume, progress=progress)
    progress = progress and is_rank_zero()  # one set of bars in a DDP launch
    config = resolve_config(config)  # a size the model cannot take fails here, before any data
    inputs = prepare_inputs(config, progress=progress)
    todo = fold_plan(int(inputs.folds["fold"].max()) + 1, folds, config.train.refit_full)
    inputs.refit_follows = "full" in todo
    results = []
    for member in bag_members(config):
        run_dir = inputs.workspace.run_dir(member.run_name)
        _check_run_dir(run_dir, member)
        results += [train_fold(member, inputs, fold, run_dir, resume, progress) for fold in todo]
        if is_rank_zero():
            get_task(config.task).summarize_run(inputs.workspace, member.run_name)
    return results


def fold_plan(n_folds: int, folds: list[int] | None, refit_full: bool) -> list[int | str]:
    """The folds to train: ``folds`` (checked) or all of them, plus ``full`` for a refit."""
    todo: list[int | str] = list(range(n_folds)) if folds is None else list(folds)
    bad = [f for f in todo if not 0 <= int(f) < n_folds]
    if bad:
        raise ConfigError(f"--folds {bad} out of range: this workspace has folds 0..{n_folds - 1}.")
    if refit_full and folds is None:
        todo.append("full")
    return todo


def bag_members(config: ExperimentConfig) -> list[ExperimentConfig]:
    """``train.repeats: N`` → N configs ``NAME_r0..`` with their own seeds (and bootstrap samples).

    Each member is an ordinary run, so it enters the ensembles like any other.
    """
    if config.train.repeats == 1:
        return [config]
    members = []
    for r in range(config.train.repeats):
        train_cfg = config.train.model_copy(update={"repeats": 1, "seed": config.train.seed + r})
        members.append(
            config.model_copy(update={"name": f"{config.run_name}_r{r}", "train": train_cfg})
        )
    return members


def _fold_rows(inputs: RunInputs, fold: int | str) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation rows of ``fold``.

    Excluded samples (``data.exclude``) never train, but they keep their place in
    validation, so every run still has an OOF prediction for every sample and
    scores stay comparable across runs with and without the exclusions.
    """
    positions = np.arange(len(inputs.folds))
    train = np.ones(len(positions), dtype=bool) if inputs.train_mask is None else inputs.train_mask
    if fold == "full":
        return positions[train], positions[:0]
    is_val = inputs.folds["fold"].to_numpy() == int(fold)
    return positions[~is_val & train], positions[is_val]


def _callbacks(config: ExperimentConfig, fold_dir: Path, has_val: bool, progress: bool) -> list:
    task = get_task(config.task)
    cbs: list = [HistoryWriter(fold_dir / "history.csv", task.history_columns()), NumericsGuard()]
    if has_val:
        cbs.append(
            ModelCheckpoint(
                dirpath=fold_dir,
                filename="best",
                monitor=task.info.monitor,
                mode=task.info.mode,
                save_last=True,
                enable_version_counter=False,
            )
        )
    else:
        cbs.append(
            ModelCheckpoint(
                dirpath=fold_dir, filename="best", save_last=True, enable_version_counter=False
            )
        )
    if config.train.weight_averaging is not None:
        from .weight_averaging import WeightAveraging

        # After ModelCheckpoint: at the end of training it overwrites best.ckpt with the average.
        cbs.append(
            WeightAveraging(
                config.train.weight_averaging, config.train.epochs, fold_dir / "best.ckpt"
            )
        )
    es = config.train.early_stopping
    if es is not None and has_val:
        mode = es.mode or ("min" if es.monitor.endswith("loss") else "max")
        cbs.append(
            EarlyStopping(
                monitor=es.monitor, patience=es.patience, mode=mode, min_delta=es.min_delta
            )
        )
    if progress:
        from lightning.pytorch.callbacks import RichProgressBar

        cbs.append(RichProgressBar(leave=True))
    return cbs


def _trainer(
    config: ExperimentConfig, fold_dir: Path, callbacks: list, logger, has_val: bool, batches: int
) -> pl.Trainer:
    t = config.trainer
    extra = {
        "log_every_n_steps": max(1, min(50, batches)),  # Lightning warns above the batch count
        "deterministic": "warn",
        "num_sanity_val_steps": 0,
        "enable_model_summary": False,
    }
    extra.update(t.model_extra or {})  # any other Lightning Trainer argument, e.g. deterministic
    return pl.Trainer(
        default_root_dir=str(fold_dir),
        max_epochs=config.train.epochs,
        accelerator=t.accelerator,
        devices=t.devices,
        precision=t.precision,
        accumulate_grad_batches=config.train.accumulate_grad_batches,
        gradient_clip_val=config.train.gradient_clip_val,
        callbacks=callbacks,
        logger=logger if logger is not None else False,
        plugins=[AtomicCheckpointIO()],
        enable_progress_bar=any(type(c).__name__ == "RichProgressBar" for c in callbacks),
        **({} if has_val else {"limit_val_batches": 0}),
        **extra,
    )


def train_fold(
    config: ExperimentConfig,
    inputs: RunInputs,
    fold: int | str,
    run_dir: Path,
    resume: bool,
    progress: bool,
    callbacks: list | None = None,
) -> FoldResult:
    """Train one fold; ``callbacks`` are added to the Trainer's (e.g. a sweep's pruning)."""
    fold_dir = run_dir / (f"fold_{fold}" if fold != "full" else "full")
    done = fold_dir / "done.json"
    if done.is_file():
        return FoldResult(**{**json.loads(done.read_text()), "status": "skipped (done)"})
    fold_dir.mkdir(parents=True, exist_ok=True)
    last = fold_dir / "last.ckpt"
    if last.is_file() and not resume and is_rank_zero():
        warnings.warn(
            f"{fold_dir} holds an unfinished run; starting it over (use --resume to continue).",
            UserWarning,
            stacklevel=2,
        )
        for stale in ("last.ckpt", "best.ckpt", "history.csv"):
            (fold_dir / stale).unlink(missing_ok=True)
    train_rows, val_rows = _fold_rows(inputs, fold)
    seed = mix_seed(config.train.seed, 0 if fold == "full" else int(fold) + 1)
    pl.seed_everything(seed, workers=True, verbose=False)
    bs = config.train.batch_size
    spe = steps_per_epoch(len(train_rows), bs, config.train.accumulate_grad_batches)
    task = get_task(config.task)
    module = task.build_module(config, inputs, spe)
    domains = _domain_batches(config, inputs, module, train_rows)
    pin = torch.cuda.is_available()
    counts = None
    if config.train.bootstrap:
        rng = np.random.default_rng(mix_seed(seed, 7))
        draws = rng.integers(0, len(train_rows), len(train_rows))
        counts = np.bincount(draws, minlength=len(train_rows))
    collate = task.collate
    train_ds = task.dataset(inputs, train_rows, train=True)

    def train_loader_for(replicas: int = 1):
        return make_loader(
            train_ds,
            bs,
            seed,
            True,
            inputs.workers,
            pin,
            counts=counts,
            replicas=replicas,
            collate_fn=collate,
            domains=domains,
        )

    train_loader = train_loader_for()
    val_loader = (
        make_loader(
            task.dataset(inputs, val_rows, train=False),
            bs * 2,
            seed,
            False,
            inputs.workers,
            pin,
            collate_fn=collate,
        )
        if len(val_rows)
        else None
    )
    logger = build_logger(config, inputs.workspace.root, config.run_name, fold_dir.name)
    trainer = _trainer(
        config,
        fold_dir,
        _callbacks(config, fold_dir, val_loader is not None, progress) + list(callbacks or []),
        logger,
        val_loader is not None,
        len(train_loader),
    )
    if trainer.world_size > 1:
        # Lightning shards this loader over the ranks; the last-batch rule must see one share.
        train_loader = train_loader_for(trainer.world_size)
    start = time.perf_counter()
    trainer.fit(
        module, train_loader, val_loader, ckpt_path=str(last) if resume and last.is_file() else None
    )
    result = _finish_fold(
        config, inputs, trainer, module, fold, fold_dir, val_rows, time.perf_counter() - start
    )
    log_artifacts(logger, [run_dir / "config.yaml", fold_dir / "history.csv"])
    if logger is not None and hasattr(logger, "finalize"):
        logger.finalize("success")
    return result


def _domain_batches(
    config: ExperimentConfig, inputs: RunInputs, module: pl.LightningModule, train_rows: np.ndarray
) -> np.ndarray | None:
    """Give the module the rows' domain ids; return the training rows' ids when batches
    must be domain-balanced (``train.domain_batches``; default on for CORAL and
    cross-domain MixStyle), else None."""
    mix = config.model.mixstyle
    algorithm = getattr(module, "algorithm", None)  # DG algorithms are classification's
    needs = bool(algorithm and algorithm.needs_domains) or (
        mix is not None and mix.mix == "crossdomain"
    )
    if getattr(inputs, "domain_codes", None) is None:
        if needs or config.train.domain_batches:
            what = (
                f"train.algorithm={config.train.algorithm}"
                if algorithm and algorithm.needs_domains
                else "model.mixstyle.mix=crossdomain"
                if needs
                else "train.domain_batches"
            )
            raise ConfigError(
                f"{what} needs domains, but this data has none: use data.layout: domains "
                "(ROOT/DOMAIN/CLASS/image), a 'domain' column in the CSV index or a built-in "
                "multi-domain set (fashion-mnist-domains, digits-domains)."
            )
        return None
    module.set_domains(inputs.domain_codes)
    balanced = config.train.domain_batches if config.train.domain_batches is not None else needs
    return inputs.domain_codes[train_rows] if balanced else None


def _finish_fold(
    config,
    inputs: RunInputs,
    trainer: pl.Trainer,
    module: pl.LightningModule,
    fold,
    fold_dir: Path,
    val_rows: np.ndarray,
    seconds: float,
) -> FoldResult:
    """Reload the best weights, write the task's OOF/test predictions, then ``done.json``.

    Under DDP every rank predicts its shard of the rows and rank 0 gathers them
    back into row order and writes everything; the other ranks wait for it and
    return the result rank 0 wrote to ``done.json``.
    """
    barrier()  # every rank loads the best.ckpt rank 0 saved last, not an older one
    best = fold_dir / "best.ckpt"
    if best.is_file():
        state = torch.load(best, map_location="cpu", weights_only=False)["state_dict"]
        module.load_state_dict(state)
    task = get_task(config.task)
    device = trainer.strategy.root_device
    metrics = task.write_predictions(module, inputs, config, fold, fold_dir, val_rows, device)
    result = None
    if is_rank_zero():
        history = pd.read_csv(fold_dir / "history.csv")
        best_epoch = None
        monitor = task.info.monitor
        if len(val_rows) and monitor in history and history[monitor].notna().any():
            column = history[monitor]
            at = column.idxmin() if task.info.mode == "min" else column.idxmax()
            best_epoch = int(history.loc[at, "epoch"])
        result = FoldResult(
            config.run_name,
            str(fold),
            "done",
            int(len(history)),
            best_epoch,
            metrics.get("val_loss"),
            metrics.get("val_acc"),
            round(seconds, 2),
            metrics={k: v for k, v in metrics.items() if k not in ("val_loss", "val_acc")},
        )
        atomic_write_text(fold_dir / "done.json", json.dumps(asdict(result), indent=1))
    # Also the closing barrier: no rank starts the next fold (or exits) before rank 0
    # has written every file, and all ranks report the same result.
    return broadcast_from_zero(result)


__all__ = ["FoldResult", "train", "train_fold", "predict_probs", "DataError"]
