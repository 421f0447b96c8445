"""Predict new images with a run or an ensemble: ``ensemblecv predict``.

Images are decoded and resized once per preprocessing (channels, size, resize
mode) and kept in RAM within ``data.cache_ram_mb`` while every member model and
fold checkpoint runs over them — so an ensemble whose members share their
preprocessing decodes each image once, and memory stays bounded for large
test sets (full-size decoded images are never held). Fold models of one run are averaged; a run's
``refit_full`` model replaces its folds when present.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .config import ExperimentConfig
from .data.samples import SampleTable, load_samples
from .data.scan import scan_table
from .ensemble.build import load_spec
from .ensemble.leaderboard import build_method
from .ensemble.store import PredictionStore
from .errors import EnsembleCVError
from .training.classify_outputs import predict_views
from .training.data import ImageSource, RowsDataset
from .training.module import ClassifierModule

TTA_MODES = ("hflip",)


def load_module(ckpt: Path, device: torch.device) -> ClassifierModule:
    """Rebuild a trained module from its checkpoint without touching the network.

    The saved config may say ``pretrained: true``; the weights are in the
    checkpoint, so the hub is never asked again.
    """
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    hp = copy.deepcopy(state["hyper_parameters"])
    hp["config"]["model"]["pretrained"] = False
    module = ClassifierModule(**hp)
    module.load_state_dict(state["state_dict"])
    return module.eval().to(device)


def checkpoints(run_dir: Path) -> list[Path]:
    full = run_dir / "full" / "last.ckpt"
    if (run_dir / "full" / "done.json").is_file() and full.is_file():
        return [full]
    found = sorted(run_dir.glob("fold_*/best.ckpt")) or sorted(run_dir.glob("fold_*/last.ckpt"))
    if not found:
        raise EnsembleCVError(f"Run {run_dir.name} has no checkpoints in {run_dir}.")
    return found


@dataclass
class MemberPrediction:
    run: str
    probs: np.ndarray  # (N, C) float32, mean over the run's checkpoints (and TTA views)


def _predict_run(
    run_dir: Path,
    source: ImageSource,
    eval_tf,
    flip: bool,
    batch_size: int,
    device: torch.device,
) -> dict[bool, np.ndarray]:
    """The run's mean probabilities over its checkpoints: ``{False: plain}`` and, with
    ``flip``, ``{True: mirror-averaged}``, both from one pass of each checkpoint (the same
    :func:`~.training.classify_outputs.predict_views` that stored the training predictions)."""
    rows = np.arange(len(source))
    ds = RowsDataset(source, rows, np.zeros(len(rows), dtype=np.int64), eval_tf)
    total: dict[bool, np.ndarray] = {}
    ckpts = checkpoints(run_dir)
    for ckpt in ckpts:
        views = predict_views(load_module(ckpt, device), ds, batch_size, device, 0, flip)
        for view, probs in zip((False, True), views, strict=True):
            if probs is not None:
                probs = probs.astype(np.float64)
                total[view] = probs if view not in total else total[view] + probs
    return {view: probs / len(ckpts) for view, probs in total.items()}


def _member_views(member: str, tta: list[str] | None) -> tuple[str, bool]:
    """``(run, flip)``: "NAME+tta" is run NAME with its mirrored view averaged in."""
    run, member_tta = (member[:-4], ["hflip"]) if member.endswith("+tta") else (member, [])
    return run, "hflip" in set(tta or []) | set(member_tta)


def predict_members(
    workspace: Path,
    runs: list[str],
    table: SampleTable,
    tta: list[str] | None = None,
    batch_size: int = 256,
) -> list[MemberPrediction]:
    """Probabilities of each run for every row of ``table`` (decoded once per preprocessing).

    Members ``NAME`` and ``NAME+tta`` share one prediction of run NAME's plain view: each
    run's checkpoints are loaded and run once, for every view any member of it needs.
    """
    from .augment import build_resize, build_transforms, resolve_normalization
    from .workspace import Workspace

    bad = [t for t in tta or [] if t not in TTA_MODES]
    if bad:
        raise EnsembleCVError(f"Unknown TTA mode(s) {bad}; available: {', '.join(TTA_MODES)}.")
    ws = Workspace(Path(workspace))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    wanted: dict[str, bool] = {}
    for member in runs:
        run, flip = _member_views(member, tta)
        wanted[run] = wanted.get(run, False) or flip
    sources: dict[tuple, ImageSource] = {}
    by_run: dict[str, dict[bool, np.ndarray]] = {}
    for run, flip in wanted.items():
        cfg = run_config(ws.run_dir(run))
        data = cfg.data
        key = (data.channels, data.image_size, data.resize, data.interpolation, data.crop_pct)
        if key not in sources:
            sources[key] = ImageSource(
                table, data.channels, build_resize(data), data.image_size, data.cache_ram_mb
            )
        mean, std = resolve_normalization(data.normalize, data.channels, ws.normalization())
        _, eval_tf = build_transforms(data, cfg.augment, mean, std, include_resize=False)
        by_run[run] = _predict_run(ws.run_dir(run), sources[key], eval_tf, flip, batch_size, device)
    out = []
    for member in runs:
        run, flip = _member_views(member, tta)
        out.append(MemberPrediction(member, by_run[run][flip].astype(np.float32)))
    return out


def _run_config(run_dir: Path) -> dict:
    import yaml

    path = run_dir / "config.yaml"
    if not path.is_file():
        raise EnsembleCVError(f"{run_dir} has no config.yaml; is it a run folder?")
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def run_config(run_dir: Path) -> ExperimentConfig:
    """A run's saved config, validated and settled by its task (idempotent).

    Runs save resolved configs; settling again here also serves run folders
    written by hand or by older versions that left e.g. ``data.image_size`` to
    the model.
    """
    from .tasks import resolve_config

    return resolve_config(ExperimentConfig.model_validate(_run_config(run_dir)))


def resolve_spec(workspace: Path, name: str) -> dict:
    """An ensemble spec by name (``best`` by default), or a single run given by its name."""
    if (Path(workspace) / "ensembles" / f"{name}.yaml").is_file() or name == "best":
        return load_spec(workspace, name)
    if (Path(workspace) / "runs" / name / "config.yaml").is_file():
        return {
            "name": name,
            "method": "single",
            "members": [name],
            "weights": {name: 1.0},
            "params": {},
        }
    return load_spec(workspace, name)  # raises with the list of what exists


def combine(spec: dict, workspace: Path, members: list[MemberPrediction]) -> np.ndarray:
    """Apply the spec: weights for weighted averages, a refit on the stored OOF otherwise."""
    probs = [m.probs for m in members]
    if spec["method"] == "single":
        return probs[0].astype(np.float64)
    if spec.get("weights") and spec["method"] in (
        "ensemble_selection",
        "soft_voting",
        "weighted_average",
    ):
        w = np.array([spec["weights"][m.run] for m in members])
        return sum(wi * p.astype(np.float64) for wi, p in zip(w, probs))
    return fit_spec_method(spec, workspace, [m.run for m in members]).predict_proba(probs)


def fit_spec_method(spec: dict, workspace: Path, runs: list[str]):
    """The spec's method refitted on the stored OOF of ``runs`` (deterministic, so the same
    fit each time: stacking's meta-learner, or a rule's member count)."""
    store = PredictionStore(workspace)
    method = build_method(
        spec["method"], spec.get("params", {}).get("metric", "accuracy"), spec.get("params")
    )
    return method.fit(store.oof_list(runs), store.y)


def predict(
    workspace: str | Path,
    data: str | SampleTable,
    ensemble: str = "best",
    tta: list[str] | None = None,
    progress=None,
) -> tuple[pd.DataFrame, np.ndarray, SampleTable, list[str]]:
    """Predict ``data`` with ``ensemble``; returns (submission frame, probabilities, table, classes)."""
    from .data.samples import load_classes

    workspace = Path(workspace)
    classes = load_classes(workspace / "classes.json")
    spec = resolve_spec(workspace, ensemble)
    table = data if isinstance(data, SampleTable) else load_samples(data)
    scan = scan_table(table, progress=progress, stats=False)  # which rows decode, no statistics
    bad = ~scan.ok
    if bad.any():
        listing = "\n".join(f"  - {p}" for p in table.frame.loc[bad, "path"].head(10))
        warnings.warn(
            f"{int(bad.sum())} test image(s) cannot be read; their rows get no prediction:\n{listing}",
            UserWarning,
            stacklevel=2,
        )
    members = predict_members(workspace, list(spec["members"]), table, tta)
    probs = combine(spec, workspace, members)
    probs[bad] = np.nan
    return _submission(table, probs, classes, bad), probs, table, classes


def _submission(
    table: SampleTable, probs: np.ndarray, classes: list[str], bad: np.ndarray
) -> pd.DataFrame:
    """Input rows in order with their own columns, plus predicted ``target`` and ``class_name``."""
    if table.extra is not None:
        frame = table.extra.copy()
        frame.insert(min(1, len(frame.columns)), "image_path", table.frame["sample_id"].to_numpy())
    else:
        frame = pd.DataFrame({"image_path": table.frame["sample_id"].to_numpy()})
    pred = np.where(bad, -1, np.nan_to_num(probs, nan=0.0).argmax(1))
    frame["target"] = pd.array(np.where(bad, None, pred), dtype="Int64")
    frame["class_name"] = [None if b else classes[p] for p, b in zip(pred, bad)]
    return frame


def write_predictions(
    workspace: Path, data: str, out: Path, ensemble: str, options: dict, progress
) -> list[str]:
    """``ensemblecv predict`` for classification: the submission CSV at ``out`` (and class
    probabilities as Parquet when ``options['probs']``); lines to tell the user.
    ``progress(label, total)`` is a context manager giving a per-image ``advance``."""
    out = Path(out)
    if out.exists() and out.is_dir():
        raise EnsembleCVError(f"--out {out} is a folder; give a CSV file path.")
    if options.get("format") not in (None, "csv"):
        raise EnsembleCVError(
            f"--format {options['format']!r}: a classification workspace writes a CSV (format csv)."
        )
    tta = options.get("tta")
    table = load_samples(data)
    with progress("scan", len(table)) as advance:
        frame, p, table, classes = predict(
            workspace, table, ensemble, tta.split(",") if tta else None, progress=advance
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out, index=False)
    if options.get("probs") is not None:
        pf = pd.DataFrame(p.astype(np.float32), columns=[str(c) for c in classes])
        pf.insert(0, "sample_id", table.frame["sample_id"].to_numpy())
        pf.to_parquet(options["probs"], index=False)
    lines = [f"Wrote {len(frame)} predictions to [bold]{out}[/]"]
    if table.labelled:
        truth = table.frame["label"].to_numpy()
        ok = ~np.isnan(p).any(1)
        acc = float((p[ok].argmax(1) == truth[ok]).mean())
        lines.append(f"Accuracy on these labelled images: [bold]{acc:.4f}[/]")
    return lines
