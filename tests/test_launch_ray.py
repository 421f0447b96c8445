"""``--launcher ray`` on a local Ray instance: parallel jobs, skipping, retries, reports."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

ray = pytest.importorskip("ray")

from ensemblecv.config import load_config  # noqa: E402
from ensemblecv.errors import ConfigError  # noqa: E402
from ensemblecv.launch import LaunchError, launch_ray, plan_jobs, run_job  # noqa: E402


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    # Test job functions live in this module, which Ray's workers cannot import.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield ray
    ray.shutdown()


def write_configs(root: Path, workspace: str, tracking: str = "none") -> list[Path]:
    paths = []
    for name, model in (("a", "cnn_small"), ("b", "mnist_cnn")):
        cfg = {
            "workspace": workspace,
            "name": name,
            "data": {
                "train": "digits",
                "test": "digits:test",
                "image_size": 16,
                "folds": 2,
                "limit": 160,
                "test_limit": 40,
                "num_workers": 0,
            },
            "model": {"name": model},
            "train": {"epochs": 1, "batch_size": 32},
            "tracking": {"backend": tracking},
        }
        path = root / f"{name}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        paths.append(path)
    return paths


def layout(ws: Path) -> set[str]:
    return {
        str(p.relative_to(ws))
        for p in (ws / "runs").rglob("*")
        if p.is_file() and p.name not in ("done.json",)
    }


def test_ray_trains_configs_by_folds_in_parallel_like_serial_training(
    local_ray, tmp_path, monkeypatch
):
    from typer.testing import CliRunner

    from ensemblecv.cli import app

    monkeypatch.chdir(tmp_path)
    paths = write_configs(tmp_path, "ws_ray", tracking="mlflow")
    runner = CliRunner()
    out = runner.invoke(
        app,
        ["train", *map(str, paths), "--launcher", "ray", "--no-progress", "train.seed=3",
         "train.refit_full=false"],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    (tmp_path / "serial").mkdir()
    serial = write_configs(tmp_path / "serial", "ws_serial")
    out = runner.invoke(
        app, ["train", *map(str, serial), "--no-progress", "train.seed=3", "train.refit_full=false"]
    )
    assert out.exit_code == 0, out.output

    ray_ws, serial_ws = tmp_path / "ws_ray", tmp_path / "ws_serial"
    assert layout(ray_ws) == layout(serial_ws)
    assert len(list(ray_ws.glob("runs/*/fold_*/done.json"))) == 4
    for run in ("a", "b"):
        for k in (0, 1):
            fold = f"runs/{run}/fold_{k}"
            ids_ray = pd.read_parquet(ray_ws / fold / "oof_samples.parquet")
            ids_serial = pd.read_parquet(serial_ws / fold / "oof_samples.parquet")
            pd.testing.assert_frame_equal(ids_ray, ids_serial)
            np.testing.assert_allclose(
                np.load(ray_ws / fold / "oof_probs.npy"),
                np.load(serial_ws / fold / "oof_probs.npy"),
                atol=1e-4,
            )
    # Four jobs wrote to one SQLite tracking file at once: no record may be lost.
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{ray_ws / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert sorted((r.data.tags["run"], r.data.tags["fold"]) for r in runs) == [
        ("a", "fold_0"),
        ("a", "fold_1"),
        ("b", "fold_0"),
        ("b", "fold_1"),
    ]
    assert all(r.info.status == "FINISHED" for r in runs)

    # A second launch finds every job done and trains nothing.
    stamps = {p: p.stat().st_mtime_ns for p in ray_ws.glob("runs/*/fold_*/*.npy")}
    out = runner.invoke(
        app,
        ["train", *map(str, paths), "--launcher", "ray", "--no-progress", "train.seed=3",
         "train.refit_full=false"],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    assert out.output.count("skipped") == 4  # the narrow table may wrap "(done)"
    assert stamps == {p: p.stat().st_mtime_ns for p in ray_ws.glob("runs/*/fold_*/*.npy")}


def callback(hook: str, action):
    """A Lightning callback running ``action(trainer)`` at ``hook`` (built in the worker)."""
    import lightning.pytorch as pl

    return type("TestHook", (pl.Callback,), {hook: lambda self, trainer, module: action(trainer)})()


def kill_at_second_epoch(trainer) -> None:
    if trainer.current_epoch == 1:  # epoch 1's last.ckpt is on disk: like an OOM kill
        os.kill(os.getpid(), signal.SIGKILL)


def die_once(config, fold, base_dir, resume, threads):
    """The first attempt of each job dies mid-way; the retry must continue, not restart."""
    marker = Path(base_dir) / f"attempt_{config['name']}_{fold}"
    attempts = int(marker.read_text()) + 1 if marker.exists() else 1
    marker.write_text(str(attempts))
    if attempts == 1:
        hooks = [callback("on_train_epoch_start", kill_at_second_epoch)]
    else:
        started = Path(base_dir) / "retry_started_at_epoch"
        hooks = [callback("on_train_start", lambda t: started.write_text(str(t.current_epoch)))]
    return run_job(config, fold, base_dir, resume, threads, callbacks=hooks)


def bad_config_for_b(config, fold, base_dir, resume, threads):
    marker = Path(base_dir) / f"attempt_{config['name']}_{fold}"
    marker.write_text(str(int(marker.read_text()) + 1 if marker.exists() else 1))
    if config["name"] == "b":
        raise ConfigError("model 'nope' is unknown")
    return run_job(config, fold, base_dir, resume, threads)


def test_a_killed_job_is_retried_and_user_errors_are_reported_by_name(
    local_ray, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    configs = [load_config(p, ["train.epochs=2"]) for p in write_configs(tmp_path, "ws")]
    jobs = plan_jobs(configs, folds=[0], progress=False)
    results = launch_ray(jobs[:1], max_retries=1, progress=False, job_fn=die_once)
    assert [(r.run, r.fold, r.status, r.epochs) for r in results] == [("a", "0", "done", 2)]
    assert (tmp_path / "attempt_a_0").read_text() == "2"
    assert (tmp_path / "retry_started_at_epoch").read_text() == "1"
    # The retry resumed from epoch 1's checkpoint and ends exactly where an
    # uninterrupted run ends.
    fold = tmp_path / "ws/runs/a/fold_0"
    # The Ray job ran with its 1-CPU share of threads; the same share here makes the
    # comparison exact (another thread count may round differently in the last digits).
    whole = run_job(configs[0].model_copy(update={"name": "a_whole"}), 0, str(tmp_path), threads=1)
    assert whole.epochs == 2
    np.testing.assert_array_equal(
        np.load(fold / "oof_probs.npy"), np.load(tmp_path / "ws/runs/a_whole/fold_0/oof_probs.npy")
    )

    with pytest.raises(LaunchError) as err:
        launch_ray(jobs, max_retries=2, progress=False, job_fn=bad_config_for_b)
    assert err.value.failures == {"b/fold_0": "model 'nope' is unknown"}
    assert "b/fold_0: model 'nope' is unknown" in str(err.value)
    # a/fold_0 was already done and was skipped; b's user error was not retried.
    assert (tmp_path / "attempt_a_0").read_text() == "2"
    assert (tmp_path / "attempt_b_0").read_text() == "1"
    assert [r.status for r in err.value.results] == ["skipped (done)"]


def test_a_run_name_used_by_two_configs_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a, _ = write_configs(tmp_path, "ws")
    with pytest.raises(ConfigError, match="run name 'a'"):
        plan_jobs([load_config(a, []), load_config(a, ["model.name=mnist_cnn"])], progress=False)


def test_a_sweep_runs_trials_in_parallel_on_ray(local_ray, tmp_path, monkeypatch):
    from ensemblecv.launch.sweep import run_sweep

    monkeypatch.chdir(tmp_path)
    a, _ = write_configs(tmp_path, "ws")
    space = {"train.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}}
    study = run_sweep(load_config(a, []), space, 3, launcher="ray", parallel=2, progress=False)
    # MaxTrialsCallback stops both workers at 3 finished trials in total.
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3
    runs = {t.user_attrs["run"] for t in study.trials}
    assert runs == {"a_t000", "a_t001", "a_t002"}
    for run in runs:
        assert len(list((tmp_path / "ws" / "runs" / run).glob("fold_*/done.json"))) == 2
