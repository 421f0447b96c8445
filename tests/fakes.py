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
