"""``ensemblecv evaluate``: metrics of every run and ensemble, on CV and on a labelled test set.

The CV numbers come from the prediction store (ensembles scored with nested
folds, as the leaderboard does), so nothing is retrained. The test numbers
come from running the saved models on ``data`` — or, without ``data``, from
the test predictions the runs stored when their test set had labels. Their
difference per model (the CV-vs-test *gap*) is what tells a leak (duplicates
or augmented copies straddling folds) from an ordinary distribution shift.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import yaml

from .._io import atomic_write_text
from ..ensemble.build import load_spec
from ..ensemble.leaderboard import build_method, nested_oof
from ..ensemble.store import PredictionStore
from ..errors import EnsembleCVError
from .complementarity import Complementarity, _clean
from .metrics import classification_report, most_confused

OUT_DIR = "evaluation"


def _spec_names(root: Path, ensemble: str | Sequence[str] | None) -> list[str]:
    if ensemble is None:
        return sorted(p.stem for p in (root / "ensembles").glob("*.yaml") if p.stem != "best")
    return ensemble.split(",") if isinstance(ensemble, str) else list(ensemble)


def _ensemble_specs(root: Path, ensemble, runs: list[str]) -> dict[str, dict]:
    """Specs to evaluate, by name; single-run specs are skipped (the run is already a row)."""
    specs = {}
    for name in _spec_names(root, ensemble):
        spec = load_spec(root, name)
        if spec.get("method") == "single":
            continue
        missing = [m for m in spec["members"] if m not in runs]
        if missing:
            warnings.warn(
                f"Ensemble {spec['name']!r} is left out: member run(s) {missing} are not "
                "complete in this workspace.",
                UserWarning,
                stacklevel=3,
            )
            continue
        specs[spec["name"]] = spec
    return specs


def _build(spec: dict):
    params = dict(spec.get("params") or {})
    return build_method(spec["method"], params.get("metric", "accuracy"), params)


def ensemble_oof(store: PredictionStore, spec: dict) -> np.ndarray:
    """The honest OOF probabilities of a spec: fold k predicted by a fit without fold k.

    Methods that choose members (selection, weights) re-choose them among all the
    spec's candidates in each fold — scoring only the members picked after
    seeing every fold would be optimistic.
    """
    names = [n for n in spec.get("candidates") or spec["members"] if n in store.runs]
    return nested_oof(_build(spec), store.oof_list(names), store.y, store.fold_of)


def _table_labels(table, classes: list[str]) -> np.ndarray:
    """The table's labels as indices into the workspace's class order.

    A folder or a ``class_name`` CSV may lack some classes, which shifts its
    own indices, so rows are matched by class name; a ``target``-only CSV
    already uses the workspace's numbering.
    """
    if not table.labelled:
        raise EnsembleCVError(
            f"{table.source} has no labels; evaluate needs a labelled test set "
            "(use `ensemblecv predict` for unlabelled images)."
        )
    labels = table.frame["label"].to_numpy(dtype=np.int64)
    if table.classes == classes:
        return labels
    names = table.frame["class_name"].astype(str)
    if names.isin(classes).all():
        index = {c: i for i, c in enumerate(classes)}
        return names.map(index).to_numpy(dtype=np.int64)
    numeric = table.classes == [str(i) for i in range(len(table.classes))]
    if numeric and labels.max() < len(classes):
        return labels
    unknown = sorted(set(names) - set(classes))[:10]
    raise EnsembleCVError(
        f"{table.source} has classes the workspace does not know: {unknown}. "
        f"Workspace classes: {', '.join(classes[:30])}."
    )


def _test_from_data(root: Path, data, runs: list[str], classes: list[str], progress):
    """Labels and each run's probabilities on ``data``, unreadable images left out (with a warning)."""
    from ..data.samples import SampleTable, load_samples
    from ..data.scan import scan_table
    from ..inference import predict_members

    table = data if isinstance(data, SampleTable) else load_samples(data)
    y = _table_labels(table, classes)
    ok = np.asarray(scan_table(table, progress=progress).ok, dtype=bool)
    if not ok.all():
        warnings.warn(
            f"{int((~ok).sum())} test image(s) cannot be read and are left out of the metrics.",
            UserWarning,
            stacklevel=3,
        )
        table, y = table.subset(ok), y[ok]
    members = predict_members(root, runs, table)
    return y, {m.run: m.probs for m in members}


def _test_from_store(store: PredictionStore, runs: list[str]):
    """Stored test predictions whose labels are all known, aligned to the first run's row order."""
    y, ids, probs = None, None, {}
    for name in runs:
        found = store.test(name)
        if found is None or "target" not in found[1] or (found[1]["target"] < 0).any():
            continue
        p, samples = found
        sid = samples["sample_id"].to_numpy()
        if ids is None:
            y, ids = samples["target"].to_numpy(dtype=np.int64), sid
        elif set(sid) != set(ids) or len(sid) != len(ids):
            warnings.warn(
                f"Run {name!r} predicted a different test set; left out of test metrics.",
                UserWarning,
                stacklevel=3,
            )
            continue
        position = {s: i for i, s in enumerate(sid)}
        probs[name] = p[[position[s] for s in ids]]
    return y, probs


