"""End to end on a fake workspace: prediction store, leaderboard, specs and submissions.

Nothing is trained. A real workspace is prepared from a tiny ImageFolder of
PNGs, then runs are fabricated the way the trainer writes them
(``runs/<name>/config.yaml`` and ``fold_k/{oof_probs.npy, oof_samples.parquet,
test_probs.npy, test_samples.parquet, done.json}``) with synthetic
probabilities, so every number the ensemble stage reports can be recomputed
here directly.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import fakes  # tests/fakes.py
import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

import ensemblecv.inference as inference
from ensemblecv.data.samples import load_samples
from ensemblecv.ensemble import HardVoting, PredictionStore, build_ensembles, load_spec, nested_oof
from ensemblecv.ensemble.leaderboard import DEFAULT_METHODS, build_method
from ensemblecv.ensemble.metrics import all_scores
from ensemblecv.errors import EnsembleCVError
from ensemblecv.inference import MemberPrediction, combine, resolve_spec
from ensemblecv.workspace import prepare_workspace

CLASSES = ["ant", "bee", "cow"]
PER_CLASS = 6
FOLDS = 3
N_TEST = 5
RUNS = {"cnn_a": 1.5, "cnn_b": 1.0, "cnn_c": 0.5}  # run name → signal of its logits


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


_png, _softmax = fakes.png, fakes.softmax


def _probs(labels: np.ndarray, signal: float, rng) -> np.ndarray:
    return fakes.probs(labels, signal, rng, len(CLASSES))


def _config_yaml(name: str, data: Path, ws: Path) -> str:
    return fakes.config_yaml(name, data, ws, FOLDS)


def _fake_run(
    ws: Path,
    data: Path,
    name: str,
    signal: float,
    seed: int,
    done_folds=range(FOLDS),
    shuffle: bool = True,
) -> np.ndarray:
    """Write a run as the trainer does; returns its true OOF (N, C) in fold-table order.

    Each fold's rows are written in a shuffled order (as a sampler might), so
    the store has to align them by ``sample_id``.
    """
    rng = np.random.default_rng(seed)
    folds = pd.read_parquet(ws / "folds.parquet")
    oof = _probs(folds["label"].to_numpy(), signal, rng)
    test_labels = np.arange(N_TEST) % len(CLASSES)
    fakes.write_run(
        ws,
        name,
        oof,
        _config_yaml(name, data, ws),
        rows_order=rng.permutation if shuffle else None,
        test=lambda k: (_probs(test_labels, signal, rng), test_labels),
        done_folds=done_folds,
    )
    return oof


@pytest.fixture
def workspace(tmp_path) -> tuple[Path, Path, dict[str, np.ndarray]]:
    """(workspace, data folder, {run: true OOF}) with three complete fake runs."""
    data = tmp_path / "data"
    for c, name in enumerate(CLASSES):
        for i in range(PER_CLASS):
            # All colours distinct, so no duplicate groups.
            _png(data / name / f"{i}.png", (70 * c + 10, 35 * i + 5, 99))
    ws = tmp_path / "ws"
    prepare_workspace(ws, str(data), folds=FOLDS, seed=0, workers=0)
    oofs = {
        name: _fake_run(ws, data, name, signal, seed)
        for seed, (name, signal) in enumerate(RUNS.items())
    }
    return ws, data, oofs


# ---------------------------------------------------------------- prediction store


def test_store_aligns_shuffled_folds_by_sample_id(workspace):
    ws, _, oofs = workspace
    store = PredictionStore(ws)
    folds = pd.read_parquet(ws / "folds.parquet")
    assert store.names == sorted(RUNS)
    assert store.incomplete == {}
    np.testing.assert_array_equal(store.sample_ids, folds["sample_id"].to_numpy())
    np.testing.assert_array_equal(store.y, folds["label"].to_numpy())
    assert len(store.y) == len(CLASSES) * PER_CLASS and set(store.fold_of) == set(range(FOLDS))
    for name, oof in oofs.items():
        got = store.oof(name)
        assert got.dtype == np.float32 and got.shape == (len(store.y), len(CLASSES))
        np.testing.assert_array_equal(got, oof)
    assert len(store.oof_list()) == 3
    written = pd.read_parquet(ws / "runs" / "cnn_a" / "fold_0" / "oof_samples.parquet")[
        "sample_id"
    ].tolist()
    in_table = folds.loc[folds["fold"] == 0, "sample_id"].tolist()
    assert sorted(written) == sorted(in_table) and written != in_table  # the store had to realign


def test_store_test_probabilities_are_the_fold_mean(workspace):
    ws, _, _ = workspace
    store = PredictionStore(ws)
    probs, samples = store.test("cnn_a")
    parts = [
        np.load(ws / "runs" / "cnn_a" / f"fold_{k}" / "test_probs.npy").astype(np.float64)
        for k in range(FOLDS)
    ]
    np.testing.assert_allclose(probs, np.mean(parts, axis=0), rtol=1e-6)
    assert samples["sample_id"].tolist() == [f"test/{i}.png" for i in range(N_TEST)]


def test_store_refuses_an_incomplete_run(workspace):
    ws, data, _ = workspace
    _fake_run(ws, data, "broken", 2.0, seed=9, done_folds=[0, 1])
    store = PredictionStore(ws)
    assert "broken" not in store.names
    assert store.incomplete == {"broken": "folds [2] not finished"}
    with pytest.raises(
        EnsembleCVError, match=r"No complete run 'broken'.*incomplete: folds \[2\] not finished"
    ):
        store.oof("broken")


def test_store_rejects_predictions_for_unknown_samples(workspace):
    ws, _, _ = workspace
    path = ws / "runs" / "cnn_b" / "fold_1" / "oof_samples.parquet"
    frame = pd.read_parquet(path)
    frame.loc[0, "sample_id"] = "ghost/0.png"
    frame.to_parquet(path, index=False)
    with pytest.raises(EnsembleCVError, match="predictions for samples not in the fold table"):
        PredictionStore(ws).oof("cnn_b")


def test_store_needs_a_prepared_workspace(tmp_path):
    with pytest.raises(EnsembleCVError, match="is not a prepared workspace"):
        PredictionStore(tmp_path)


# ---------------------------------------------------------------- leaderboard and specs


def test_build_ensembles_writes_leaderboard_and_specs(workspace):
    ws, data, _ = workspace
    _fake_run(ws, data, "broken", 2.0, seed=9, done_folds=[0, 2])
    with pytest.warns(UserWarning, match=r"Run 'broken' is left out: folds \[1\] not finished"):
        board = build_ensembles(ws, metric="accuracy")

    on_disk = pd.read_csv(ws / "leaderboard.csv")
    assert {
        "name",
        "kind",
        "method",
        "members",
        "weights",
        "accuracy",
        "balanced_accuracy",
        "log_loss",
    } <= set(on_disk.columns)
    assert len(on_disk) == len(RUNS) + len(DEFAULT_METHODS)
    assert sorted(on_disk.loc[on_disk["kind"] == "model", "name"]) == sorted(RUNS)
    assert sorted(on_disk.loc[on_disk["kind"] == "ensemble", "method"]) == sorted(DEFAULT_METHODS)
    assert "broken" not in set(on_disk["name"]) and not any(
        "broken" in str(m) for m in on_disk["members"]
    )
    assert on_disk["name"].tolist() == board["name"].tolist()
    assert on_disk["accuracy"].is_monotonic_decreasing  # ranked best first

    for name in on_disk["name"]:
        spec = load_spec(ws, name)
        assert spec["name"] == name and spec["members"]
    best = yaml.safe_load((ws / "ensembles" / "best.yaml").read_text(encoding="utf-8"))
    top = on_disk.iloc[0]
    assert best["alias"] == "best" and best["name"] == top["name"]
    assert {k: v for k, v in best.items() if k != "alias"} == load_spec(ws, top["name"])
    for metric in ("accuracy", "balanced_accuracy", "log_loss"):
        assert best["scores"]["cv"][metric] == pytest.approx(top[metric])


def test_leaderboard_scores_are_direct_and_nested(workspace):
    ws, _, oofs = workspace
    board = build_ensembles(ws, methods=["soft_voting", "ensemble_selection"], metric="log_loss")
    store = PredictionStore(ws)
    rows = board.set_index("name")
    for name, oof in oofs.items():
        assert rows.loc[name, "log_loss"] == pytest.approx(all_scores(store.y, oof)["log_loss"])
        assert rows.loc[name, "test_accuracy"] == pytest.approx(
            all_scores(np.arange(N_TEST) % 3, store.test(name)[0])["accuracy"]
        )
    members = [oofs[n] for n in store.names]
    # Soft voting learns nothing: nested and in-sample scores coincide with the plain mean.
    mean = np.mean([m.astype(np.float64) for m in members], axis=0)
    assert rows.loc["soft_voting", "accuracy"] == pytest.approx(
        all_scores(store.y, mean)["accuracy"]
    )
    assert rows.loc["soft_voting", "log_loss"] == pytest.approx(
        rows.loc["soft_voting", "optimistic_log_loss"]
    )
    # Ensemble selection is scored on folds it was not fitted on.
    method = build_method("ensemble_selection", "log_loss")
    nested = all_scores(store.y, nested_oof(method, members, store.y, store.fold_of))
    assert rows.loc["ensemble_selection", "log_loss"] == pytest.approx(nested["log_loss"])
    fitted = build_method("ensemble_selection", "log_loss").fit(members, store.y)
    in_sample = all_scores(store.y, fitted.predict_proba(members))
    assert rows.loc["ensemble_selection", "optimistic_log_loss"] == pytest.approx(
        in_sample["log_loss"]
    )
    spec = load_spec(ws, "ensemble_selection")
    kept = [n for n, w in zip(store.names, fitted.weights_) if w > 0]
    assert spec["members"] == kept
    assert spec["weights"] == pytest.approx(dict(zip(kept, fitted.weights_[fitted.weights_ > 0])))
    assert spec["params"]["metric"] == "log_loss"


def test_build_ensembles_with_one_run_ranks_it_alone(workspace):
    ws, _, _ = workspace
    board = build_ensembles(ws, runs=["cnn_b"])
    assert board["name"].tolist() == ["cnn_b"]
    assert load_spec(ws, "best")["members"] == ["cnn_b"]


def test_build_ensembles_unknown_method(workspace):
    ws, _, _ = workspace
    with pytest.raises(
        EnsembleCVError, match=r"Unknown ensemble method\(s\) \['voting'\]; available: "
    ):
        build_ensembles(ws, methods=["voting"])


def test_load_spec_lists_what_exists(workspace):
    ws, _, _ = workspace
    build_ensembles(ws, methods=["soft_voting"])
    with pytest.raises(EnsembleCVError, match=r"No ensemble 'nope'.*Available: .*soft_voting"):
        load_spec(ws, "nope")


def test_run_named_like_a_method_is_refused_or_keeps_its_own_spec(workspace):
    ws, data, _ = workspace
    _fake_run(ws, data, "soft_voting", 4.0, seed=7)  # the strongest run, so it ranks first
    try:
        board = build_ensembles(ws, methods=["soft_voting"], metric="log_loss")
    except EnsembleCVError as exc:  # refusing the clash is a fine fix too
        assert "soft_voting" in str(exc)
        return
    top = board.iloc[0]
    assert (top["name"], top["kind"]) == ("soft_voting", "model")
    assert load_spec(ws, "best")["method"] == "single"


# ---------------------------------------------------------------- combine


def test_combine_applies_the_spec_weights_by_member_name(workspace):
    ws, _, _ = workspace
    rng = np.random.default_rng(1)
    pa, pb = (_probs(np.arange(7) % 3, 1.0, rng) for _ in range(2))
    spec = {
        "name": "e",
        "method": "ensemble_selection",
        "members": ["cnn_a", "cnn_b"],
        "weights": {"cnn_a": 0.25, "cnn_b": 0.75},
        "params": {},
    }
    members = [MemberPrediction("cnn_b", pb), MemberPrediction("cnn_a", pa)]  # not in spec order
    np.testing.assert_allclose(combine(spec, ws, members), 0.25 * pa + 0.75 * pb, rtol=1e-6)
    single = {"name": "cnn_a", "method": "single", "members": ["cnn_a"], "weights": {"cnn_a": 1.0}}
    out = combine(single, ws, [MemberPrediction("cnn_a", pa)])
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, pa)


def test_combine_refits_unweighted_methods_on_the_store(workspace):
    ws, _, _ = workspace
    store = PredictionStore(ws)
    rng = np.random.default_rng(2)
    new = {n: _probs(np.arange(7) % 3, 1.0, rng) for n in store.names}
    spec = {
        "name": "hard_voting",
        "method": "hard_voting",
        "members": store.names,
        "weights": None,
        "params": {},
    }
    got = combine(spec, ws, [MemberPrediction(n, new[n]) for n in store.names])
    expected = (
        HardVoting().fit(store.oof_list(), store.y).predict_proba([new[n] for n in store.names])
    )
    np.testing.assert_allclose(got, expected)


def test_resolve_spec_for_a_run_name(workspace):
    ws, _, _ = workspace
    assert resolve_spec(ws, "cnn_c") == {
        "name": "cnn_c",
        "method": "single",
        "members": ["cnn_c"],
        "weights": {"cnn_c": 1.0},
        "params": {},
    }
    with pytest.raises(EnsembleCVError, match="No ensemble 'cnn_x'"):
        resolve_spec(ws, "cnn_x")


# ---------------------------------------------------------------- submissions: row order and IDs


def _test_csv(root: Path, bad: str | None = None) -> tuple[Path, list[str], list[str], list[int]]:
    """A CSV test table in a shuffled, unsorted order; each image's colour encodes its class."""
    order = [4, 0, 7, 2, 6, 1, 5, 3]
    ids = [f"id_{(13 * i) % 17:02d}" for i in order]
    paths = [f"imgs/im{i}.png" for i in order]
    classes = [i % 3 for i in order]
    for path, c in zip(paths, classes):
        _png(root / path, (70 * c + 10, 20, 30))
    if bad is not None:
        (root / bad).write_bytes(b"")
    pd.DataFrame({"ID": ids, "image_path": paths}).to_csv(root / "test.csv", index=False)
    return root / "test.csv", ids, paths, classes


