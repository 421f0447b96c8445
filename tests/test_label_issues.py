"""Label issues from out-of-fold probabilities on a fabricated workspace (nothing is trained)."""

from __future__ import annotations

from pathlib import Path

import fakes  # tests/fakes.py
import numpy as np
import pandas as pd
import pytest
import typer
import yaml
from PIL import Image
from typer.testing import CliRunner

from ensemblecv.cli.clean_commands import register
from ensemblecv.errors import EnsembleCVError
from ensemblecv.label_issues import (
    confident_joint,
    find_label_issues,
    flag_label_issues,
    label_quality,
    read_exclusions,
    write_exclusions,
    write_label_issue_report,
)
from ensemblecv.workspace import prepare_workspace

CLASSES = ["ant", "bee", "cow"]
PER_CLASS = 8
FOLDS = 3
PLANTED = {0: 1, 9: 2, 20: 0}  # fold-table row → the class its image "really" shows


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _oof(labels: np.ndarray, seed: int) -> np.ndarray:
    """Right and fairly confident everywhere, except planted rows: confidently another class."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=0.3, size=(len(labels), len(CLASSES)))
    logits[np.arange(len(labels)), labels] += 2.5
    for row, other in PLANTED.items():
        logits[row] = -2.0
        logits[row, other] = 3.0
    return _softmax(logits).astype(np.float32)


def _fake_run(ws: Path, name: str, seed: int) -> np.ndarray:
    folds = pd.read_parquet(ws / "folds.parquet")
    oof = _oof(folds["label"].to_numpy(), seed)
    reverse = lambda rows: rows[::-1]  # noqa: E731 - the store must realign
    fakes.write_run(ws, name, oof, yaml.safe_dump({"name": name}), rows_order=reverse)
    return oof


@pytest.fixture
def workspace(tmp_path) -> tuple[Path, dict[str, np.ndarray]]:
    data = tmp_path / "data"
    for c, name in enumerate(CLASSES):
        (data / name).mkdir(parents=True)
        for i in range(PER_CLASS):
            Image.new("RGB", (8, 8), (70 * c + 10, 25 * i + 5, 99)).save(data / name / f"{i}.png")
    ws = tmp_path / "ws"
    prepare_workspace(ws, str(data), folds=FOLDS, seed=0, workers=0)
    return ws, {"cnn_a": _fake_run(ws, "cnn_a", 0), "cnn_b": _fake_run(ws, "cnn_b", 1)}


def _planted_ids(ws: Path) -> set[str]:
    ids = pd.read_parquet(ws / "folds.parquet")["sample_id"].to_numpy()
    return {ids[r] for r in PLANTED}


@pytest.mark.parametrize("method", ["self_confidence", "normalized_margin"])
def test_planted_mislabels_rank_first_and_are_flagged(workspace, method):
    ws, _ = workspace
    df = find_label_issues(ws, run="cnn_a", method=method)
    planted = _planted_ids(ws)
    assert len(df) == len(CLASSES) * PER_CLASS
    assert set(df.head(len(planted))["sample_id"]) == planted
    assert set(df.loc[df["is_issue"], "sample_id"]) == planted
    assert list(df["rank"]) == list(range(1, len(df) + 1))
    assert df["score"].is_monotonic_decreasing
    top = df.set_index("sample_id")
    folds = pd.read_parquet(ws / "folds.parquet").set_index("sample_id")
    classes = np.array(CLASSES)
    rows = pd.read_parquet(ws / "folds.parquet")["sample_id"].to_numpy()
    for row, other in PLANTED.items():
        sid = rows[row]
        assert top.loc[sid, "given"] == classes[folds.loc[sid, "label"]]
        assert top.loc[sid, "suggested"] == CLASSES[other] and top.loc[sid, "suggested_prob"] > 0.8
        assert Path(top.loc[sid, "path"]).is_file()
    assert df.attrs["source"] == "cnn_a"


def test_best_ensemble_averages_members_with_its_weights(workspace):
    ws, oofs = workspace
    (ws / "ensembles").mkdir()
    spec = {
        "name": "weighted_average",
        "method": "weighted_average",
        "params": {},
        "members": ["cnn_a", "cnn_b"],
        "weights": {"cnn_a": 3.0, "cnn_b": 1.0},
    }
    (ws / "ensembles" / "best.yaml").write_text(yaml.safe_dump(dict(spec, alias="best")))
    df = find_label_issues(ws)  # run=None: the best ensemble
    assert df.attrs["source"].startswith("best (weighted_average")
    expected = 0.75 * oofs["cnn_a"].astype(np.float64) + 0.25 * oofs["cnn_b"]
    labels = pd.read_parquet(ws / "folds.parquet")["label"].to_numpy()
    ids = pd.read_parquet(ws / "folds.parquet")["sample_id"].to_numpy()
    got = df.set_index("sample_id").loc[ids, "self_confidence"].to_numpy()
    np.testing.assert_allclose(got, expected[np.arange(len(labels)), labels], rtol=1e-6)
    assert set(df.loc[df["is_issue"], "sample_id"]) == _planted_ids(ws)


def test_run_choice_errors(workspace):
    ws, _ = workspace
    with pytest.raises(EnsembleCVError, match="pick one with --run"):
        find_label_issues(ws)  # two runs, no best ensemble
    with pytest.raises(EnsembleCVError, match="Runs: cnn_a, cnn_b"):
        find_label_issues(ws, run="cnn_z")
    with pytest.raises(EnsembleCVError, match="available: self_confidence"):
        find_label_issues(ws, run="cnn_a", method="entropy")


def test_frac_flags_the_top_fraction(workspace):
    ws, _ = workspace
    df = find_label_issues(ws, run="cnn_b", frac=0.25)
    assert df["is_issue"].sum() == 6 and df.loc[df["is_issue"], "rank"].max() == 6


def test_exclusion_list_format(workspace, tmp_path):
    ws, _ = workspace
    df = find_label_issues(ws, run="cnn_a")
    path = write_exclusions(df, tmp_path / "lists" / "exclude.csv")
    text = path.read_text(encoding="utf-8").splitlines()
    assert text[0] == "sample_id,reason" and len(text) == 1 + len(PLANTED)
    table = read_exclusions(path)
    assert list(table.columns) == ["sample_id", "reason"]
    assert set(table["sample_id"]) == _planted_ids(ws)
    assert table["reason"].str.startswith("label issue: given ").all()
    assert len(read_exclusions(write_exclusions(df, tmp_path / "one.csv", top=1))) == 1
    (tmp_path / "bad.csv").write_text("id\nx\n")
    with pytest.raises(EnsembleCVError, match="needs a 'sample_id' column"):
        read_exclusions(tmp_path / "bad.csv")


def test_gallery_report(workspace, tmp_path):
    ws, _ = workspace
    df = find_label_issues(ws, run="cnn_a")
    page = write_label_issue_report(df, tmp_path / "report", top=4)
    assert page.read_text(encoding="utf-8").count("<tr>") == 5
    assert (tmp_path / "report" / "label_issues.png").read_bytes()[:4] == b"\x89PNG"
    assert len(pd.read_csv(tmp_path / "report" / "label_issues.csv")) == len(df)


def test_confident_joint_by_hand():
    labels = np.array([0, 0, 1, 1])
    probs = np.array([[0.9, 0.1], [0.55, 0.45], [0.2, 0.8], [0.95, 0.05]])
    joint, guess, thresholds = confident_joint(labels, probs)
    np.testing.assert_allclose(thresholds, [(0.9 + 0.55) / 2, (0.8 + 0.05) / 2])
    np.testing.assert_array_equal(guess, [0, 1, 1, 0])  # row 1: only class 1 reaches 0.425
    np.testing.assert_array_equal(joint, [[1, 1], [1, 1]])
    # Row 1 is off-diagonal but its top prediction is its label: not flagged.
    np.testing.assert_array_equal(flag_label_issues(labels, probs), [False, False, False, True])


def test_parity_with_cleanlab():
    cleanlab_filter = pytest.importorskip("cleanlab.filter")
    from cleanlab.rank import get_label_quality_scores

    rng = np.random.default_rng(0)
    n, k = 300, 4
    labels = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) * 1.5
    logits[np.arange(n), labels] += 1.5
    noisy = labels.copy()
    flip = rng.random(n) < 0.15
    noisy[flip] = (labels[flip] + rng.integers(1, k, flip.sum())) % k
    probs = _softmax(logits)
    expected = cleanlab_filter.find_label_issues(noisy, probs, filter_by="confident_learning")
    np.testing.assert_array_equal(flag_label_issues(noisy, probs), expected)
    assert 10 < expected.sum() < 150
    for method in ("self_confidence", "normalized_margin"):
        np.testing.assert_allclose(
            label_quality(noisy, probs, method),
            get_label_quality_scores(noisy, probs, method=method),
            rtol=1e-9,
        )


def test_cli_label_issues(workspace, tmp_path):
    ws, _ = workspace
    app = typer.Typer()
    register(app)
    excl = tmp_path / "exclude.csv"
    result = CliRunner().invoke(
        app,
        ["label-issues", str(ws), "--run", "cnn_a", "--top", "5", "--write-exclusions", str(excl)],
    )
    assert result.exit_code == 0, result.output
    assert "3 of 24 samples flagged" in result.output
    assert (ws / "label_issues" / "label_issues.html").is_file()
    assert set(read_exclusions(excl)["sample_id"]) == _planted_ids(ws)


def test_refitted_ensemble_uses_nested_oof(workspace):
    ws, _ = workspace
    (ws / "ensembles").mkdir()
    spec = {"name": "hard_voting", "method": "hard_voting", "params": {}, "weights": None}
    spec["members"] = ["cnn_a", "cnn_b"]
    (ws / "ensembles" / "hard_voting.yaml").write_text(yaml.safe_dump(spec))
    df = find_label_issues(ws, run="hard_voting")
    assert df.attrs["source"].startswith("hard_voting (hard_voting")
    assert set(df.head(len(PLANTED))["sample_id"]) == _planted_ids(ws)
