"""Likely mislabelled images, found with confident learning on out-of-fold probabilities.

Confident learning (Northcutt, Jiang & Chuang, JAIR 2021), the method cleanlab
implements, re-implemented here in a few lines of numpy (cleanlab is optional;
a parity test compares with it when installed):

* the threshold of class j is the mean predicted probability of j over the
  samples *labelled* j (how confident the model is, on average, about its own class);
* a sample "confidently belongs" to every class whose probability reaches that
  class's threshold; its guessed true class is that class (the most probable one
  when several qualify);
* the counts (given label, guessed class) form the confident joint; samples in
  its off-diagonal are flagged, unless the model's top prediction is the given label.

Every sample gets a label-quality score (``self_confidence`` = p(given label),
or cleanlab's ``normalized_margin`` = (p(given) - max other p + 1) / 2); issues
are ranked by it, lowest first. Probabilities are out-of-fold, so no model
scored an image it was trained on.

``write_exclusions`` writes the list a later ``train`` reads through
``data.exclude: PATH`` (a CSV ``sample_id,reason``): excluded samples leave the
training rows of every fold but keep their fold and their OOF predictions.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pandas as pd

from ._io import atomic_write_text
from .data.exclusions import EXCLUSION_COLUMNS, read_exclusions  # noqa: F401  (re-exported)
from .ensemble.build import load_spec
from .ensemble.leaderboard import build_method, nested_oof
from .ensemble.store import PredictionStore
from .errors import EnsembleCVError

__all__ = [
    "METHODS",
    "confident_joint",
    "find_label_issues",
    "flag_label_issues",
    "label_quality",
    "oof_probabilities",
    "read_exclusions",
    "write_exclusions",
    "write_label_issue_report",
]

METHODS = ("self_confidence", "normalized_margin")
#: Same tolerances as cleanlab, so both flag the same samples at the threshold's edge.
_EPS_THRESHOLD = 1e-6
_EPS_ARGMAX = 1e-6
_WEIGHTED = ("ensemble_selection", "soft_voting", "weighted_average")


# ---------------------------------------------------------------- confident learning


def _check(labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or len(probs) != len(labels):
        raise EnsembleCVError(f"probs must be (N, C) with N = {len(labels)}, got {probs.shape}.")
    if labels.min(initial=0) < 0 or labels.max(initial=0) >= probs.shape[1]:
        raise EnsembleCVError(
            "labels must be class indices in [0, C); unlabelled rows cannot be checked."
        )
    return labels, probs


def confident_joint(
    labels: np.ndarray, probs: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(joint (C, C) counts [given, guessed], guess (N,) with -1 where no class is confident,
    thresholds (C,))``. A class nobody is labelled with gets threshold 2 (never reached)."""
    labels, probs = _check(labels, probs)
    n_classes = probs.shape[1]
    counts = np.bincount(labels, minlength=n_classes)
    sums = np.zeros(n_classes)
    np.add.at(sums, labels, probs[np.arange(len(labels)), labels])
    thresholds = np.where(counts > 0, sums / np.maximum(counts, 1), 2.0).clip(min=2e-6)
    confident = probs >= thresholds - _EPS_THRESHOLD
    n_conf = confident.sum(1)
    guess = np.where(n_conf > 1, probs.argmax(1), confident.argmax(1))
    guess = np.where(n_conf > 0, guess, -1)
    joint = np.zeros((n_classes, n_classes), dtype=np.int64)
    seen = guess >= 0
    np.add.at(joint, (labels[seen], guess[seen]), 1)
    return joint, guess, thresholds


def label_quality(
    labels: np.ndarray, probs: np.ndarray, method: str = "self_confidence"
) -> np.ndarray:
    """(N,) score in [0, 1], low = likely mislabelled (cleanlab's ``get_label_quality_scores``)."""
    labels, probs = _check(labels, probs)
    rows = np.arange(len(labels))
    own = probs[rows, labels]
    if method == "self_confidence":
        return own
    if method == "normalized_margin":
        other = probs.copy()
        other[rows, labels] = -np.inf
        return (own - other.max(1) + 1) / 2
    raise EnsembleCVError(f"Unknown ranking method {method!r}; available: {', '.join(METHODS)}.")