def test_submission_keeps_row_order_and_ids(tmp_path):
    csv, ids, paths, classes = _test_csv(tmp_path / "test")
    table = load_samples(csv)
    probs = np.eye(3)[classes] * 0.7 + 0.1
    bad = np.zeros(len(ids), dtype=bool)
    sub = inference._submission(table, probs, CLASSES, bad)
    assert list(sub.columns) == ["ID", "image_path", "target", "class_name"]
    assert sub["ID"].tolist() == ids
    assert sub["image_path"].tolist() == paths
    assert sub["target"].tolist() == classes
    assert sub["class_name"].tolist() == [CLASSES[c] for c in classes]


def test_submission_marks_unreadable_rows(tmp_path):
    csv, ids, paths, classes = _test_csv(tmp_path / "test")
    table = load_samples(csv)
    probs = np.eye(3)[classes].astype(float)
    bad = np.zeros(len(ids), dtype=bool)
    bad[2] = True
    probs[2] = np.nan
    sub = inference._submission(table, probs, CLASSES, bad)
    assert sub["ID"].tolist() == ids
    assert pd.isna(sub.loc[2, "target"]) and pd.isna(sub.loc[2, "class_name"])
    keep = ~bad
    assert sub["target"][keep].tolist() == list(np.array(classes)[keep])


