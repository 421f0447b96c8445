"""``build_report`` over a small fabricated workspace, and the page in headless Chromium.

The workspace is real (prepared from tiny PNGs); runs are fabricated the way
the trainer writes them (config, history, OOF/test probabilities, done.json),
and the best run also gets randomly initialised fold checkpoints so the
Grad-CAM section has something to explain. ``build_ensembles`` writes the
leaderboard and specs, as ``ensemblecv ensemble`` would.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import fakes  # tests/fakes.py
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from ensemblecv.config import load_config, to_yaml
from ensemblecv.ensemble import build_ensembles
from ensemblecv.report import build_report, most_confident_errors
from ensemblecv.report.figures import most_confused_classes
from ensemblecv.workspace import prepare_workspace

CLASSES = ["ant", "bee", "c&t <x>"]  # a name that must be escaped in the page
PER_CLASS = 6
FOLDS = 3
RUNS = {"cnn_a": 1.5, "cnn_b": 1.0, "cnn_c": 0.5}  # run name → signal of its logits
CHROMIUM = Path("/usr/bin/chromium")


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def _probs(labels: np.ndarray, signal: float, rng) -> np.ndarray:
    logits = rng.normal(size=(len(labels), len(CLASSES)))
    logits[np.arange(len(labels)), labels] += signal
    e = np.exp(logits - logits.max(1, keepdims=True))
    return (e / e.sum(1, keepdims=True)).astype(np.float32)


def _history(epochs: int, rng) -> pd.DataFrame:
    t = np.arange(epochs)
    return pd.DataFrame(
        {
            "epoch": t,
            "train_loss": 1.0 / (t + 1),
            "train_acc": 1 - 0.5 / (t + 1),
            "val_loss": 0.6 + 0.02 * (t - 3) ** 2 + rng.normal(0, 0.01, epochs),
            "val_acc": 0.7 + 0.02 * t,
            "lr": 1e-3,
            "time_s": t + 1.0,
            "train_time_s": t + 0.8,
        }
    )


def _checkpoint(cfg, path: Path) -> None:
    from ensemblecv.training.module import ClassifierModule

    torch.manual_seed(0)
    hp = dict(
        config=cfg.model_dump(mode="json"),
        num_classes=len(CLASSES),
        steps_per_epoch=1,
        mean=[0.5],
        std=[0.25],
    )
    state = {"state_dict": ClassifierModule(**hp).state_dict(), "hyper_parameters": hp}
    torch.save(state, path)


def _fake_run(ws: Path, data: Path, name: str, signal: float, seed: int, ckpt: bool) -> None:
    rng = np.random.default_rng(seed)
    folds = pd.read_parquet(ws / "folds.parquet")
    oof = _probs(folds["label"].to_numpy(), signal, rng)
    base = {
        "workspace": str(ws),
        "name": name,
        "data": {"train": str(data), "folds": FOLDS},
        "model": {"name": "mnist_cnn"},
    }
    cfg = load_config(None, [], base=base)

    def extra(fold_dir: Path, k: int) -> None:
        _history(6, rng).to_csv(fold_dir / "history.csv", index=False)
        if ckpt:
            _checkpoint(cfg, fold_dir / "best.ckpt")

    fakes.write_run(ws, name, oof, to_yaml(cfg), fold_extra=extra)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("report")
    data = root / "data"
    for c, name in enumerate(CLASSES):
        for i in range(PER_CLASS):
            path = data / name / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (16, 16), (70 * c + 10, 35 * i + 5, 99)).save(path)
    ws = root / "ws"
    prepare_workspace(ws, str(data), folds=FOLDS, seed=0, workers=0)
    for seed, (name, signal) in enumerate(RUNS.items()):
        _fake_run(ws, data, name, signal, seed, ckpt=name == "cnn_a")
    (ws / "runs" / "unfinished" / "fold_0").mkdir(parents=True)
    _history(3, np.random.default_rng(9)).to_csv(ws / "runs/unfinished/fold_0/history.csv")
    (ws / "audit").mkdir()
    audit = {
        "n_images": 18,
        "n_ok": 18,
        "n_bad": 0,
        "n_classes": 3,
        "imbalance_ratio": 1.0,
        "duplicates": {"n_within_class_groups": 0, "n_cross_class_groups": 0},
        "warnings": [{"level": "warning", "message": "tiny <dataset>"}],
    }
    (ws / "audit" / "audit.json").write_text(json.dumps(audit))
    with pytest.warns(UserWarning, match="'unfinished' is left out"):
        build_ensembles(ws, methods=["ensemble_selection", "soft_voting", "stacking"])
    return ws


@pytest.fixture(scope="module")
def report(workspace) -> Path:
    return build_report(workspace)


def test_report_has_every_section(workspace, report):
    assert report == workspace / "report" / "index.html"
    page = report.read_text(encoding="utf-8")
    board = pd.read_csv(workspace / "leaderboard.csv")
    for name in board["name"]:
        assert f">{name}<" in page
    assert 'id="per-class"' in page and 'class="sortable"' in page
    assert "c&amp;t &lt;x&gt;" in page and "c&t <x>" not in page
    assert "tiny &lt;dataset&gt;" in page  # the audit summary, escaped
    for src in re.findall(r'<img src="([^"]+)"', page):
        assert (report.parent / src).is_file(), src
    curves = re.findall(r'src="(img/curves_[^"]+)"', page)
    assert len(curves) == 4  # three complete runs and the unfinished one
    assert 'src="img/confusion.png"' in page and 'src="img/recall_heatmap.png"' in page
    assert 'src="img/gallery.png"' in page
    assert len(re.findall(r'src="img/gradcam/[^"]+\.png"', page)) >= 1
    assert page.count("<details><summary>cnn_") == 3  # configs
    assert "http://" not in page and "https://" not in page  # no external resource


def test_report_without_checkpoints_or_gradcam(workspace, tmp_path):
    page = build_report(workspace, out=tmp_path / "r", gradcam=False).read_text(encoding="utf-8")
    assert "Grad-CAM was not requested" in page and "img/gradcam" not in page
    ckpts = sorted((workspace / "runs" / "cnn_a").glob("fold_*/best.ckpt"))
    moved = [p.rename(p.with_suffix(".bak")) for p in ckpts]
    try:
        page = build_report(workspace, out=tmp_path / "r2").read_text(encoding="utf-8")
    finally:
        for p in moved:
            p.rename(p.with_suffix(".ckpt"))
    assert "No Grad-CAM: run cnn_a has no checkpoints" in page


def test_error_helpers():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    y = np.array([1, 1, 1, 0])
    assert most_confident_errors(probs, y, 5).tolist() == [0, 3, 2]
    cm = np.array([[5, 0, 3], [1, 5, 0], [0, 0, 5]])
    assert most_confused_classes(cm, 2) == [0, 2]
    assert most_confused_classes(cm, 3) == [0, 1, 2]  # few classes: all of them
    assert most_confused_classes(np.eye(3, dtype=int), 5) == []


def _chromium(page: Path, tmp: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp / 'profile'}",
        "--enable-logging=stderr",
        "--v=0",
        *args,
        page.resolve().as_uri(),
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def page_console_messages(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "CONSOLE" in line]


@pytest.mark.skipif(not CHROMIUM.is_file(), reason="needs Debian's chromium at /usr/bin/chromium")
def test_report_in_headless_chromium(report, tmp_path):
    dom = _chromium(report, tmp_path, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    body = re.search(r"<body([^>]*)>", dom.stdout).group(1)
    assert 'data-images-ok="yes"' in body, body
    assert 'data-js-errors=""' in body, body
    assert int(re.search(r'data-n-images="(\d+)"', body).group(1)) >= 7
    assert page_console_messages(dom.stderr) == []
    shot = tmp_path / "shot.png"
    run = _chromium(
        report, tmp_path, f"--screenshot={shot}", "--window-size=1280,2000", "--hide-scrollbars"
    )
    assert run.returncode == 0 and shot.is_file(), run.stderr[-2000:]
    shutil.copy(shot, report.parent / "screenshot.png")  # kept beside the report for a look
    with Image.open(shot) as img:
        pixels = np.asarray(img.convert("RGB"))
    assert pixels.shape[:2] == (2000, 1280)
    assert pixels.std() > 10 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50


def test_report_cli(workspace, tmp_path):
    import typer
    from typer.testing import CliRunner

    from ensemblecv.cli.report_commands import register

    app = typer.Typer()
    register(app)
    args = [
        "report",
        str(workspace),
        "--out",
        str(tmp_path / "r"),
        "--no-gradcam",
        "--max-gallery",
        "3",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "r" / "index.html").is_file() and "Wrote" in result.output
