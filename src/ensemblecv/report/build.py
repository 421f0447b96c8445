"""``ensemblecv report``: gather a workspace's results into ``report/index.html``.

Reads only what earlier stages wrote — ``leaderboard.csv``, ``ensembles/*.yaml``,
every run's ``history.csv`` and ``config.yaml``, the prediction store's
out-of-fold probabilities, ``audit/audit.json`` — and, when the best single
run has checkpoints, computes Grad-CAM for its worst samples. Nothing is
retrained. Figures go to ``report/img/`` beside the page.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from ..ensemble.store import PredictionStore
from ..evaluate.metrics import most_confident_errors
from . import figures
from .html import Figure, ReportContent, render_report

#: Ensemble methods whose spec is a weighted average of the members' probabilities.
WEIGHTED_METHODS = ("ensemble_selection", "soft_voting", "weighted_average")
MAX_GRADCAM = 8
MAX_PAIRS = 30
_BOARD_COLUMNS = [
    "name",
    "kind",
    "method",
    "accuracy",
    "balanced_accuracy",
    "log_loss",
    "optimistic_accuracy",
    "test_accuracy",
    "test_balanced_accuracy",
    "members",
]


class _Images:
    """PNG files in ``out/img``; :meth:`save` returns the path relative to the page."""

    def __init__(self, out: Path) -> None:
        self.out, self.dir = out, out / "img"
        self.dir.mkdir(parents=True, exist_ok=True)
        for old in [*self.dir.glob("*.png"), *self.dir.glob("gradcam/*.png")]:
            old.unlink()  # figures of an earlier report (runs may have been removed since)

    def save(self, name: str, png: bytes) -> str:
        (self.dir / f"{name}.png").write_bytes(png)
        return f"img/{name}.png"

    def rel(self, path: Path) -> str:
        return Path(os.path.relpath(path, self.out)).as_posix()


def _slug(text: str, i: int) -> str:
    return f"{i:03d}_" + re.sub(r"[^A-Za-z0-9._-]+", "_", text)[:50]


def _load_board(root: Path) -> pd.DataFrame | None:
    path = root / "leaderboard.csv"
    return pd.read_csv(path) if path.is_file() else None


def _board_table(board: pd.DataFrame | None) -> pd.DataFrame | None:
    if board is None:
        return None
    frame = board[[c for c in _BOARD_COLUMNS if c in board.columns]].copy()
    if "members" in frame:
        frame["members"] = [
            m if len(m) <= 80 else m[:77] + "..." for m in frame["members"].astype(str)
        ]
    frame.insert(0, "#", np.arange(1, len(frame) + 1))
    return frame


def _specs(root: Path) -> dict[str, dict]:
    specs = {}
    for path in sorted((root / "ensembles").glob("*.yaml")):
        if path.stem != "best":
            specs[path.stem] = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return specs


def _weights(specs: dict[str, dict], board: pd.DataFrame | None) -> pd.DataFrame | None:
    """Members × weighted ensembles (in leaderboard order), blank where a model is unused."""
    order = list(board["name"]) if board is not None else sorted(specs)
    cols = [
        n
        for n in order
        if specs.get(n, {}).get("method") in WEIGHTED_METHODS and specs[n].get("weights")
    ]
    if not cols:
        return None
    frame = pd.DataFrame({n: pd.Series(specs[n]["weights"], dtype=float) for n in cols})
    frame = frame.sort_values(cols[0], ascending=False, na_position="last")
    frame = frame.astype(object).where(frame > 0, "")
    frame.insert(0, "model", frame.index.astype(str))
    return frame.reset_index(drop=True)


def _reference(
    store: PredictionStore, board: pd.DataFrame | None, specs: dict[str, dict]
) -> tuple[str, np.ndarray, str]:
    """The best leaderboard entry whose OOF probabilities can be formed without refitting."""
    for name in list(board["name"]) if board is not None else store.names:
        if name in store.runs:
            return name, store.oof(name), f"out-of-fold predictions of run {name}"
        spec = specs.get(name, {})
        weights = spec.get("weights") or {}
        if spec.get("method") in WEIGHTED_METHODS and weights and set(weights) <= set(store.runs):
            total = sum(weights.values()) or 1.0
            probs = sum(w / total * store.oof(m).astype(np.float64) for m, w in weights.items())
            return (
                name,
                probs.astype(np.float32),
                (
                    f"out-of-fold predictions of ensemble {name} (its weights were fitted on all OOF "
                    "rows, so these are slightly optimistic; the leaderboard's score is the honest one)"
                ),
            )
    name = store.names[0]
    return name, store.oof(name), f"out-of-fold predictions of run {name}"


def _fold_key(path: Path) -> tuple[int, str]:
    tail = path.name.split("_")[-1]
    return (int(tail), "") if tail.isdigit() else (1 << 30, path.name)


def _histories(run_dir: Path) -> dict[str, pd.DataFrame]:
    out = {}
    for part in sorted((p for p in run_dir.iterdir() if p.is_dir()), key=_fold_key):
        if (part / "history.csv").is_file():
            frame = pd.read_csv(part / "history.csv")
            if len(frame):
                out[part.name] = frame
    return out


def _curves(root: Path, images: _Images) -> list[Figure]:
    """One figure per run (every run folder, finished or not) with all its folds."""
    runs = (
        sorted(p for p in (root / "runs").iterdir() if p.is_dir())
        if (root / "runs").is_dir()
        else []
    )
    out = []
    for i, run_dir in enumerate(runs):
        hist = _histories(run_dir)
        if not hist:
            continue
        best = [
            f"{h['val_acc'].max():.3f}"
            for h in hist.values()
            if "val_acc" in h and h["val_acc"].notna().any()
        ]
        epochs = max(len(h) for h in hist.values())
        caption = f"{run_dir.name}: {len(hist)} fold(s), up to {epochs} epochs"
        caption += f"; best val_acc per fold {', '.join(best)}" if best else ""
        src = images.save(
            f"curves_{_slug(run_dir.name, i)}", figures.training_curves_png(hist, run_dir.name)
        )
        out.append(Figure(src, f"training curves of {run_dir.name}", caption))
    return out


def _per_class(rep: dict, recall: pd.DataFrame, classes: list[str]) -> pd.DataFrame:
    """Per-class metrics of the reference predictions, hardest classes first."""
    cm = rep["confusion"].copy()
    np.fill_diagonal(cm, 0)
    other, count = cm.argmax(1), cm.max(1)
    pc = rep["per_class"]
    frame = pd.DataFrame(
        {
            "#": np.arange(len(classes)),
            "class": pc["class"],
            "support": pc["support"].astype(np.int64),
            "recall": pc["recall"].astype(float),
            "precision": pc["precision"].astype(float),
            "f1": pc["f1"].astype(float),
            "mean recall (models)": recall.mean(axis=0).to_numpy(dtype=float),
            "min recall (models)": recall.min(axis=0).to_numpy(dtype=float),
            "most often mistaken for": [classes[o] if c else "" for o, c in zip(other, count)],
            "times": count.astype(np.int64),
        }
    )
    return frame.sort_values(["recall", "#"], kind="stable").reset_index(drop=True)


def _errors(content: ReportContent, store: PredictionStore, ref: tuple, images: _Images) -> dict:
    """Confusion, most-confused pairs, recall heat-map and per-class table; returns the metrics."""
    from ..evaluate import Complementarity, classification_report, most_confused

    name, probs, note = ref
    classes = [str(c) for c in store.classes]
    rep = classification_report(store.y, probs, classes)
    comp = Complementarity.from_store(store, store.names)
    recall = comp.recall_matrix
    content.reference_note = f"Confusion matrix, per-class table and gallery use the {note}."
    shown = figures.most_confused_classes(rep["confusion"], figures.MAX_CONFUSION_CLASSES)
    if shown:
        png = figures.confusion_png(rep["confusion"], classes, shown)
        content.confusion = Figure(images.save("confusion", png), "confusion matrix")
    content.pairs = most_confused(rep["confusion"], classes, MAX_PAIRS)
    labels, matrix = list(recall.index), recall.to_numpy()
    if name not in store.runs:  # the ensemble's own row on top
        labels = [f"{name} (ensemble)", *labels]
        matrix = np.vstack([rep["per_class"]["recall"].to_numpy(dtype=float), matrix])
    png = figures.recall_heatmap_png(matrix, labels, classes)
    content.heatmap = Figure(images.save("recall_heatmap", png), "recall heat-map")
    content.per_class = _per_class(rep, recall, classes)
    return {"report": rep, "oracle": comp.oracle_accuracy, "name": name, "probs": probs}


def _gallery(
    content: ReportContent, store: PredictionStore, probs: np.ndarray, n: int, images: _Images
) -> None:
    idx = most_confident_errors(probs, store.y, n)
    if not len(idx):
        return
    paths = store.workspace.load_table().frame.set_index("sample_id")["path"]
    classes = [str(c) for c in store.classes]
    pred = probs[idx].argmax(1)
    ids = store.sample_ids[idx]
    items = [
        figures.GalleryItem(str(paths.get(s, "")), classes[t], classes[p], float(probs[i, p]))
        for s, i, t, p in zip(ids, idx, store.y[idx], pred)
    ]
    src = images.save("gallery", figures.gallery_png(items))
    content.gallery = Figure(src, "most confidently wrong images", "true → predicted (probability)")
    content.gallery_rows = pd.DataFrame(
        {
            "sample": ids.astype(str),
            "true": [it.true for it in items],
            "predicted": [it.pred for it in items],
            "p(predicted)": probs[idx, pred].astype(float),
            "p(true)": probs[idx, store.y[idx]].astype(float),
        }
    )


def _has_checkpoints(run_dir: Path) -> bool:
    return any(run_dir.glob("fold_*/*.ckpt")) or (run_dir / "full" / "last.ckpt").is_file()


def _best_single(store: PredictionStore, board: pd.DataFrame | None) -> str:
    names = list(board["name"]) if board is not None else []
    return next((n for n in names if n in store.runs), store.names[0])


def _gradcam(
    root: Path, store: PredictionStore, run: str, images: _Images
) -> tuple[list[Figure], str]:
    """Overlays for the best single run's most confidently wrong samples, or a note saying why not."""
    base = run.removesuffix("+tta")
    if not _has_checkpoints(root / "runs" / base):
        return [], f"No Grad-CAM: run {base} has no checkpoints in {root / 'runs' / base}."
    try:
        import pytorch_grad_cam  # noqa: F401
    except ImportError:
        return [], "No Grad-CAM: it needs pytorch-grad-cam (pip install grad-cam)."
    from ..explain import gradcam_overlays

    idx = most_confident_errors(store.oof(run), store.y, MAX_GRADCAM)
    if not len(idx):
        return [], f"No Grad-CAM: run {run} makes no out-of-fold errors."
    try:
        paths = gradcam_overlays(root, base, list(store.sample_ids[idx]), images.dir / "gradcam")
    except Exception as exc:  # a figure must not cost the whole report
        warnings.warn(f"Grad-CAM failed for run {base}: {exc}", UserWarning, stacklevel=3)
        return [], f"Grad-CAM failed for run {base}: {exc}"
    figs = [Figure(images.rel(p), f"Grad-CAM {p.stem}") for p in paths]
    return figs, (
        f"Run {base}, its {len(paths)} most confidently wrong out-of-fold samples, heat-map for the "
        "predicted class; each sample is explained by the fold model that predicted it."
    )