def flag_label_issues(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """(N,) bool: the confident-learning flag (cleanlab's ``filter_by='confident_learning'``)."""
    labels, probs = _check(labels, probs)
    return _flag(labels, probs, confident_joint(labels, probs)[1])


def _flag(labels: np.ndarray, probs: np.ndarray, guess: np.ndarray) -> np.ndarray:
    """Off-diagonal of the confident joint, minus samples whose top prediction is the given label."""
    off = (guess >= 0) & (guess != labels)
    boosted = probs.copy()
    boosted[np.arange(len(labels)), labels] += _EPS_ARGMAX
    return off & (boosted.argmax(1) != labels)


# ---------------------------------------------------------------- probabilities of a workspace


def oof_probabilities(store: PredictionStore, run: str | None = None) -> tuple[np.ndarray, str]:
    """(N, C) OOF probabilities in fold-table order and what they came from.

    ``run``: a run name (``NAME+tta`` too), an ensemble spec name, ``best``
    (``ensembles/best.yaml``), or None: ``best`` when there is one, else the only run.
    Weighted ensembles average their members' OOF with the spec's weights; other
    methods give their nested OOF (fold k predicted by a fit without fold k).
    """
    root = store.workspace.root
    has_best = (root / "ensembles" / "best.yaml").is_file()
    if run is None:
        if has_best:
            run = "best"
        elif len(store.names) == 1:
            run = store.names[0]
        else:
            raise EnsembleCVError(
                f"{root} has {len(store.names)} finished runs and no ensembles/best.yaml; pick one "
                f"with --run ({', '.join(store.names) or 'none: train first'}) or run `ensemblecv ensemble`."
            )
    if run in store.runs and run != "best":
        return store.oof(run).astype(np.float64), run
    if run != "best" and not (root / "ensembles" / f"{run}.yaml").is_file():
        raise EnsembleCVError(
            f"No run or ensemble {run!r} in {root}. Runs: {', '.join(store.names) or 'none'}."
        )
    spec = load_spec(root, run)
    members = list(spec["members"])
    label = f"{run} ({spec['method']}: {', '.join(members)})"
    if spec["method"] == "single" or len(members) == 1:
        return store.oof(members[0]).astype(np.float64), label
    oofs = store.oof_list(members)
    if spec.get("weights") and spec["method"] in _WEIGHTED:
        w = np.array([float(spec["weights"][m]) for m in members])
        return sum(wi * p.astype(np.float64) for wi, p in zip(w / w.sum(), oofs)), label
    params = spec.get("params") or {}
    method = build_method(spec["method"], params.get("metric", "accuracy"), params)
    return nested_oof(method, oofs, store.y, store.fold_of), label


def find_label_issues(
    workspace: str | Path,
    run: str | None = None,
    method: str = "self_confidence",
    frac: float | None = None,
) -> pd.DataFrame:
    """One row per labelled sample, most likely label issue first.

    Columns: ``rank`` (1 = most suspicious), ``sample_id``, ``path``, ``fold``,
    ``given``, ``suggested`` (the confident guess, else the top prediction),
    ``self_confidence`` (p of the given class), ``suggested_prob``, ``score``
    (1 − label quality under ``method``; high = suspicious) and ``is_issue``
    (confident-learning flag, or with ``frac`` the ``frac`` × N top-ranked rows).
    ``df.attrs`` holds ``source`` (which probabilities), ``method`` and ``thresholds``.
    """
    if method not in METHODS:
        raise EnsembleCVError(
            f"Unknown ranking method {method!r}; available: {', '.join(METHODS)}."
        )
    if frac is not None and not 0.0 < frac <= 1.0:
        raise EnsembleCVError(f"frac must be within (0, 1], got {frac}.")
    store = PredictionStore(workspace)
    probs, source = oof_probabilities(store, run)
    labelled = store.y >= 0
    y, p = store.y[labelled], probs[labelled]
    _, guess, thresholds = confident_joint(y, p)
    quality = label_quality(y, p, method)
    rows = np.arange(len(y))
    suggested = np.where(guess >= 0, guess, p.argmax(1))
    classes = np.asarray(store.classes, dtype=object)
    paths = store.workspace.load_table().frame.set_index("sample_id")["path"]
    ids = store.sample_ids[labelled]
    df = pd.DataFrame(
        {
            "sample_id": ids,
            "path": paths.reindex(ids).to_numpy(),
            "fold": store.fold_of[labelled],
            "given": classes[y],
            "suggested": classes[suggested],
            "self_confidence": p[rows, y],
            "suggested_prob": p[rows, suggested],
            "score": 1.0 - quality,
            "is_issue": _flag(y, p, guess),
        }
    )
    # Stable sort: ties keep fold-table order, so the ranking is reproducible.
    df = df.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)
    df.insert(0, "rank", np.arange(1, len(df) + 1))
    if frac is not None:
        df["is_issue"] = df["rank"] <= max(1, int(round(frac * len(df))))
    df.attrs.update(
        source=source, method=method, thresholds=dict(zip(store.classes, thresholds.tolist()))
    )
    return df


