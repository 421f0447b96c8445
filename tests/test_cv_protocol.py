"""Test predictions follow the protocol CV ranks by (issue 16, item 6; docs/cv-protocol.md).

CV scores one model per out-of-fold row, so by default a classification run refits one model
on all training data and that model alone predicts test; ``ensemble`` warns, naming them,
about runs whose test predictions are the mean of their fold models instead.
"""

from __future__ import annotations

import json
import warnings

import fakes  # tests/fakes.py
import numpy as np
import pandas as pd
import pytest

from ensemblecv.config import load_config
from ensemblecv.ensemble import PredictionStore, build_ensembles
from ensemblecv.ensemble.build import build_named_ensemble, fold_mean_runs
from ensemblecv.workspace import prepare_workspace

CLASSES, PER_CLASS, FOLDS, N_TEST = ["ant", "bee", "cow"], 6, 3, 6


def _base(**train) -> dict:
    return {"workspace": "ws", "data": {"train": "digits"}, **({"train": train} if train else {})}


@pytest.mark.parametrize(
    "raw, refit",
    [
        (_base(), True),  # classify: refit by default
        (_base(lr=0.01), True),  # a train section that leaves it unset
        (_base(refit_full=False), False),  # an explicit opt-out is kept
        ({**_base(), "task": "detect"}, False),  # a task that does not refit yet
    ],
)
def test_refit_full_defaults_to_the_task_protocol(raw, refit):
    assert load_config(None, [], base=raw).train.refit_full is refit


def test_override_and_saved_config_state_the_protocol():
    cfg = load_config(None, ["train.refit_full=false"], base=_base())
    assert cfg.train.refit_full is False
    assert "refit_full: true" in fakes.config_yaml("a", fakes.Path("d"), fakes.Path("ws"), 3)


def _workspace(tmp_path, refit: dict[str, bool]):
    data = tmp_path / "data"
    for c, name in enumerate(CLASSES):
        for i in range(PER_CLASS):
            fakes.png(data / name / f"{i}.png", (70 * c + 10, 35 * i + 5, 99))
    ws = tmp_path / "ws"
    prepare_workspace(ws, str(data), folds=FOLDS, seed=0, workers=0)
    rng = np.random.default_rng(0)
    labels = pd.read_parquet(ws / "folds.parquet")["label"].to_numpy()
    test_labels = np.arange(N_TEST) % len(CLASSES)
    for signal, (name, has_full) in enumerate(refit.items(), start=1):
        oof = fakes.probs(labels, signal, rng, len(CLASSES))
        text = fakes.config_yaml(name, data, ws, FOLDS)
        fakes.write_run(
            ws, name, oof, text, test=lambda k: (fakes.probs(test_labels, 1.0, rng, 3), test_labels)
        )
        if has_full:  # the refit writes test predictions and done.json, no OOF
            full = ws / "runs" / name / "full"
            full.mkdir()
            np.save(full / "test_probs.npy", fakes.probs(test_labels, 1.0, rng, 3))
            pd.DataFrame(
                {"sample_id": [f"test/{i}.png" for i in range(N_TEST)], "target": test_labels}
            ).to_parquet(full / "test_samples.parquet", index=False)
            (full / "done.json").write_text(json.dumps({"run": name, "fold": "full"}))
    return ws


def _protocol_warnings(fn, *args, **kwargs) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fn(*args, **kwargs)
    return [str(w.message) for w in caught if "one model per out-of-fold row" in str(w.message)]


def test_ensemble_names_the_runs_without_a_refit(tmp_path):
    ws = _workspace(tmp_path, {"refit_a": True, "bag_b": False, "bag_c": False})
    store = PredictionStore(ws)
    assert fold_mean_runs(store, store.names) == ["bag_b", "bag_c"]
    (message,) = _protocol_warnings(build_ensembles, ws, methods=["soft_voting"])
    assert "2 run(s)" in message and "bag_b, bag_c" in message and "refit_a" not in message
    assert f"mean of their {FOLDS} fold models" in message and "train.refit_full=true" in message
    # The test predictions the warning is about: the refit's file, or the fold mean.
    full = np.load(ws / "runs" / "refit_a" / "full" / "test_probs.npy")
    np.testing.assert_allclose(store.test("refit_a")[0], full)
    folds = [np.load(ws / "runs" / "bag_b" / f"fold_{k}" / "test_probs.npy") for k in range(3)]
    np.testing.assert_allclose(store.test("bag_b")[0], np.mean(folds, axis=0), rtol=1e-6)


def test_ensemble_is_quiet_when_every_member_refits(tmp_path):
    ws = _workspace(tmp_path, {"refit_a": True, "refit_b": True})
    assert _protocol_warnings(build_ensembles, ws, methods=["soft_voting"]) == []
    # Leaving the unrefitted run out (--runs) silences it too.
    ws2 = _workspace(tmp_path / "two", {"refit_a": True, "bag_b": False})
    assert _protocol_warnings(build_ensembles, ws2, runs=["refit_a"]) == []
    (message,) = _protocol_warnings(
        build_named_ensemble, ws2, "pair", "soft_voting", ["refit_a", "bag_b"]
    )
    assert "bag_b" in message and "refit_a" not in message