def _combine_test(root: Path, spec: dict, probs: dict[str, np.ndarray]) -> np.ndarray | None:
    from ..inference import MemberPrediction, combine

    if not all(m in probs for m in spec["members"]):
        return None
    return combine(spec, root, [MemberPrediction(m, probs[m]) for m in spec["members"]])


def _gap_rows(cv: dict, test: dict, kinds: dict) -> list[dict]:
    rows = []
    for name, report in cv.items():
        test_acc = test[name]["accuracy"] if name in test else None
        rows.append(
            {
                "name": name,
                "kind": kinds[name],
                "cv_accuracy": report["accuracy"],
                "test_accuracy": test_acc,
                "gap": None if test_acc is None else report["accuracy"] - test_acc,
            }
        )
    return rows


def _best_spec(root: Path) -> dict | None:
    path = root / "ensembles" / "best.yaml"
    return yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else None


def evaluate_workspace(
    workspace: str | Path,
    data=None,
    ensemble: str | Sequence[str] | None = None,
    k: Sequence[int] = (1, 5),
    progress: Callable[[int], None] | None = None,
) -> dict:
    """Metrics of every run and ensemble on CV (and test), complementarity, files on disk.

    ``data``: a labelled test set (folder, CSV, built-in name or SampleTable);
    without it, the runs' stored labelled test predictions are used if any.
    ``ensemble``: spec name(s) to evaluate (default: every ``ensembles/*.yaml``).
    Returns a dict: ``cv`` and ``test`` ({name: classification_report}),
    ``kinds`` ({name: model | ensemble}), ``gap`` (rows of name, kind,
    cv_accuracy, test_accuracy, gap = cv − test), ``test_source``,
    ``ensembles`` (their specs), ``best`` (the automatic choice, if any),
    ``complementarity`` (its JSON summary on OOF) and ``output`` (the folder
    written: metrics.json, complementarity.json, per_class/*.csv, confusion/*.npy).
    """
    store = PredictionStore(workspace)
    root, runs, classes = store.workspace.root, store.names, store.classes
    if not runs:
        raise EnsembleCVError(f"No finished runs in {root}; run `ensemblecv train` first.")
    specs = _ensemble_specs(root, ensemble, runs)
    kinds = {**{n: "model" for n in runs}, **{n: "ensemble" for n in specs}}
    cv = {n: classification_report(store.y, store.oof(n), classes, k) for n in runs}
    for name, spec in specs.items():
        cv[name] = classification_report(store.y, ensemble_oof(store, spec), classes, k)
    if data is not None:
        test_y, probs = _test_from_data(root, data, runs, classes, progress)
        source = str(getattr(data, "source", data))
    else:
        test_y, probs = _test_from_store(store, runs)
        source = "stored test predictions" if probs else None
    for name, spec in specs.items():
        combined = _combine_test(root, spec, probs) if probs else None
        if combined is not None:
            probs[name] = combined
    test = {n: classification_report(test_y, p, classes, k) for n, p in probs.items()}
    best = _best_spec(root)
    comp = Complementarity.from_store(store, runs)
    result = {
        "workspace": str(root),
        "classes": list(classes),
        "kinds": kinds,
        "cv": cv,
        "test": test,
        "test_source": source,
        "gap": _gap_rows(cv, test, kinds),
        "ensembles": specs,
        "best": best,
        "complementarity": comp.summary(chosen=best["members"] if best else None),
    }
    result["output"] = str(write_evaluation(root / OUT_DIR, result))
    return result


def _scalars(report: dict, classes: list[str]) -> dict:
    out = {k: v for k, v in report.items() if k not in ("per_class", "confusion")}
    confused = most_confused(report["confusion"], classes, n=20)
    out["most_confused"] = confused.to_dict(orient="records")
    return _clean(out)


def write_evaluation(out: Path, result: dict) -> Path:
    """metrics.json, complementarity.json, per_class/<split>_<name>.csv, confusion/<split>_<name>.npy."""
    (out / "per_class").mkdir(parents=True, exist_ok=True)
    (out / "confusion").mkdir(exist_ok=True)
    classes = result["classes"]
    for split in ("cv", "test"):
        for name, report in result[split].items():
            report["per_class"].to_csv(out / "per_class" / f"{split}_{name}.csv", index=False)
            np.save(out / "confusion" / f"{split}_{name}.npy", report["confusion"])
    metrics = {
        "classes": classes,
        "kinds": result["kinds"],
        "test_source": result["test_source"],
        "cv": {n: _scalars(r, classes) for n, r in result["cv"].items()},
        "test": {n: _scalars(r, classes) for n, r in result["test"].items()},
        "gap": _clean(result["gap"]),
        "ensembles": {
            n: {"method": s["method"], "members": s["members"], "weights": s.get("weights")}
            for n, s in result["ensembles"].items()
        },
        "best": None if result["best"] is None else result["best"].get("name"),
    }
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=1, ensure_ascii=False))
    atomic_write_text(
        out / "complementarity.json",
        json.dumps(result["complementarity"], indent=1, ensure_ascii=False),
    )
    return out


__all__ = ["OUT_DIR", "ensemble_oof", "evaluate_workspace", "write_evaluation"]
