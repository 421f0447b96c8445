"""Evaluation: metrics against scikit-learn/torchmetrics, complementarity against loops,
``evaluate_workspace`` and the CLI on a fabricated workspace (nothing is trained).

The workspace helpers are copied from ``test_ensemble_workspace.py``: a real
workspace prepared from a tiny ImageFolder, with runs written the way the
trainer writes them, so every number can be recomputed here directly.
"""

from __future__ import annotations

import inspect
import json
import warnings
from pathlib import Path

import fakes  # tests/fakes.py
import numpy as np
import pandas as pd
import pytest
import sklearn.metrics as skm
import torch
import typer
from PIL import Image
from torchmetrics.classification import MulticlassCalibrationError
from typer.testing import CliRunner

from ensemblecv.ensemble import PredictionStore, build_ensembles, nested_oof
from ensemblecv.ensemble.leaderboard import build_method
from ensemblecv.errors import EnsembleCVError
from ensemblecv.evaluate import (
    Complementarity,
    classification_report,
    evaluate_workspace,
    most_confused,
)
from ensemblecv.inference import MemberPrediction
from ensemblecv.workspace import prepare_workspace

CLASSES = ["ant", "bee", "cow"]
PER_CLASS = 6
FOLDS = 3
N_TEST = 6
RUNS = {"cnn_a": 1.5, "cnn_b": 1.0, "cnn_c": 0.5}  # run name → signal of its logits


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


# ---------------------------------------------------------------- metrics vs references


def _random_case(seed: int, n: int, c: int, absent: tuple[int, ...], never: tuple[int, ...]):
    """Labels missing ``absent`` classes; probabilities that never put ``never`` on top."""
    rng = np.random.default_rng(seed)
    present = np.setdiff1d(np.arange(c), absent)
    y = rng.choice(present, size=n)
    logits = rng.normal(size=(n, c))
    logits[np.arange(n), y] += 1.0
    logits[:, list(never)] = -30.0
    p = np.exp(logits)
    return y, p / p.sum(1, keepdims=True)


def _sk_log_loss(y, p, labels):
    """scikit-learn ≥ 1.9 renamed ``y_pred`` to ``y_proba``; call whichever exists."""
    if "y_proba" in inspect.signature(skm.log_loss).parameters:
        return skm.log_loss(y, y_proba=p, labels=labels)
    return skm.log_loss(y, p, labels=labels)


