"""Box ensembles as estimators and on the leaderboard: fitted on OOF detections, nested scores
that never see the scored fold, test-time fold bagging, specs that predict again."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from detect_box_fakes import RUNS, make_detect_workspace

from ensemblecv.ensemble import NMS, DetectionTruth, SoftNMS, WeightedBoxesFusion, list_box_methods
from ensemblecv.errors import EnsembleCVError
from ensemblecv.tasks.detect import ensembles as det_ens
from ensemblecv.tasks.detect.store import DetectionStore

SMALL = {"iou_thrs": (0.5, 0.6), "skip_box_thrs": (0.0,), "max_rounds": 2}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return make_detect_workspace(tmp_path_factory.mktemp("detws") / "ws", hflip=True)


@pytest.fixture(scope="module")
def board(workspace):
    params = {m: SMALL for m in list_box_methods()}
    return det_ens.build_box_ensembles(workspace, params=params)


def test_store_members_include_the_tta_views(workspace):
    store = DetectionStore(workspace)
    assert store.names == ["det_a", "det_a+hflip", "det_b", "det_b+hflip", "det_c", "det_c+hflip"]
    oof = store.oof("det_a")
    assert set(oof["sample_id"]) <= set(store.images["sample_id"])
    truth = store.test_truth()
    assert truth is not None and len(truth.images) == 18
    bagged = store.test("det_a", truth.images)  # no refit: the fold models fused by WBF
    assert bagged["score"].max() <= 1 and len(bagged) > 0


def test_estimator_contract_and_fit_on_identical_members(workspace):
    store = DetectionStore(workspace)
    truth = store.truth()
    a = store.oof("det_a")
    est = WeightedBoxesFusion(**SMALL)
    assert not hasattr(est, "weights_") and est.get_params()["iou_thrs"] == (0.5, 0.6)
    with pytest.raises(EnsembleCVError, match="not fitted"):
        est.predict([a], truth.images)
    assert est.fit([a, a], truth) is est
    assert est.weights_.sum() == pytest.approx(1) and est.iou_thr_ in (0.5, 0.6)
    fused = est.predict([a, a], truth.images)
    # WBF of two identical members is the member (its own duplicates merge at most).
    assert len(fused) <= len(a) and fused["score"].max() <= 1
    with pytest.raises(EnsembleCVError, match="3 members given, the ensemble was fitted on 2"):
        est.predict([a, a, a], truth.images)
    with pytest.raises(EnsembleCVError, match="not a COCO metric"):
        NMS(metric="accuracy").fit([a], truth)
    with pytest.raises(EnsembleCVError, match="list of detection tables"):
        SoftNMS().fit(a, truth)


def test_nested_scores_never_see_the_scored_fold(workspace, monkeypatch):
    store = DetectionStore(workspace)
    fits, predicted = [], []

    class Spy(WeightedBoxesFusion):
        def fit(self, members, truth: DetectionTruth):
            fits.append(set(truth.images["sample_id"]))
            return super().fit(members, truth)

        def predict(self, members, images):
            predicted.append(set(images["sample_id"]))
            return super().predict(members, images)

    monkeypatch.setattr(det_ens, "get_box_method", lambda name: Spy)
    det_ens.fit_box_method(store, "wbf", ["det_a", "det_b"], "map", SMALL)
    fold_ids = [set(store.images["sample_id"][store.fold_of == k]) for k in range(3)]
    for k in range(3):  # the nested fits: trained without fold k, predicting fold k only
        assert fits[k] == set().union(*fold_ids) - fold_ids[k]
        assert predicted[k] == fold_ids[k]
    assert fits[3] == set().union(*fold_ids)  # then the fit on everything


def test_leaderboard_ranks_nested_scores_with_optimistic_beside(workspace, board):
    names = set(board["name"])
    assert set(DetectionStore(workspace).names) | set(list_box_methods()) == names
    assert list(board["map"]) == sorted(board["map"], reverse=True)
    ens = board[board["kind"] == "ensemble"]
    assert ens["optimistic_map"].notna().all()
    # Tuned on the same detections, the in-sample score is at least the nested one on average.
    assert (ens["optimistic_map"] - ens["map"]).mean() > -0.01
    assert {"map50", "ar100", "test_map"} <= set(board.columns)
    best_single = board[board["kind"] == "model"]["map"].max()
    assert board.loc[board["name"] == "wbf", "map"].item() > best_single  # fusion pays here
    view = det_ens.leaderboard_view(board)
    assert list(view.columns[:6]) == ["name", "kind", "members", "mAP (nested)", "mAP@.5", "AR@100"]
    assert "mAP (optimistic)" in view and "test mAP" in view


def test_specs_rebuild_the_fit_and_fuse_test_detections_again(workspace, board):
    spec = yaml.safe_load((workspace / "ensembles" / "wbf.yaml").read_text())
    assert spec["task"] == "detect" and set(spec["members"]) <= set(spec["candidates"])
    store = DetectionStore(workspace)
    truth = store.test_truth()
    members = [store.test(m, truth.images) for m in spec["members"]]
    fused = det_ens.fuse_members(spec, members, truth.images)
    from ensemblecv.ensemble.boxes import MapScorer, pack

    score = MapScorer(truth).scores(pack(fused, truth.images))["map"]
    assert score == pytest.approx(spec["scores"]["test"]["map"], abs=1e-6)
    best = yaml.safe_load((workspace / "ensembles" / "best.yaml").read_text())
    assert best["name"] == board.loc[0, "name"]


def test_bad_requests_fail_clearly(workspace):
    with pytest.raises(EnsembleCVError, match="Unknown box ensemble method"):
        det_ens.build_box_ensembles(workspace, methods=["wbff"])
    with pytest.raises(EnsembleCVError, match="No complete detection run 'nope'"):
        det_ens.build_box_ensembles(workspace, runs=["nope", "det_a"])
    with pytest.raises(EnsembleCVError, match="Unknown detection metric"):
        det_ens.build_box_ensembles(workspace, metric="accuracy")


def test_cli_ensemble_dispatches_to_the_detection_task(workspace, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from ensemblecv.cli import app
    from ensemblecv.cli._console import console

    # The CLI's console is made once per process; a width set by an earlier test would wrap
    # the headers this test reads.
    monkeypatch.setattr(console, "width", 200)

    result = CliRunner().invoke(app, ["ensemble", str(workspace), "--methods", "nms",
                                      "--runs", "det_a,det_b"], env={"COLUMNS": "200"})  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "mAP (nested)" in result.output and "nms" in result.output
    board = pd.read_csv(workspace / "leaderboard.csv")
    assert set(board["name"]) == {"det_a", "det_b", "nms"}
    assert len(RUNS) == 3 and np.isfinite(board["map"]).all()
