"""Shared stores on a real PostgreSQL server: MLflow tracking and Optuna storage.

``.ci/run`` starts a server on loopback (``.ci/postgres.sh``) and sets
``ENSEMBLECV_TEST_POSTGRES`` and ``ENSEMBLECV_REQUIRE_POSTGRES=1``, so in CI
these tests run or fail; elsewhere they skip without a server.
"""

from __future__ import annotations

import os
import uuid

import pytest

URL = os.environ.get("ENSEMBLECV_TEST_POSTGRES")
if not URL:
    if os.environ.get("ENSEMBLECV_REQUIRE_POSTGRES") == "1":
        raise RuntimeError("ENSEMBLECV_REQUIRE_POSTGRES=1 but ENSEMBLECV_TEST_POSTGRES is not set")
    pytest.skip("no PostgreSQL server (set ENSEMBLECV_TEST_POSTGRES)", allow_module_level=True)

pytest.importorskip("psycopg")
optuna = pytest.importorskip("optuna")

from fakes import digits_config  # noqa: E402
from mlflow import MlflowClient  # noqa: E402

from ensemblecv.launch.sweep import run_sweep  # noqa: E402
from ensemblecv.training import train  # noqa: E402

MLFLOW_DB = f"{URL}/ensemblecv_mlflow"
OPTUNA_DB = f"{URL}/ensemblecv_optuna"


def config(tmp_path, experiment: str):
    tracking = {"backend": "mlflow", "uri": MLFLOW_DB, "experiment": experiment}
    return digits_config(tmp_path / "ws", "pg", tracking=tracking, refit_full=False)


def runs_of(experiment: str) -> list:
    client = MlflowClient(MLFLOW_DB)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"experiment {experiment} did not reach PostgreSQL"
    return client.search_runs([exp.experiment_id])


def test_training_tracks_to_postgresql(tmp_path):
    experiment = f"train-{uuid.uuid4().hex[:8]}"
    results = train(config(tmp_path, experiment), progress=False)
    assert [r.status for r in results] == ["done", "done"]
    runs = runs_of(experiment)
    assert sorted(r.data.tags["fold"] for r in runs) == ["fold_0", "fold_1"]
    assert all(r.info.status == "FINISHED" and "val_loss" in r.data.metrics for r in runs)
    # Artifacts (config, history) stay in the workspace next to the run.
    arts = MlflowClient(MLFLOW_DB).list_artifacts(runs[0].info.run_id)
    assert {"config.yaml", "history.csv"} <= {a.path for a in arts}
    assert (tmp_path / "ws" / "mlartifacts").is_dir()


def test_sweep_stores_trials_in_postgresql(tmp_path):
    experiment = f"sweep-{uuid.uuid4().hex[:8]}"
    study_name = f"pg-{uuid.uuid4().hex[:8]}"
    space = {"train.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}}
    run_sweep(
        config(tmp_path, experiment),
        space,
        2,
        storage=OPTUNA_DB,
        study_name=study_name,
        progress=False,
    )
    study = optuna.load_study(study_name=study_name, storage=OPTUNA_DB)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    assert {t.user_attrs["run"] for t in study.trials} == {
        f"{study_name}_t000",
        f"{study_name}_t001",
    }
    tracked = {r.data.tags["run"] for r in runs_of(experiment)}
    assert tracked == {f"{study_name}_t000", f"{study_name}_t001"}
