"""``ensemblecv ensemble``: fit every method on the store, write leaderboard and specs."""

from __future__ import annotations

import warnings
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import yaml

from .._io import atomic_write_text
from ..errors import EnsembleCVError
from .leaderboard import DEFAULT_METHODS, ensemble_row, fit_method, rank, single_model_rows
from .methods import list_methods
from .store import PredictionStore


def _spec(
    name: str,
    method: str,
    params: dict,
    members: list[str],
    weights,
    scores: dict,
    candidates: list[str] | None = None,
) -> dict:
    """A reproducible description: refitting ``method(**params)`` on the members' OOF gives it back."""
    return {
        "name": name,
        "method": method,
        "params": {
            k: v
            for k, v in params.items()
            if isinstance(v, (int, float, str, bool, list, type(None)))
        },
        "members": list(members),
        # The runs the method chose from: refitting on them reproduces the members.
        "candidates": list(candidates or members),
        "weights": None if weights is None else {m: float(w) for m, w in zip(members, weights)},
        "scores": scores,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def build_ensembles(
    workspace: str | Path,
    methods: list[str] | None = None,
    metric: str = "accuracy",
    runs: list[str] | None = None,
) -> pd.DataFrame:
    """Score every run and every ensemble method; write ``leaderboard.csv`` and ``ensembles/*.yaml``.

    Returns the leaderboard, best first by the honest (nested) CV ``metric``.
    """
    store = PredictionStore(workspace)
    for name, why in store.incomplete.items():
        warnings.warn(f"Run {name!r} is left out: {why}.", UserWarning, stacklevel=2)
    names = runs or store.names
    if not names:
        raise EnsembleCVError(
            f"No finished runs in {store.workspace.root}; run `ensemblecv train` first."
        )
    methods = methods or DEFAULT_METHODS
    clash = sorted(set(names) & (set(methods) | {"best"}))
    if clash:
        raise EnsembleCVError(
            f"Run name(s) {clash} collide with ensemble names; their specs would overwrite each "
            "other. Rename those runs (name=...) or leave those methods out (--methods)."
        )
    unknown = [m for m in methods if m not in list_methods()]
    if unknown:
        raise EnsembleCVError(
            f"Unknown ensemble method(s) {unknown}; available: {', '.join(list_methods())}."
        )
    warn_fold_mean_members(store, names)
    rows = [r for r in single_model_rows(store) if r["name"] in names]
    specs = {
        r["name"]: _spec(r["name"], "single", {}, [r["name"]], [1.0], _scores_of(r)) for r in rows
    }
    if len(names) >= 2:
        for method in methods:
            result = fit_method(store, method, metric, names)
            row = ensemble_row(result)
            rows.append(row)
            specs[result.name] = _spec(
                result.name,
                method,
                result.params,
                result.members,
                result.weights,
                _scores_of(row),
                names,
            )
    board = rank(pd.DataFrame(rows), metric)
    out = store.workspace.root
    board.to_csv(out / "leaderboard.csv", index=False)
    ens_dir = out / "ensembles"
    ens_dir.mkdir(exist_ok=True)
    for name, spec in specs.items():
        atomic_write_text(
            ens_dir / f"{name}.yaml", yaml.safe_dump(spec, sort_keys=False, allow_unicode=True)
        )
    best = dict(specs[board.loc[0, "name"]], alias="best")
    atomic_write_text(
        ens_dir / "best.yaml", yaml.safe_dump(best, sort_keys=False, allow_unicode=True)
    )
    return board


def fold_mean_runs(store: PredictionStore, names: list[str]) -> list[str]:
    """The runs among ``names`` whose test predictions average their fold models (no refit).

    A ``NAME+tta`` variant counts as its run ``NAME``.
    """
    return sorted(
        {store.runs[n].name.removesuffix("+tta") for n in names if not store.runs[n].has_full}
    )


def warn_fold_mean_members(store: PredictionStore, names: list[str]) -> None:
    """One warning naming the runs whose test predictions follow another protocol than CV.

    CV scores one model per out-of-fold row. A run without a refit predicts the test set
    (and ``predict`` new images) with the mean of its K fold models, a bag CV never scored:
    its test accuracy runs above its CV and ensembles of such runs (seed bags above all)
    gain less on test than CV ranks them for. See docs/cv-protocol.md.
    """
    bagged = fold_mean_runs(store, names)
    if not bagged:
        return
    listed = ", ".join(bagged[:10]) + (f" and {len(bagged) - 10} more" if len(bagged) > 10 else "")
    warnings.warn(
        f"The leaderboard ranks by CV, one model per out-of-fold row, but {len(bagged)} run(s) "
        f"predict test and new images with the mean of their {store.n_folds} fold models "
        f"(no refit on all data): {listed}. Their test scores run above CV and ensembles of "
        "them gain less on test than CV ranks them for. Train them with train.refit_full=true "
        "(under a new name) or leave them out with --runs.",
        UserWarning,
        stacklevel=3,
    )


def _scores_of(row: dict) -> dict:
    groups = {"cv": {}, "optimistic": {}, "test": {}}
    for k, v in row.items():
        if k in ("accuracy", "balanced_accuracy", "log_loss"):
            groups["cv"][k] = float(v)
        elif k.startswith("optimistic_"):
            groups["optimistic"][k[len("optimistic_") :]] = float(v)
        elif k.startswith("test_"):
            groups["test"][k[len("test_") :]] = float(v)
    return {k: v for k, v in groups.items() if v}


def load_spec(workspace: str | Path, name: str = "best") -> dict:
    path = Path(workspace) / "ensembles" / f"{name}.yaml"
    if not path.is_file():
        available = sorted(p.stem for p in (Path(workspace) / "ensembles").glob("*.yaml"))
        raise EnsembleCVError(
            f"No ensemble {name!r} in {workspace}. Available: {', '.join(available) or 'none (run `ensemblecv ensemble`)'}."
        )
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def build_named_ensemble(
    workspace: str | Path,
    name: str,
    method: str,
    members: list[str],
    metric: str = "accuracy",
) -> pd.DataFrame:
    """Fit ``method`` on the OOF predictions of ``members`` only, as the ensemble ``name``.

    For ensembles of a chosen family, e.g. the weight-averaged runs of every seed
    (an *ensemble of averages*). Adds (or replaces) its row in ``leaderboard.csv`` and
    writes ``ensembles/<name>.yaml``; returns the re-ranked leaderboard.
    """
    store = PredictionStore(workspace)
    missing = [m for m in members if m not in store.names]
    if missing:
        raise EnsembleCVError(
            f"Ensemble {name!r}: run(s) {missing} are not finished in {store.workspace.root}; "
            f"finished: {', '.join(store.names) or 'none'}."
        )
    if name in store.names or name == "best" or name in list_methods():
        raise EnsembleCVError(f"Ensemble name {name!r} collides with a run or method name.")
    warn_fold_mean_members(store, list(members))
    result = fit_method(store, method, metric, list(members))
    row = dict(ensemble_row(result), name=name)
    out = store.workspace.root
    board_path = out / "leaderboard.csv"
    board = pd.read_csv(board_path) if board_path.is_file() else pd.DataFrame()
    if len(board):
        board = board[board["name"] != name]
    board = rank(pd.concat([board, pd.DataFrame([row])], ignore_index=True), metric)
    board.to_csv(board_path, index=False)
    ens_dir = out / "ensembles"
    ens_dir.mkdir(exist_ok=True)
    spec = _spec(
        name, method, result.params, result.members, result.weights, _scores_of(row), members
    )
    atomic_write_text(
        ens_dir / f"{name}.yaml", yaml.safe_dump(spec, sort_keys=False, allow_unicode=True)
    )
    if board.loc[0, "name"] == name:
        atomic_write_text(
            ens_dir / "best.yaml",
            yaml.safe_dump(dict(spec, alias="best"), sort_keys=False, allow_unicode=True),
        )
    return board
