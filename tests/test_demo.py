"""The README's main job, end to end on digits (1 epoch, so it stays a quick test)."""

from __future__ import annotations

import pandas as pd
from rich.console import Console

from ensemblecv.demo import DEMO_MODELS, run_demo


def test_demo_runs_the_whole_chain(tmp_path):
    ws = tmp_path / "demo"
    result = run_demo(
        ws, fast=True, console=Console(width=120), progress=False, dataset="digits", epochs=1
    )
    assert (ws / "audit" / "audit.html").is_file()
    board = pd.read_csv(ws / "leaderboard.csv")
    assert set(DEMO_MODELS) <= set(board["name"])
    assert (board["kind"] == "ensemble").sum() >= 5
    submission = pd.read_csv(ws / "submission.csv")
    assert len(submission) == 360 and {"image_path", "target", "class_name"} <= set(
        submission.columns
    )
    assert 0.0 <= result["ensemble_test_accuracy"] <= 1.0
    assert result["best_single"] in DEMO_MODELS
    assert (ws / "ensembles" / "best.yaml").is_file()


def test_full_demo_bags_the_strongest_model_and_fast_does_not(tmp_path):
    from ensemblecv.demo import DEMO_BAGS, demo_configs
    from ensemblecv.training.runner import bag_members

    full = [
        m.run_name
        for c in demo_configs(tmp_path, fast=False, dataset="digits")
        for m in bag_members(c)
    ]
    fast = [
        m.run_name
        for c in demo_configs(tmp_path, fast=True, dataset="digits")
        for m in bag_members(c)
    ]
    assert fast == list(DEMO_MODELS)
    ((bagged, n),) = DEMO_BAGS.items()
    assert [f"{bagged}_r{r}" for r in range(n)] == [r for r in full if r.startswith(bagged)]
    assert len(full) == len(DEMO_MODELS) - 1 + n
    # Full-demo runs predict the test set with one refit model, as each OOF row was predicted.
    assert all(c.train.refit_full for c in demo_configs(tmp_path, fast=False, dataset="digits"))
    assert not any(c.train.refit_full for c in demo_configs(tmp_path, fast=True, dataset="digits"))
