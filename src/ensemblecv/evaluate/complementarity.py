"""Which models complement each other: the numbers a human used to pick ensemble members.

Built from predictions only (the prediction store's OOF rows, or any aligned
probabilities); nothing is retrained. Only each model's top-1 prediction is
kept, as an (M, N) integer array, so 20 models × 50k samples × 500 classes
costs a few MB rather than the probabilities' GBs.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property

import numpy as np
import pandas as pd

from ..errors import EnsembleCVError, unknown_name_message

#: Above this many classes, ``summary()`` leaves out the models × classes matrix.
MAX_SUMMARY_CLASSES = 100


class Complementarity:
    """Recall per class, disagreement, error correlation and oracle accuracy of M models.

    ``probas`` are (N, C) arrays aligned row by row with ``y``; ``classes``
    names the C columns.
    """

    def __init__(
        self,
        names: Sequence[str],
        probas: Sequence[np.ndarray],
        y: np.ndarray,
        classes: Sequence,
    ) -> None:
        self.names = list(names)
        self.y = np.asarray(y, dtype=np.int64)
        self.classes = [str(c) for c in classes]
        if len(self.names) != len(probas) or not self.names:
            raise EnsembleCVError(
                f"Complementarity needs one probability array per model name; got "
                f"{len(self.names)} names and {len(probas)} arrays."
            )
        shapes = {np.shape(p) for p in probas}
        if shapes != {(len(self.y), len(self.classes))}:
            raise EnsembleCVError(
                f"Every probability array must be ({len(self.y)}, {len(self.classes)}); "
                f"got {sorted(shapes)}."
            )
        self.pred = np.stack([np.asarray(p).argmax(1) for p in probas]).astype(np.int64)
        self.correct = self.pred == self.y[None, :]

    @classmethod
    def from_store(cls, store, names: Sequence[str] | None = None) -> Complementarity:
        """From a :class:`~ensemblecv.ensemble.PredictionStore`'s out-of-fold predictions."""
        names = list(names or store.names)
        return cls(names, [store.oof(n) for n in names], store.y, store.classes)

    def _index(self, model: str) -> int:
        if model not in self.names:
            raise EnsembleCVError(unknown_name_message("model", model, self.names))
        return self.names.index(model)

    @cached_property
    def support(self) -> np.ndarray:
        return np.bincount(self.y, minlength=len(self.classes))

    @cached_property
    def accuracy(self) -> pd.Series:
        return pd.Series(self.correct.mean(1), index=self.names, name="accuracy")

    @cached_property
    def recall_matrix(self) -> pd.DataFrame:
        """Models × classes recall; NaN for classes absent from ``y`` (undefined, not 0)."""
        hits = np.stack([np.bincount(self.y[c], minlength=len(self.classes)) for c in self.correct])
        with np.errstate(invalid="ignore", divide="ignore"):
            recall = hits / self.support[None, :]
        recall[:, self.support == 0] = np.nan
        return pd.DataFrame(recall, index=self.names, columns=self.classes)

    def worst_classes(self, model: str, n: int = 10) -> pd.DataFrame:
        """The model's ``n`` lowest-recall classes, with support and what they are mistaken for."""
        i = self._index(model)
        recall = self.recall_matrix.iloc[i].to_numpy()
        present = np.flatnonzero(~np.isnan(recall))
        worst = present[np.lexsort((present, recall[present]))][:n]
        confused, shares = [], []
        for c in worst:
            wrong = self.pred[i][(self.y == c) & ~self.correct[i]]
            top = np.bincount(wrong, minlength=len(self.classes)) if len(wrong) else None
            confused.append(None if top is None else self.classes[int(top.argmax())])
            shares.append(0.0 if top is None else float(top.max() / self.support[c]))
        return pd.DataFrame(
            {
                "class": [self.classes[c] for c in worst],
                "recall": recall[worst],
                "support": self.support[worst].astype(np.int64),
                "confused_with": confused,
                "confused_share": shares,
            }
        )

    @cached_property
    def disagreement(self) -> pd.DataFrame:
        """M × M share of samples where two models' top-1 predictions differ."""
        values = np.stack([(self.pred[i] != self.pred).mean(1) for i in range(len(self.names))])
        return pd.DataFrame(values, index=self.names, columns=self.names)

    @cached_property
    def error_correlation(self) -> pd.DataFrame:
        """M × M Pearson correlation of the 0/1 error indicators.

        Low correlation means the models fail on different samples — what
        averaging can fix. A model with no errors (or only errors) has no
        variance; its row and column are NaN rather than a division warning.
        """
        err = (~self.correct).astype(np.float64)
        centred = err - err.mean(1, keepdims=True)
        cov = centred @ centred.T / err.shape[1]
        std = np.sqrt(np.diag(cov))
        den = np.outer(std, std)
        corr = np.full(cov.shape, np.nan)
        np.divide(cov, den, out=corr, where=den > 0)
        return pd.DataFrame(np.clip(corr, -1.0, 1.0), index=self.names, columns=self.names)

    def oracle_of(self, models: Sequence[str]) -> float:
        """Share of samples at least one of ``models`` gets right: an ensemble's ceiling."""
        rows = [self._index(m) for m in models]
        return float(self.correct[rows].any(0).mean())

    @property
    def oracle_accuracy(self) -> float:
        """Share of samples that at least one model gets right."""
        return self.oracle_of(self.names)

    def helpers_for(self, model: str, n_classes: int = 5, n_models: int = 3) -> pd.DataFrame:
        """For each of ``model``'s weakest classes, the other models with the best recall there.

        One row per (class, helper): class, recall (of ``model``), helper,
        helper_recall, gain = helper_recall − recall.
        """
        i = self._index(model)
        rm = self.recall_matrix
        rows = []
        others = [j for j in range(len(self.names)) if j != i]
        for cls in self.worst_classes(model, n_classes)["class"]:
            col = rm[cls].to_numpy()
            ranked = sorted(others, key=lambda j: (-col[j], j))[:n_models]
            for j in ranked:
                rows.append((cls, col[i], self.names[j], col[j], col[j] - col[i]))
        return pd.DataFrame(
            rows, columns=["class", "recall", "helper", "helper_recall", "gain"]
        ).astype({"recall": float, "helper_recall": float, "gain": float})

    def summary(self, n_worst: int = 10, chosen: Sequence[str] | None = None) -> dict:
        """JSON-ready numbers (NaN → None). The models × classes matrix is left out above
        :data:`MAX_SUMMARY_CLASSES` classes; each model's worst classes stay."""
        out = {
            "models": self.names,
            "n_samples": int(len(self.y)),
            "n_classes": len(self.classes),
            "accuracy": _clean(self.accuracy.to_dict()),
            "oracle_accuracy": self.oracle_accuracy,
            "disagreement": _clean(self.disagreement.to_dict(orient="index")),
            "error_correlation": _clean(self.error_correlation.to_dict(orient="index")),
            "worst_classes": {
                m: _clean(self.worst_classes(m, n_worst).to_dict(orient="records"))
                for m in self.names
            },
            "helpers": {
                m: _clean(self.helpers_for(m, n_worst).to_dict(orient="records"))
                for m in self.names
            },
        }
        if len(self.classes) <= MAX_SUMMARY_CLASSES:
            out["recall_matrix"] = _clean(self.recall_matrix.to_dict(orient="index"))
        if chosen:
            known = [m for m in chosen if m in self.names]
            oracle = self.oracle_of(known) if known else None
            out["chosen"] = {"members": list(chosen), "oracle_accuracy": oracle}
        return out


def _clean(value):
    """NaN → None and numpy scalars → Python, recursively, so ``json.dumps`` writes valid JSON."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return None if np.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


__all__ = ["MAX_SUMMARY_CLASSES", "Complementarity"]