CASES = [
    dict(seed=0, n=300, c=7, absent=(2, 5), never=(5,)),  # 2 predicted but absent; 5 neither
    dict(seed=1, n=40, c=12, absent=(0, 11), never=()),
    dict(seed=2, n=200, c=4, absent=(), never=(3,)),  # 3 present but never predicted
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"seed{c['seed']}-C{c['c']}")
def test_report_matches_scikit_learn(case):
    y, p = _random_case(**case)
    c = case["c"]
    labels = list(range(c))
    pred = p.argmax(1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # absent classes must not warn here
        r = classification_report(y, p, [f"k{i}" for i in labels], k=(1, 3, 5, c))
    assert r["n"] == len(y)
    assert r["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert set(r["top_k"]) == {k for k in (1, 3, 5) if k < c}
    for k, acc in r["top_k"].items():
        assert acc == pytest.approx(skm.top_k_accuracy_score(y, p, k=k, labels=labels))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-learn warns about predicted-but-absent classes
        assert r["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    for avg in ("macro", "weighted"):
        ps, rs, fs, _ = skm.precision_recall_fscore_support(y, pred, average=avg, zero_division=0)
        assert r[f"precision_{avg}"] == pytest.approx(ps)
        assert r[f"recall_{avg}"] == pytest.approx(rs)
        assert r[f"f1_{avg}"] == pytest.approx(fs)
    ps, rs, fs, support = skm.precision_recall_fscore_support(
        y, pred, labels=labels, average=None, zero_division=0
    )
    per = r["per_class"]
    assert list(per.columns) == ["class", "precision", "recall", "f1", "support"]
    assert per["class"].tolist() == [f"k{i}" for i in labels]
    np.testing.assert_allclose(per["precision"], ps)
    np.testing.assert_allclose(per["recall"], rs)
    np.testing.assert_allclose(per["f1"], fs)
    np.testing.assert_array_equal(per["support"], support)
    np.testing.assert_array_equal(r["confusion"], skm.confusion_matrix(y, pred, labels=labels))
    assert r["log_loss"] == pytest.approx(_sk_log_loss(y, p, labels), rel=1e-6)
    ece = MulticlassCalibrationError(num_classes=c, n_bins=15, norm="l1")
    expected = ece(torch.from_numpy(p).float(), torch.from_numpy(y)).item()
    assert r["ece"] == pytest.approx(expected, abs=1e-5)


def test_ece_with_full_confidence_matches_torchmetrics():
    """Confidence exactly 1.0 has its own bin in torchmetrics; same here."""
    rng = np.random.default_rng(3)
    y = rng.integers(0, 4, 50)
    p = np.eye(4)[rng.integers(0, 4, 50)]
    p[:20] = rng.dirichlet(np.ones(4), 20)
    r = classification_report(y, p, list("abcd"))
    tm = MulticlassCalibrationError(num_classes=4, n_bins=15, norm="l1")
    assert r["ece"] == pytest.approx(
        tm(torch.from_numpy(p).float(), torch.from_numpy(y)).item(), abs=1e-5
    )


def test_report_refuses_mismatched_shapes():
    with pytest.raises(EnsembleCVError, match=r"do not match 3 labels and 4 classes"):
        classification_report(np.zeros(3, int), np.ones((3, 2)), list("abcd"))
    with pytest.raises(EnsembleCVError, match=r"class indices in \[0, 1\]"):
        classification_report(np.array([0, 2]), np.ones((2, 2)) / 2, list("ab"))


def test_most_confused_matches_loops():
    y, p = _random_case(seed=4, n=200, c=5, absent=(1,), never=())
    cm = classification_report(y, p, list("abcde"))["confusion"]
    table = most_confused(cm, list("abcde"), n=6)
    cells = sorted(
        ((cm[i, j], i, j) for i in range(5) for j in range(5) if i != j and cm[i, j] > 0),
        key=lambda t: (-t[0], t[1], t[2]),
    )[:6]
    assert table["true"].tolist() == ["abcde"[i] for _, i, _ in cells]
    assert table["predicted"].tolist() == ["abcde"[j] for _, _, j in cells]
    assert table["count"].tolist() == [n for n, _, _ in cells]
    np.testing.assert_allclose(table["share"], [n / cm[i].sum() for n, i, _ in cells])


# ---------------------------------------------------------------- complementarity vs loops


def _three_models(seed: int = 5, n: int = 80, c: int = 5):
    y, _ = _random_case(seed, n, c, absent=(4,), never=())
    rng = np.random.default_rng(seed)
    probas = []
    for signal in (2.0, 1.0, 0.3):
        logits = rng.normal(size=(n, c))
        logits[np.arange(n), y] += signal
        probas.append(np.exp(logits) / np.exp(logits).sum(1, keepdims=True))
    return ["m0", "m1", "m2"], probas, y, [f"c{i}" for i in range(c)]


def test_complementarity_matches_direct_computation():
    names, probas, y, classes = _three_models()
    comp = Complementarity(names, probas, y, classes)
    preds = [p.argmax(1) for p in probas]
    for i, pred in enumerate(preds):
        for c in range(len(classes)):
            rows = [t for t in range(len(y)) if y[t] == c]
            got = comp.recall_matrix.iloc[i, c]
            if rows:
                assert got == pytest.approx(sum(pred[t] == c for t in rows) / len(rows))
            else:
                assert np.isnan(got)  # class absent from y: recall undefined
        for j, other in enumerate(preds):
            expect = sum(pred[t] != other[t] for t in range(len(y))) / len(y)
            assert comp.disagreement.iloc[i, j] == pytest.approx(expect)
    errors = np.array([[pred[t] != y[t] for t in range(len(y))] for pred in preds], dtype=float)
    np.testing.assert_allclose(comp.error_correlation.to_numpy(), np.corrcoef(errors), atol=1e-12)
    oracle = sum(any(pred[t] == y[t] for pred in preds) for t in range(len(y))) / len(y)
    assert comp.oracle_accuracy == pytest.approx(oracle)
    assert comp.oracle_of(["m1"]) == pytest.approx(np.mean(preds[1] == y))
    worst = comp.worst_classes("m2", n=2)
    by_recall = comp.recall_matrix.loc["m2"].dropna().sort_values(kind="stable")
    assert worst["class"].tolist() == by_recall.index[:2].tolist()
    assert worst["support"].tolist() == [int((y == classes.index(c)).sum()) for c in worst["class"]]


def test_error_correlation_is_nan_for_a_perfect_model():
    names, probas, y, classes = _three_models()
    perfect = np.eye(len(classes))[y]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        corr = Complementarity([*names, "oracle"], [*probas, perfect], y, classes).error_correlation
    assert corr["oracle"].isna().all() and corr.loc["oracle"].isna().all()
    assert not corr.loc[names, names].isna().any().any()


def test_helpers_for_picks_the_model_strong_on_the_weak_class():
    """m0 misses class 2 entirely; m2 gets it right, m1 half the time."""
    y = np.repeat(np.arange(4), 10)
    eye = np.eye(4)
    p0 = eye[np.where(y == 2, 0, y)]
    p1 = eye[np.where((y == 2) & (np.arange(40) % 2 == 0), 1, y)]
    p2 = eye[np.where(y == 3, 1, y)]
    comp = Complementarity(["m0", "m1", "m2"], [p0, p1, p2], y, list("abcd"))
    helpers = comp.helpers_for("m0", n_classes=1, n_models=2)
    assert helpers["class"].tolist() == ["c", "c"]
    assert helpers["helper"].tolist() == ["m2", "m1"]
    np.testing.assert_allclose(helpers["helper_recall"], [1.0, 0.5])
    np.testing.assert_allclose(helpers["gain"], [1.0, 0.5])
    assert comp.worst_classes("m0", n=1)["confused_with"].tolist() == ["a"]
    summary = comp.summary(chosen=["m0", "m2"])
    assert summary["chosen"]["oracle_accuracy"] == pytest.approx(1.0)
    json.dumps(summary, allow_nan=False)  # NaN-free, plain JSON
    with pytest.raises(EnsembleCVError, match="Unknown model 'm9'"):
        comp.helpers_for("m9")


# ---------------------------------------------------------------- fabricated workspace


_png, _softmax = fakes.png, fakes.softmax


def _probs(labels: np.ndarray, signal: float, rng) -> np.ndarray:
    return fakes.probs(labels, signal, rng, len(CLASSES))


def _config_yaml(name: str, data: Path, ws: Path) -> str:
    return fakes.config_yaml(name, data, ws, FOLDS)


def _fake_run(ws: Path, data: Path, name: str, signal: float, seed: int, test_signal=None):
    """Write a run as the trainer does (shuffled fold rows, labelled test predictions)."""
    rng = np.random.default_rng(seed)
    folds = pd.read_parquet(ws / "folds.parquet")
    oof = _probs(folds["label"].to_numpy(), signal, rng)
    test_labels = np.arange(N_TEST) % len(CLASSES)
    t_signal = signal if test_signal is None else test_signal
    fakes.write_run(
        ws,
        name,
        oof,
        _config_yaml(name, data, ws),
        rows_order=rng.permutation,
        test=lambda k: (_probs(test_labels, t_signal, rng), test_labels),
    )
    return oof


@pytest.fixture
def workspace(tmp_path) -> tuple[Path, Path]:
    """(workspace, data folder) with three fake runs and two fitted ensembles."""
    data = tmp_path / "data"
    for c, name in enumerate(CLASSES):
        for i in range(PER_CLASS):
            _png(data / name / f"{i}.png", (70 * c + 10, 35 * i + 5, 99))
    ws = tmp_path / "ws"
    prepare_workspace(ws, str(data), folds=FOLDS, seed=0, workers=0)
    for seed, (name, signal) in enumerate(RUNS.items()):
        _fake_run(ws, data, name, signal, seed)
    build_ensembles(ws, methods=["soft_voting", "ensemble_selection"], metric="accuracy")
    return ws, data


def _acc(y, p) -> float:
    return float((np.asarray(p).argmax(1) == y).mean())


def test_evaluate_workspace_cv_test_and_gap_from_stored_predictions(workspace):
    ws, _ = workspace
    result = evaluate_workspace(ws)
    store = PredictionStore(ws)
    test_y = np.arange(N_TEST) % len(CLASSES)
    assert result["test_source"] == "stored test predictions"
    assert result["kinds"] == {
        **{n: "model" for n in RUNS}, "ensemble_selection": "ensemble", "soft_voting": "ensemble"
    }  # fmt: skip
    gap = {r["name"]: r for r in result["gap"]}
    for name in RUNS:
        assert result["cv"][name]["accuracy"] == pytest.approx(_acc(store.y, store.oof(name)))
        assert gap[name]["test_accuracy"] == pytest.approx(_acc(test_y, store.test(name)[0]))
    for name in ("soft_voting", "ensemble_selection"):
        spec = result["ensembles"][name]
        method = build_method(spec["method"], "accuracy", spec["params"])
        honest = nested_oof(method, store.oof_list(spec["members"]), store.y, store.fold_of)
        assert result["cv"][name]["accuracy"] == pytest.approx(_acc(store.y, honest))
    mean_test = np.mean([store.test(n)[0].astype(np.float64) for n in RUNS], axis=0)
    assert gap["soft_voting"]["test_accuracy"] == pytest.approx(_acc(test_y, mean_test))
    for row in result["gap"]:
        assert row["gap"] == pytest.approx(row["cv_accuracy"] - row["test_accuracy"])
    assert result["best"]["name"] in result["cv"]
    comp = result["complementarity"]
    assert comp["models"] == sorted(RUNS) and comp["chosen"]["members"] == result["best"]["members"]
    preds = [store.oof(n).argmax(1) for n in sorted(RUNS)]
    assert comp["oracle_accuracy"] == pytest.approx(
        np.mean(np.any([p == store.y for p in preds], 0))
    )


def test_evaluate_workspace_writes_files(workspace):
    ws, _ = workspace
    result = evaluate_workspace(ws, ensemble="soft_voting")
    out = ws / "evaluation"
    assert Path(result["output"]) == out
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert set(metrics["cv"]) == {*RUNS, "soft_voting"}
    assert set(metrics["test"]) == set(metrics["cv"])
    assert metrics["cv"]["cnn_a"]["accuracy"] == pytest.approx(result["cv"]["cnn_a"]["accuracy"])
    confused = metrics["cv"]["cnn_a"]["most_confused"]
    assert {"true", "predicted", "count", "share"} <= set(confused[0])
    per = pd.read_csv(out / "per_class" / "test_soft_voting.csv")
    assert per["class"].tolist() == CLASSES and per["support"].sum() == N_TEST
    cm = np.load(out / "confusion" / "cv_cnn_b.npy")
    np.testing.assert_array_equal(cm, result["cv"]["cnn_b"]["confusion"])
    comp = json.loads((out / "complementarity.json").read_text(encoding="utf-8"))
    assert set(comp["recall_matrix"]) == set(RUNS)


def test_evaluate_workspace_with_a_labelled_folder(workspace, tmp_path, monkeypatch):
    """--data runs the models (faked here); a test folder lacking a class maps labels by name."""
    import ensemblecv.inference as inference

    ws, _ = workspace
    test_dir = tmp_path / "test"
    for c in (0, 2):  # no "bee" folder: the folder's own indices would be 0 and 1
        for i in range(3):
            _png(test_dir / CLASSES[c] / f"{i}.png", (70 * c + 10, 9 * i, 7))

    def fake_members(workspace, runs, table, tta=None, batch_size=256):
        red = [np.asarray(Image.open(p).convert("RGB"))[0, 0, 0] for p in table.frame["path"]]
        onehot = np.eye(3)[[(int(r) - 10) // 70 for r in red]].astype(np.float32)
        return [MemberPrediction(run, onehot) for run in runs]

    monkeypatch.setattr(inference, "predict_members", fake_members)
    result = evaluate_workspace(ws, data=str(test_dir))
    assert result["test_source"] == str(test_dir)
    for name in result["cv"]:
        report = result["test"][name]
        assert report["accuracy"] == 1.0 and report["per_class"]["support"].tolist() == [3, 0, 3]


def test_evaluate_refuses_unlabelled_data(workspace, tmp_path):
    ws, _ = workspace
    _png(tmp_path / "loose" / "x.png", (1, 2, 3))
    with pytest.raises(EnsembleCVError, match="has no labels; evaluate needs a labelled test set"):
        evaluate_workspace(ws, data=str(tmp_path / "loose"))


# ---------------------------------------------------------------- CLI


def _cli() -> typer.Typer:
    from ensemblecv.cli.evaluate_command import register

    app = typer.Typer()

    @app.callback()
    def _group() -> None:
        """Keep ``evaluate`` a sub-command (a one-command Typer app would run it bare)."""

    register(app)
    return app


def test_cli_prints_gap_hint_oracle_and_worst_classes(workspace):
    ws, data = workspace
    _fake_run(ws, data, "leaky", 6.0, seed=11, test_signal=-3.0)  # great on CV, poor on test
    result = CliRunner().invoke(_cli(), ["evaluate", str(ws), "--ensemble", "soft_voting"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "Oracle accuracy" in text and "Automatic choice" in text
    assert "duplicates or augmented copies across folds? run ensemblecv audit / dedup" in text
    assert "leaky" in text and "worst classes" in text
    assert "Mean pairwise disagreement" in text
    assert (ws / "evaluation" / "metrics.json").is_file()
