"""Helpers for tests that fabricate a workspace (runs written as the trainer writes them)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ensemblecv.config import load_config, to_yaml


def png(path: Path, color) -> Path:
    """A tiny solid-colour PNG, parents created."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), color).save(path)
    return path


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def probs(labels: np.ndarray, signal: float, rng, n_classes: int) -> np.ndarray:
    """float32 probabilities whose true class gets ``signal`` extra logit (higher = better model)."""
    logits = rng.normal(size=(len(labels), n_classes))
    logits[np.arange(len(labels)), labels] += signal
    return softmax(logits).astype(np.float32)


def config_yaml(name: str, data: Path, ws: Path, folds: int) -> str:
    """A valid resolved run config, as ``runs/<name>/config.yaml``."""
    base = {
        "workspace": str(ws),
        "name": name,
        "data": {"train": str(data), "folds": folds},
        "model": {"name": "mnist_cnn"},
    }
    return to_yaml(load_config(None, [], base=base))


def digits_config(workspace: Path, name: str, tracking: dict | None = None, **train):
    """A seconds-long real training config: 120 digits at 16 px, 2 folds, 1 epoch, mnist_cnn."""
    return load_config(
        None,
        [],
        base={
            "workspace": str(workspace),
            "name": name,
            "data": {
                "train": "digits",
                "image_size": 16,
                "folds": 2,
                "limit": 120,
                "num_workers": 0,
            },
            "model": {"name": "mnist_cnn"},
            "train": {"epochs": 1, "batch_size": 32, **train},
            "tracking": tracking or {"backend": "none"},
        },
    )


def write_run(
    ws: Path,
    name: str,
    oof: np.ndarray,
    config_text: str,
    rows_order=None,
    test=None,
    done_folds=None,
    fold_extra=None,
) -> None:
    """Write ``runs/<name>`` as the trainer does, from OOF probabilities in fold-table order.

    ``rows_order(rows)`` reorders each fold's rows (the store must realign them by
    ``sample_id``); ``test(k)`` returns ``(probs, labels)`` for fold k's test
    predictions; only ``done_folds`` (default: all) get ``done.json``;
    ``fold_extra(fold_dir, k)`` adds files (history, checkpoints).
    """
    import json

    import pandas as pd

    folds = pd.read_parquet(ws / "folds.parquet")
    run = ws / "runs" / name
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(config_text, encoding="utf-8")
    n_folds = int(folds["fold"].max()) + 1
    for k in range(n_folds):
        fold_dir = run / f"fold_{k}"
        fold_dir.mkdir()
        rows = np.flatnonzero(folds["fold"].to_numpy() == k)
        if rows_order is not None:
            rows = rows_order(rows)
        np.save(fold_dir / "oof_probs.npy", oof[rows])
        pd.DataFrame(
            {
                "sample_id": folds["sample_id"].to_numpy()[rows],
                "target": folds["label"].to_numpy()[rows],
                "fold": k,
            }
        ).to_parquet(fold_dir / "oof_samples.parquet", index=False)
        if test is not None:
            probs_k, labels = test(k)
            np.save(fold_dir / "test_probs.npy", probs_k)
            pd.DataFrame(
                {"sample_id": [f"test/{i}.png" for i in range(len(labels))], "target": labels}
            ).to_parquet(fold_dir / "test_samples.parquet", index=False)
        if fold_extra is not None:
            fold_extra(fold_dir, k)
        if done_folds is None or k in done_folds:
            (fold_dir / "done.json").write_text(
                json.dumps({"run": name, "fold": str(k), "status": "done"})
            )
