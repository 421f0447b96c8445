"""The prediction store: every finished run's probabilities, aligned by sample id.

Runs write one ``oof_probs.npy`` per fold; the store stitches them into one
(N, C) float32 array per run in the order of the workspace's fold table, so
all runs line up row by row. Arrays are read with ``mmap_mode`` and assembled
on first use, one run at a time — M runs never become an (M, N, C) float64
block in memory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import EnsembleCVError
from ..workspace import Workspace


@dataclass
class RunRecord:
    """One run (model config) whose folds all finished."""

    name: str
    path: Path
    folds: list[str]
    has_full: bool
    config: dict = field(default_factory=dict)
    #: "" for plain predictions, "_tta" for the test-time-augmented variant ``NAME+tta``.
    variant: str = ""


class PredictionStore:
    """Out-of-fold and test probabilities of every complete run in a workspace."""

    def __init__(self, workspace: str | Path | Workspace) -> None:
        self.workspace = (
            workspace if isinstance(workspace, Workspace) else Workspace(Path(workspace))
        )
        if not self.workspace.is_prepared():
            raise EnsembleCVError(
                f"{self.workspace.root} is not a prepared workspace; train a model there first."
            )
        self.folds = self.workspace.load_folds()
        self.sample_ids = self.folds["sample_id"].to_numpy()
        self.y = self.folds["label"].to_numpy(dtype=np.int64)
        self.fold_of = self.folds["fold"].to_numpy(dtype=np.int64)
        self.n_folds = int(self.fold_of.max()) + 1
        self.classes = self.workspace.load_table().classes
        self.runs, self.incomplete = self._discover()
        self._oof_cache: dict[str, np.ndarray] = {}

    def _discover(self) -> tuple[dict[str, RunRecord], dict[str, str]]:
        import yaml

        runs, incomplete = {}, {}
        root = self.workspace.runs_dir
        for run_dir in sorted(root.iterdir()) if root.is_dir() else []:
            if not run_dir.is_dir():
                continue
            done = [
                k for k in range(self.n_folds) if (run_dir / f"fold_{k}" / "done.json").is_file()
            ]
            if len(done) < self.n_folds:
                missing = sorted(set(range(self.n_folds)) - set(done))
                incomplete[run_dir.name] = (
                    "pruned by its sweep"
                    if (run_dir / "pruned.json").is_file()
                    else f"folds {missing} not finished"
                )
                continue
            cfg_path = run_dir / "config.yaml"
            config = (
                yaml.safe_load(cfg_path.read_text(encoding="utf-8")) if cfg_path.is_file() else {}
            )
            record = RunRecord(
                run_dir.name,
                run_dir,
                [f"fold_{k}" for k in done],
                (run_dir / "full" / "done.json").is_file(),
                config,
            )
            runs[record.name] = record
            # A run trained with train.tta also stored mirrored predictions: it enters
            # the leaderboard as NAME+tta, so TTA's gain is measured on OOF like any choice.
            if all((run_dir / f / "oof_tta_probs.npy").is_file() for f in record.folds):
                runs[f"{record.name}+tta"] = RunRecord(
                    f"{record.name}+tta", run_dir, record.folds, record.has_full, config, "_tta"
                )
        return runs, incomplete

    @property
    def names(self) -> list[str]:
        return list(self.runs)

    def oof(self, name: str) -> np.ndarray:
        """(N, C) float32 out-of-fold probabilities of run ``name``, rows in fold-table order."""
        if name not in self._oof_cache:
            self._oof_cache[name] = self._assemble(self._record(name))
        return self._oof_cache[name]

    def _record(self, name: str) -> RunRecord:
        if name not in self.runs:
            hint = f" (incomplete: {self.incomplete[name]})" if name in self.incomplete else ""
            raise EnsembleCVError(
                f"No complete run {name!r} in {self.workspace.root}{hint}. Runs: {', '.join(self.runs) or 'none'}."
            )
        return self.runs[name]

    def _assemble(self, record: RunRecord) -> np.ndarray:
        position = pd.Series(np.arange(len(self.sample_ids)), index=self.sample_ids)
        out = np.full((len(self.sample_ids), len(self.classes)), np.nan, dtype=np.float32)
        for fold in record.folds:
            probs = np.load(record.path / fold / f"oof{record.variant}_probs.npy", mmap_mode="r")
            samples = record.path / fold / f"oof{record.variant}_samples.parquet"
            ids = pd.read_parquet(samples, columns=["sample_id"])["sample_id"]
            rows = position.reindex(ids.to_numpy()).to_numpy()
            if np.isnan(rows).any():
                raise EnsembleCVError(
                    f"{record.path / fold} has predictions for samples not in the fold table."
                )
            k = int(fold.split("_")[1])
            if (self.fold_of[rows.astype(np.int64)] != k).any():
                raise EnsembleCVError(
                    f"{record.path / fold} holds predictions for samples of other folds: it was "
                    "trained on a different split than this workspace's fold table."
                )
            out[rows.astype(np.int64)] = probs
        if np.isnan(out[:, 0]).any():
            raise EnsembleCVError(
                f"Run {record.name} lacks out-of-fold predictions for some samples."
            )
        return out

    def oof_list(self, names: list[str] | None = None) -> list[np.ndarray]:
        return [self.oof(n) for n in (names or self.names)]

    def test(self, name: str) -> tuple[np.ndarray, pd.DataFrame] | None:
        """Test probabilities of run ``name``: the refit-on-all model if any, else the fold mean."""
        record = self._record(name)
        parts = (
            [record.path / "full"] if record.has_full else [record.path / f for f in record.folds]
        )
        stem = f"test{record.variant}"
        if not all((p / f"{stem}_probs.npy").is_file() for p in parts):
            return None
        mean = None
        for p in parts:
            arr = np.load(p / f"{stem}_probs.npy").astype(np.float64)
            mean = arr if mean is None else mean + arr
        samples = pd.read_parquet(parts[0] / f"{stem}_samples.parquet")
        return (mean / len(parts)).astype(np.float32), samples

    def fold_result(self, name: str) -> list[dict]:
        record = self._record(name)
        return [json.loads((record.path / f / "done.json").read_text()) for f in record.folds]