# ---------------------------------------------------------------- exclusion list


def write_exclusions(df: pd.DataFrame, path: str | Path, top: int | None = None) -> Path:
    """Write the flagged rows (at most ``top``, best-ranked first) as CSV ``sample_id,reason``.

    This is the file ``data.exclude`` names for the next ``train``.
    """
    flagged = df[df["is_issue"]].sort_values("rank")
    if top is not None:
        flagged = flagged.head(int(top))
    reasons = [
        f"label issue: given {g}, looks like {s} (p={q:.2f})"
        for g, s, q in zip(flagged["given"], flagged["suggested"], flagged["suggested_prob"])
    ]
    out = pd.DataFrame({"sample_id": flagged["sample_id"].to_numpy(), "reason": reasons})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, out.to_csv(index=False, lineterminator="\n"))
    return path


# ---------------------------------------------------------------- gallery


def write_label_issue_report(df: pd.DataFrame, out: str | Path, top: int = 24) -> Path:
    """``OUT/label_issues.csv`` (every row), ``label_issues.png`` (top ``top`` thumbnails titled
    ``given → suggested (p)``) and ``label_issues.html``; returns the HTML path."""
    from .report.figures import GalleryItem, gallery_png  # matplotlib only when drawing

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "label_issues.csv", index=False)
    shown = df.head(top)
    items = [
        GalleryItem(str(r.path), str(r.given), str(r.suggested), float(r.suggested_prob))
        for r in shown.itertuples()
    ]
    (out / "label_issues.png").write_bytes(gallery_png(items))
    cells = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(str(v))}</td>"
            for v in (
                r.rank,
                r.sample_id,
                r.given,
                r.suggested,
                f"{r.self_confidence:.3f}",
                f"{r.suggested_prob:.3f}",
                f"{r.score:.3f}",
                "yes" if r.is_issue else "",
            )
        )
        + "</tr>"
        for r in shown.itertuples()
    )
    source = html.escape(str(df.attrs.get("source", "")))
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>Label issues</title>"
        "<style>body{font-family:sans-serif}td,th{padding:2px 8px;text-align:left}</style>"
        f"</head><body><h1>Label issues</h1><p>{int(df['is_issue'].sum())} of {len(df)} "
        f"samples flagged by confident learning on out-of-fold probabilities of {source}; "
        f"ranked by {html.escape(str(df.attrs.get('method', '')))}.</p>"
        "<img src='label_issues.png' alt='most likely label issues'>"
        "<table><tr><th>rank</th><th>sample</th><th>given</th><th>suggested</th>"
        "<th>p(given)</th><th>p(suggested)</th><th>score</th><th>flagged</th></tr>"
        f"{cells}</table></body></html>"
    )
    atomic_write_text(out / "label_issues.html", page)
    return out / "label_issues.html"
