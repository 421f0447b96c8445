"""task: segment end to end on a tiny generated dataset: train → OOF maps → ensembles → predict → report."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ensemblecv.config import load_config
from ensemblecv.tasks import workspace_task
from ensemblecv.tasks.segment.synthetic import CLASSES, make_shapes_dataset

CHROMIUM = Path("/usr/bin/chromium")


def _config(ws: Path, data: Path, name: str, **extra):
    base = {
        "workspace": str(ws), "task": "segment", "name": name,
        "data": {"train": str(data / "train"), "test": str(data / "test"), "image_size": 32,
                 "folds": 2, "num_workers": 0},
        "model": {"name": "tiny_unet"},
        "train": {"epochs": 1, "batch_size": 4, "lr": 0.01, "seed": extra.pop("seed", 0)},
        "segment": extra.pop("segment", {}),
        "tracking": {"backend": "none"}, "trainer": {"accelerator": "cpu"},
    }  # fmt: skip
    return load_config(None, [], base=base)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from ensemblecv.training import train

    root = tmp_path_factory.mktemp("seg")
    data = make_shapes_dataset(root / "data", n_train=12, n_test=4, size=(24, 32), seed=3)
    ws = root / "ws"
    train(_config(ws, data, "a", segment={"tta": ["hflip"]}), progress=False)
    train(_config(ws, data, "b", seed=1, segment={"store_dtype": "float16"}), progress=False)
    return ws, data


def test_oof_maps_cover_exactly_each_folds_validation_images(trained):
    ws, _ = trained
    folds = pd.read_parquet(ws / "folds.parquet")
    for run, dtype in (("a", np.uint8), ("b", np.float16)):
        seen = []
        for k in range(2):
            d = ws / "runs" / run / f"fold_{k}"
            ids = pd.read_parquet(d / "oof_samples.parquet")["sample_id"].tolist()
            assert sorted(ids) == sorted(folds.loc[folds["fold"] == k, "sample_id"])
            maps = np.load(d / "oof_maps.npy", mmap_mode="r")
            assert isinstance(maps, np.memmap) and maps.dtype == dtype
            assert maps.shape[:2] == (len(ids), len(CLASSES))
            seen += ids
        assert sorted(seen) == sorted(folds["sample_id"])
    assert (ws / "runs" / "a" / "fold_0" / "oof_maps_tta.npy").is_file()
    assert not (ws / "runs" / "b" / "fold_0" / "oof_maps_tta.npy").is_file()


def test_run_summary_scores_stored_and_full_resolution(trained):
    import json

    ws, _ = trained
    metrics = json.loads((ws / "runs" / "a" / "oof_metrics.json").read_text())
    assert 0 <= metrics["stored"]["miou"] <= 1 and 0 <= metrics["full"]["miou"] <= 1
    # store side is capped at the model's input size (32): maps of 24x32 images lose little
    assert abs(metrics["stored"]["miou"] - metrics["full"]["miou"]) < 0.05
    board = pd.read_csv(ws / "leaderboard.csv")
    assert {"a", "a+tta", "b"} <= set(board["name"])


def test_ensembles_scored_nested_with_test_scores(trained):
    ws, _ = trained
    task = workspace_task(ws)
    board = task.build_ensembles(ws, None, None, None)
    kinds = dict(zip(board["name"], board["kind"]))
    assert kinds["a"] == "model" and kinds["map_greedy"] == "ensemble"
    assert {"map_mean", "map_geometric", "map_greedy_geometric"} <= set(board["name"])
    assert board["miou"].is_monotonic_decreasing
    assert board["test_miou"].notna().all()
    mean_row = board.set_index("name").loc["map_mean"]
    # equal weights have nothing to fit: nested and in-sample scores coincide
    assert mean_row["miou"] == pytest.approx(mean_row["optimistic_miou"])
    view = task.leaderboard_view(board)
    assert list(view.columns[:4]) == ["name", "kind", "members", "mIoU"]
    assert (ws / "ensembles" / "best.yaml").is_file()


def test_predict_writes_one_palette_png_per_image_at_its_size(trained, tmp_path):
    import typer
    from typer.testing import CliRunner

    from ensemblecv.cli.ensemble_commands import register

    ws, data = trained
    workspace_task(ws).build_ensembles(ws, ["map_mean"], None, None)
    app = typer.Typer()
    register(app)
    out, probs = tmp_path / "masks", tmp_path / "probs"
    args = ["predict", str(ws), "--data", str(data / "test" / "images"), "--out", str(out),
            "--ensemble", "map_mean", "--probs", str(probs)]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    images = sorted((data / "test" / "images").glob("*.png"))
    assert sorted(p.name for p in out.iterdir()) == [p.name for p in images]
    for img in images:
        with Image.open(out / img.name) as m, Image.open(img) as src:
            assert m.mode == "P" and m.size == src.size
            assert np.asarray(m).max() < len(CLASSES)
        p = np.load(probs / f"{img.stem}.npy")
        assert p.shape == (len(CLASSES), src.size[1], src.size[0]) and p.dtype == np.uint8
    # Without a progress bar (the demo's --no-progress) the same masks come out.
    quiet = tmp_path / "quiet"
    workspace_task(ws).predict(ws, str(data / "test" / "images"), quiet, "map_mean", {}, False)
    for img in images:
        assert (quiet / img.name).read_bytes() == (out / img.name).read_bytes()
    result = CliRunner().invoke(app, [*args[:-2], "--tta", "vflip"])
    assert result.exit_code != 0 and "hflip" in str(result.exception or result.output)


def test_report_sections(trained, tmp_path):
    ws, _ = trained
    workspace_task(ws).build_ensembles(ws, None, None, None)
    page = workspace_task(ws).build_report(ws, tmp_path / "report", {"max_gallery": 4})
    html = page.read_text()
    for needle in ("per-class IoU", "Worst images", "confusion", "leaderboard", "circle"):
        assert needle in html
    assert (page.parent / "img" / "worst.png").is_file()
    if CHROMIUM.is_file():
        import subprocess

        cmd = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
               f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", page.resolve().as_uri()]  # fmt: skip
        dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        body = re.search(r"<body([^>]*)>", dom.stdout).group(1)
        assert 'data-images-ok="yes"' in body and 'data-js-errors=""' in body, body


def test_demo_is_registered():
    from ensemblecv.demo import list_demo_tasks

    assert "segment" in list_demo_tasks()
