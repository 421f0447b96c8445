"""``ensemblecv sweep``: search spaces, trials as runs, resuming, pruning, retried trials."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

optuna = pytest.importorskip("optuna")

from fakes import digits_config  # noqa: E402

from ensemblecv.errors import ConfigError  # noqa: E402
from ensemblecv.launch.sweep import (  # noqa: E402
    Objective,
    load_space,
    oof_score,
    open_study,
    run_sweep,
    trial_config,
)


def base_config(tmp_path: Path, **train):
    return digits_config(tmp_path / "ws", "sw", **train)


def write_space(tmp_path: Path, space: dict) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(space))
    return path


def test_space_types_are_inferred_and_bad_entries_named(tmp_path):
    space = load_space(
        write_space(
            tmp_path,
            {
                "train.lr": {"low": 1e-4, "high": 1e-2, "log": True},
                "train.epochs": {"low": 1, "high": 3},
                "model.name": ["mnist_cnn", "cnn_small"],
            },
        )
    )
    assert {k: s["type"] for k, s in space.items()} == {
        "train.lr": "float",
        "train.epochs": "int",
        "model.name": "categorical",
    }
    bad = {
        "train.lr": ({"low": 0.1, "high": 0.01}, "low < high"),
        "train.wd": ({"low": 0.0, "high": 1.0, "log": True}, "low must be > 0"),
        "train.x": ({"low": 0, "high": 1, "stepp": 1}, "unknown fields \\['stepp'\\]"),
        "train.y": ({"type": "uniform", "low": 0, "high": 1}, "type 'uniform'"),
        "model.name": ({"choices": []}, "non-empty list"),
    }
    for key, (spec, message) in bad.items():
        with pytest.raises(ConfigError, match=f"{key}.*{message}"):
            load_space(write_space(tmp_path, {key: spec}))


def test_folds_out_of_range_are_refused_before_any_trial(tmp_path):
    space = load_space(write_space(tmp_path, {"train.lr": {"low": 1e-3, "high": 1e-2}}))
    with pytest.raises(ConfigError, match="out of range"):
        run_sweep(base_config(tmp_path), space, 1, folds=[5], progress=False)
    assert not (tmp_path / "ws" / "optuna.db").exists()


def test_trial_config_sets_dotted_keys_and_rejects_unknown_ones(tmp_path):
    base = base_config(tmp_path)
    cfg = trial_config(base, {"train.lr": 0.005, "model.name": "cnn_small"}, "sw_t004")
    assert (cfg.train.lr, cfg.model.name, cfg.run_name) == (0.005, "cnn_small", "sw_t004")
    assert base.train.lr != 0.005  # the base config is not modified
    with pytest.raises(ConfigError, match="lrr"):
        trial_config(base, {"train.lrr": 0.1}, "x")


def test_a_sweep_trains_runs_the_store_can_ensemble_and_resumes_from_storage(tmp_path):
    space = load_space(
        write_space(tmp_path, {"train.lr": {"low": 1e-3, "high": 1e-2, "log": True}})
    )
    cfg = base_config(tmp_path)
    study = run_sweep(cfg, space, 2, progress=False)
    ws = tmp_path / "ws"
    assert (ws / "optuna.db").is_file()
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    for t in study.trials:
        run = ws / "runs" / t.user_attrs["run"]
        assert run.name == f"sw_t{t.number:03d}"
        assert yaml.safe_load((run / "config.yaml").read_text())["train"]["lr"] == pytest.approx(
            t.params["train.lr"]
        )
        assert t.value == pytest.approx(oof_score(run, 2, "accuracy"))
        # Trials train their folds only, and their saved config says so (docs/cv-protocol.md).
        assert yaml.safe_load((run / "config.yaml").read_text())["train"]["refit_full"] is False
        assert not (run / "full").exists()
    assert (ws / "sweeps" / "sw.csv").is_file()

    # Asking for 3 trials again trains only the missing one.
    first = [t.params for t in study.trials]
    again = run_sweep(cfg, space, 3, progress=False)
    assert len(again.trials) == 3
    assert [t.params for t in again.trials[:2]] == first

    from ensemblecv.ensemble import build_ensembles

    with pytest.warns(UserWarning, match="fold models .*: sw_t000, sw_t001, sw_t002"):
        board = build_ensembles(ws, metric="accuracy", methods=["soft_voting"])
    assert {"sw_t000", "sw_t001", "sw_t002", "soft_voting"} <= set(board["name"])


class AlwaysPrune(optuna.pruners.BasePruner):
    def prune(self, study, trial) -> bool:
        return True


def test_pruned_trials_stop_early_and_are_named_in_the_store(tmp_path):
    cfg = base_config(tmp_path, epochs=3)
    space = load_space(write_space(tmp_path, {"train.lr": {"low": 1e-3, "high": 1e-2}}))
    study = optuna.create_study(pruner=AlwaysPrune())
    study.optimize(Objective(cfg, space, "sw", "accuracy", None, True), n_trials=1)
    assert study.trials[0].state.name == "PRUNED"
    run = tmp_path / "ws" / "runs" / "sw_t000"
    assert not (run / "fold_0" / "done.json").exists()
    assert list(study.trials[0].intermediate_values) == [0]  # stopped after its first epoch
    from ensemblecv.ensemble.store import PredictionStore

    assert PredictionStore(tmp_path / "ws").incomplete == {"sw_t000": "pruned by its sweep"}


def test_a_trial_whose_process_died_is_retried_under_its_own_run_name(tmp_path):
    cfg = base_config(tmp_path)
    space = load_space(write_space(tmp_path, {"train.lr": {"low": 1e-3, "high": 1e-2}}))
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = open_study(storage, "sw", "accuracy", 0, heartbeat_interval=1, grace_period=1)
    dead = study.ask({"train.lr": optuna.distributions.FloatDistribution(1e-3, 1e-2)})
    study._storage.record_heartbeat(dead._trial_id)  # it started, then its machine went away
    time.sleep(2.5)
    result = run_sweep(cfg, space, 1, storage=storage, grace_period=1, progress=False)
    states = [t.state.name for t in result.trials]
    assert states == ["FAIL", "COMPLETE"]
    retry = result.trials[1]
    assert retry.params == dead.params
    assert retry.user_attrs["run"] == "sw_t000"
    assert (tmp_path / "ws" / "runs" / "sw_t000" / "fold_1" / "done.json").is_file()
    assert not (tmp_path / "ws" / "runs" / "sw_t001").exists()


def test_sweep_cli_prints_the_study(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from ensemblecv.cli import app

    monkeypatch.chdir(tmp_path)
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(json.loads(base_config(tmp_path).model_dump_json())))
    space = write_space(tmp_path, {"train.lr": {"low": 1e-3, "high": 1e-2}})
    out = CliRunner().invoke(
        app,
        ["sweep", str(cfg_path), "--space", str(space), "--trials", "1", "--no-progress"],
    )
    assert out.exit_code == 0, out.output
    assert "sw_t000" in out.output and "COMPLETE" in out.output
    assert "Best: trial 0 (sw_t000)" in out.output