def test_submission_for_a_folder_has_image_paths(tmp_path):
    for c, name in enumerate(CLASSES):
        _png(tmp_path / "f" / name / "x.png", (70 * c + 10, 1, 2))
    table = load_samples(tmp_path / "f")
    probs = np.eye(3)[::-1]
    sub = inference._submission(table, probs, CLASSES, np.zeros(3, dtype=bool))
    assert sub["image_path"].tolist() == table.frame["sample_id"].tolist()
    assert sub["target"].tolist() == [2, 1, 0]


def test_predict_keeps_row_order_ids_and_flags_bad_images(workspace, monkeypatch):
    """``predict`` end to end, member models replaced by a colour lookup (no checkpoints)."""
    ws, _, _ = workspace
    build_ensembles(ws, methods=["soft_voting"], metric="accuracy")
    csv, ids, paths, classes = _test_csv(ws.parent / "test", bad="imgs/im6.png")
    calls = []

    def fake_members(workspace, runs, table, tta=None, batch_size=256):
        calls.append(list(runs))
        # Every member predicts the class encoded in the file's colour (red = 70c + 10).
        rows = []
        for path in table.frame["path"]:
            try:
                red = np.asarray(Image.open(path).convert("RGB"))[0, 0, 0]
                rows.append(np.eye(3)[(int(red) - 10) // 70] * 0.8 + 0.2 / 3)
            except OSError:
                rows.append(np.full(3, 1 / 3))
        return [MemberPrediction(run, np.array(rows, dtype=np.float32)) for run in runs]

    monkeypatch.setattr(inference, "predict_members", fake_members)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sub, probs, table, classes_out = inference.predict(ws, str(csv), ensemble="best")
    assert any(
        "1 test image(s) cannot be read" in str(w.message) and "im6.png" in str(w.message)
        for w in caught
    )
    assert calls == [load_spec(ws, "best")["members"]]
    assert classes_out == CLASSES
    assert sub["ID"].tolist() == ids and sub["image_path"].tolist() == paths
    bad = np.array([p == "imgs/im6.png" for p in paths])
    assert np.isnan(probs[bad]).all() and not np.isnan(probs[~bad]).any()
    assert sub["target"][~bad].tolist() == list(np.array(classes)[~bad])
    assert sub["target"][bad].isna().all()