def _audit(root: Path, out: Path) -> tuple[dict | None, str | None]:
    import json

    path = root / "audit" / "audit.json"
    if not path.is_file():
        return None, None
    page = root / "audit" / "audit.html"
    link = Path(os.path.relpath(page, out)).as_posix() if page.is_file() else None
    return json.loads(path.read_text(encoding="utf-8")), link


def _configs(root: Path) -> dict[str, str]:
    runs = root / "runs"
    paths = sorted(runs.glob("*/config.yaml")) if runs.is_dir() else []
    return {p.parent.name: p.read_text(encoding="utf-8") for p in paths}


def build_report(
    workspace: str | Path,
    out: str | Path | None = None,
    gradcam: bool = True,
    max_gallery: int = 24,
) -> Path:
    """Write ``out/index.html`` (default ``WORKSPACE/report``) and its figures; returns the page."""
    root = Path(workspace)
    out = Path(out) if out is not None else root / "report"
    store = PredictionStore(root)
    images = _Images(out)
    board, specs = _load_board(root), _specs(root)
    content = ReportContent(f"ensemblecv report: {root.resolve().name}", [])
    content.leaderboard, content.weights = _board_table(board), _weights(specs, board)
    content.notes = [
        f"Run {n} is left out of the predictions: {why}." for n, why in store.incomplete.items()
    ]
    content.curves = _curves(root, images)
    content.facts = [
        ("samples", len(store.y)),
        ("classes", len(store.classes)),
        ("complete runs", len(store.names)),
        ("folds", store.n_folds),
    ]
    if store.names:
        metrics = _errors(content, store, _reference(store, board, specs), images)
        rep = metrics["report"]
        content.facts += [
            (f"accuracy: {metrics['name']}", f"{rep['accuracy']:.4f}"),
            ("ECE", f"{rep['ece']:.4f}"),
            ("oracle (any model right)", f"{metrics['oracle']:.4f}"),
        ]
        _gallery(content, store, metrics["probs"], max_gallery, images)
        run = _best_single(store, board)
        if gradcam:
            content.gradcam, content.gradcam_note = _gradcam(root, store, run, images)
        else:
            content.gradcam_note = "Grad-CAM was not requested."
    else:
        content.notes.append(
            "No complete run yet: errors, gallery and Grad-CAM appear once a run has finished all its folds."
        )
    content.audit, content.audit_link = _audit(root, out)
    content.configs = _configs(root)
    page = out / "index.html"
    page.write_text(render_report(content), encoding="utf-8")
    return page
