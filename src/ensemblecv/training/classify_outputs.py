"""Classification predictions of a finished fold: OOF and test probabilities in the store.

``oof_probs.npy`` + ``oof_samples.parquet`` hold exactly the fold's validation
rows, ``test_*`` the test set when there is one (only in ``full/`` when the same
``train`` call refits: the store reads nothing else), ``*_tta`` the mirrored
variant with ``train.tta: [hflip]``. Under DDP each rank predicts its shard
and rank 0 gathers and writes (see :mod:`.distributed`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .data import RowsDataset, make_loader
from .distributed import gather_shards, is_rank_zero, shard


def write_classify_predictions(module, inputs, config, fold, fold_dir: Path, val_rows, device):
    """Write the fold's OOF (and test) probabilities; return ``val_loss`` and ``val_acc``."""
    writer = is_rank_zero()
    bs = config.train.batch_size * 2
    hflip = "hflip" in config.train.tta
    metrics: dict[str, float] = {}
    if len(val_rows):
        probs, tta = _predict_rows(
            module, inputs.source, val_rows, inputs.targets, inputs, bs, device, hflip
        )
        if writer:
            _save_probs(fold_dir / "oof", probs, inputs, val_rows, fold)
            if tta is not None:
                _save_probs(fold_dir / "oof_tta", tta, inputs, val_rows, fold)
            targets = inputs.targets[val_rows]
            metrics["val_acc"] = float((probs.argmax(1) == targets).mean())
            metrics["val_loss"] = float(
                -np.log(np.clip(probs[np.arange(len(targets)), targets], 1e-12, None)).mean()
            )
    # With the refit to come, its test predictions are the run's (store.test reads full/
    # alone: one model per row, as CV scored); the fold models would predict for nothing.
    skip_test = fold != "full" and getattr(inputs, "refit_follows", False)
    if inputs.test_source is not None and not skip_test:
        rows = np.arange(len(inputs.test_table))
        probs, tta = _predict_rows(
            module, inputs.test_source, rows, inputs.test_targets, inputs, bs, device, hflip
        )
        if writer:
            _save_test_probs(fold_dir / "test", probs, inputs)
            if tta is not None:
                _save_test_probs(fold_dir / "test_tta", tta, inputs)
    return metrics


def _predict_rows(
    module,
    source,
    rows: np.ndarray,
    targets: np.ndarray,
    inputs,
    batch_size: int,
    device,
    hflip: bool,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Probabilities of ``rows`` (and with ``hflip`` their mirrored TTA, else None), in row order.

    Each DDP rank predicts ``rows[rank::world]``; the shards are gathered and
    re-interleaved on rank 0, so rank 0 gets every row exactly once, in the
    order of ``rows``, and the other ranks get None. With one process this is
    a plain :func:`predict_probs` over all rows.
    """
    ds = RowsDataset(source, shard(rows), targets, inputs.eval_tf)
    probs, tta = predict_views(module, ds, batch_size, device, inputs.workers, hflip)
    probs = gather_shards(probs, len(rows))
    return probs, (gather_shards(tta, len(rows)) if hflip else None)


@torch.no_grad()
def predict_views(
    module, dataset: RowsDataset, batch_size: int, device, workers: int, hflip: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """Plain probabilities and (with ``hflip``) the mirror-averaged ones, from one pass.

    One pass over the loader serves both stored views, so the plain view is not
    computed twice: TTA costs one extra forward per row, not two.
    """
    module.eval().to(device)
    loader = make_loader(dataset, batch_size, 0, False, workers, device.type == "cuda")
    plain, mirrored = [], []
    for x, _, _ in loader:
        x = x.to(device)
        p = torch.softmax(module(x).float(), dim=1)
        plain.append(p.cpu().numpy())
        if hflip:
            q = torch.softmax(module(torch.flip(x, dims=[3])).float(), dim=1)
            mirrored.append(((p + q) / 2).cpu().numpy())
    empty = np.zeros((0, module.num_classes), np.float32)
    probs = np.concatenate(plain).astype(np.float32) if plain else empty
    if not hflip:
        return probs, None
    return probs, (np.concatenate(mirrored).astype(np.float32) if mirrored else empty)


def predict_probs(
    module,
    dataset: RowsDataset,
    batch_size: int,
    device,
    workers: int,
    hflip: bool = False,
) -> np.ndarray:
    """Softmax probabilities (float32, rows in dataset order); ``hflip`` averages in the mirror."""
    probs, tta = predict_views(module, dataset, batch_size, device, workers, hflip)
    return tta if hflip else probs


def _save_probs(prefix: Path, probs: np.ndarray, inputs, rows: np.ndarray, fold) -> None:
    np.save(prefix.with_name(prefix.name + "_probs.npy"), probs)
    pd.DataFrame(
        {
            "sample_id": inputs.folds["sample_id"].to_numpy()[rows],
            "target": inputs.targets[rows],
            "fold": fold,
        }
    ).to_parquet(prefix.with_name(prefix.name + "_samples.parquet"), index=False)


def _save_test_probs(prefix: Path, probs: np.ndarray, inputs) -> None:
    np.save(prefix.with_name(prefix.name + "_probs.npy"), probs)
    pd.DataFrame(
        {
            "sample_id": inputs.test_table.frame["sample_id"].to_numpy(),
            "target": inputs.test_targets,
        }
    ).to_parquet(prefix.with_name(prefix.name + "_samples.parquet"), index=False)


def oof_score(run_dir: Path, n_folds: int, metric: str) -> float:
    """Accuracy or log loss over the OOF probabilities of all ``n_folds`` folds of a run."""
    probs, targets = [], []
    for k in range(n_folds):
        probs.append(np.load(run_dir / f"fold_{k}" / "oof_probs.npy"))
        targets.append(pd.read_parquet(run_dir / f"fold_{k}" / "oof_samples.parquet")["target"])
    p, y = np.concatenate(probs), np.concatenate(targets).astype(int)
    if metric == "accuracy":
        return float((p.argmax(1) == y).mean())
    return float(-np.log(np.clip(p[np.arange(len(y)), y], 1e-12, None)).mean())
