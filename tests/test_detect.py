"""Detection as a task: every detector trains a step and writes OOF detections, boxes follow
augmentation, training over folds stores exactly the validation images, resume after SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import detect_standin  # tests/detect_standin.py
import numpy as np
import pandas as pd
import pytest
import torch

from ensemblecv.config import load_config, to_yaml
from ensemblecv.errors import ConfigError, DataError

detect_standin.install()

pytestmark = pytest.mark.usefixtures("one_thread")

BASE = [
    "task=detect",
    "data.image_size=64",
    "data.folds=2",
    "model.name=tiny_fcos",
    "train.batch_size=4",
    "train.epochs=1",
    "train.lr=0.003",
    "tracking=none",
    "augment.preset=detect",
    "data.num_workers=0",
]


def _config(data: Path, ws: Path, *overrides: str):
    return load_config(None, [*BASE, f"data.train={data}", f"workspace={ws}", *overrides], base={})


@pytest.fixture(scope="module")
def yolo_data(tmp_path_factory) -> Path:
    return detect_standin.make_yolo_dataset(tmp_path_factory.mktemp("det") / "data", n=16)


@pytest.fixture(scope="module")
def inputs(yolo_data, tmp_path_factory):
    from ensemblecv.tasks import get_task

    cfg = _config(yolo_data, tmp_path_factory.mktemp("ws"))
    return cfg, get_task("detect").prepare_inputs(cfg, progress=False)


# (name, backbone, image_size): small timm backbones under every head, the tiny built-in.
FAST = [
    ("tiny_fcos", None, 64),
    ("fcos", "resnet18", 64),
    ("retinanet", "convnext_atto", 64),
    ("fasterrcnn", "resnet18", 64),
    ("ssd", "vit_tiny_patch16_224", 64),  # the reports' ViT + SSD, as a backbone swap
    ("ssd", "resnet18", 64),
]
# torchvision's own detectors (ResNet-50 FPN and co.): slow on a CPU, one step each, batch 1
# (SSDlite's last BatchNorm sees 1x1 maps and needs 2 images).
TORCHVISION = [
    ("ssdlite320_mobilenet_v3_large", None, 2),
    ("fasterrcnn_mobilenet_v3_large_fpn", None, 1),
    ("retinanet_resnet50_fpn_v2", None, 1),
    ("fcos_resnet50_fpn", None, 1),
    ("fasterrcnn_resnet50_fpn_v2", None, 1),
    ("ssd300_vgg16", None, 1),
]


def _step_and_predict(inputs, tmp_path, name, backbone, batch):
    """One optimiser step on a training batch, then OOF detections of two validation images."""
    from ensemblecv.tasks import get_task

    cfg, inp = inputs
    overrides = {"name": name, "backbone": backbone}
    cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update=overrides)})
    task = get_task("detect")
    module = task.build_module(cfg, inp, 1)
    # Images with boxes and a background image, so both branches of the loss run.
    rows = [0, 4] if batch == 2 else [0]
    x, targets, _ = task.collate([task.dataset(inp, np.arange(16), True)[(r, r)] for r in rows])
    module.train()
    before = [p.detach().clone() for p in module.parameters() if p.requires_grad]
    opt = torch.optim.SGD([p for p in module.parameters() if p.requires_grad], lr=0.01)
    loss = sum(module.model(module.images(x), targets).values())
    assert torch.isfinite(loss)
    loss.backward()
    opt.step()
    changed = [
        not torch.equal(a, p)
        for a, p in zip(before, (p for p in module.parameters() if p.requires_grad))
    ]
    assert any(changed)
    val = np.flatnonzero(inp.folds["fold"].to_numpy() == 0)[:2]
    scores = task.write_predictions(module, inp, cfg, 0, tmp_path, val, torch.device("cpu"))
    dets = pd.read_parquet(tmp_path / "oof_detections.parquet")
    ids = set(inp.images["sample_id"].to_numpy()[val])
    assert list(dets.columns) == [
        "sample_id",
        "label",
        "class_name",
        "score",
        "x1",
        "y1",
        "x2",
        "y2",
    ]
    assert set(dets["sample_id"]) <= ids
    assert set(pd.read_parquet(tmp_path / "oof_samples.parquet")["sample_id"]) == ids
    assert (dets["score"] >= cfg.detect.score_threshold).all()
    assert (dets.groupby("sample_id").size() <= cfg.detect.max_detections).all()
    sizes = inp.images.set_index("sample_id").loc[dets["sample_id"]]
    assert (dets["x2"].to_numpy() <= sizes["width"].to_numpy() + 1e-3).all()  # original pixels
    assert (dets["label"].between(0, 2)).all() and "map" in scores


@pytest.mark.parametrize("name,backbone,size", FAST, ids=[f"{n}-{b}" for n, b, _ in FAST])
def test_detector_forward_backward_and_oof(inputs, tmp_path, name, backbone, size):
    _step_and_predict(inputs, tmp_path, name, backbone, batch=2)


@pytest.mark.slow
@pytest.mark.parametrize("name,backbone,batch", TORCHVISION, ids=[n for n, _, _ in TORCHVISION])
def test_torchvision_detector_forward_backward_and_oof(inputs, tmp_path, name, backbone, batch):
    _step_and_predict(inputs, tmp_path, name, backbone, batch=batch)


def test_every_registered_detector_is_tested():
    from ensemblecv.tasks.detect.models import list_detectors

    tested = {n for n, _, _ in FAST + TORCHVISION}
    assert set(list_detectors()) == tested


def test_unknown_names_and_offline_weights_fail_clearly(monkeypatch, tmp_path):
    from ensemblecv.config import DetectConfig, ModelConfig
    from ensemblecv.tasks.detect.models import create_detector

    def make(**kw):
        return create_detector(ModelConfig(**kw), 3, 64, [0.5] * 3, [0.2] * 3, DetectConfig())

    with pytest.raises(ConfigError, match="Unknown detector 'fcoss'. Did you mean fcos"):
        make(name="fcoss")
    with pytest.raises(ConfigError, match="is a detection head: set model.backbone"):
        make(name="ssd")
    with pytest.raises(ConfigError, match="model.backbone: Unknown model 'resnet5'"):
        make(name="fcos", backbone="resnet5")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))  # nothing cached
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="cannot be reached .*set model.pretrained to the local"):
        make(name="fcos_resnet50_fpn", pretrained=True)
    with pytest.raises(ConfigError, match="backbone_pretrained: true needs"):
        make(name="retinanet_resnet50_fpn_v2", backbone_pretrained=True)
    assert time.perf_counter() - start < 5


def test_freeze_and_batchnorm_policy_apply_to_the_backbone():
    from ensemblecv.config import DetectConfig, ModelConfig
    from ensemblecv.tasks.detect.models import create_detector

    cfg = ModelConfig(name="tiny_fcos", freeze=2, batchnorm="freeze")
    model = create_detector(cfg, 3, 64, [0.5] * 3, [0.2] * 3, DetectConfig())
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert any(".stem." in n for n in frozen) and any(".stages.0." in n for n in frozen)
    assert not any("head" in n for n in frozen if "bn" not in n and "norm" not in n)
    conv = [n for n in frozen if n.endswith(".stages.1.0.0.weight")]
    assert not conv  # stage 1 conv trains; only its BatchNorm is frozen by the policy
    # A timm trunk (features_only) counts stem, then stages, as a classifier does.
    timm_cfg = ModelConfig(name="fcos", backbone="resnet18", freeze=2)
    model = create_detector(timm_cfg, 3, 64, [0.5] * 3, [0.2] * 3, DetectConfig())
    frozen = {n.split(".")[3] for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {"conv1", "bn1", "layer1"}


def test_boxes_follow_flips_and_leave_with_low_visibility():
    from ensemblecv.config import AugmentConfig, DetectConfig
    from ensemblecv.tasks.detect.augment import build_box_transform

    img = np.zeros((64, 64, 3), np.uint8)
    boxes = np.array([[4.0, 10, 20, 30], [50, 50, 64, 64]], np.float32)
    flip = build_box_transform(AugmentConfig(ops=[{"name": "hflip", "p": 1.0}]), DetectConfig(), 64)
    _, out, labels = flip(img, boxes, np.array([0, 2]), seed=1)
    np.testing.assert_allclose(out, [[44, 10, 60, 30], [0, 50, 14, 64]], atol=1e-4)
    assert labels.tolist() == [0, 2]
    shift = {"name": "shift_scale_rotate", "shift": [0.4, 0.4], "scale": 0, "rotate": 0}
    shift.update(border="constant", p=1.0)  # reflect would mirror objects (and boxes) in
    tf = build_box_transform(AugmentConfig(ops=[shift]), DetectConfig(min_visibility=0.9), 64)
    _, out, labels = tf(img, boxes, np.array([0, 2]), seed=3)
    assert len(out) < 2 and len(out) == len(labels)  # the corner box is pushed out and dropped
    a = tf(img, boxes, np.array([0, 2]), seed=5)[1]
    b = tf(img, boxes, np.array([0, 2]), seed=5)[1]
    np.testing.assert_array_equal(a, b)  # a seed makes the augmentation a pure function
    with pytest.raises(ConfigError, match="'trivialaugment' moves pixels without moving boxes"):
        build_box_transform(AugmentConfig(preset="strong"), DetectConfig(), 64)


def test_seam_refuses_mixing_tasks_and_foreign_monitors(yolo_data, tmp_path):
    from ensemblecv.tasks import get_task, list_tasks

    assert {"classify", "detect"} <= set(list_tasks())
    with pytest.raises(ConfigError, match="'val_acc' is not logged by task 'detect'"):
        _config(yolo_data, tmp_path, "train.early_stopping.monitor=val_acc")
    cfg = _config(yolo_data, tmp_path / "ws", "train.early_stopping.patience=2")
    assert cfg.train.early_stopping.monitor == "val_map"
    from ensemblecv.launch.sweep import run_sweep

    with pytest.raises(ConfigError, match="'accuracy' is not a score of task 'detect'.*map"):
        run_sweep(cfg, {}, 1, metric="accuracy")
    get_task("detect").prepare_inputs(cfg, progress=False)
    info = json.loads((tmp_path / "ws/workspace.json").read_text())
    assert info["task"] == "detect" and info["samples"] == 16
    classify = load_config(
        None, [f"workspace={tmp_path / 'ws'}", f"data.train={yolo_data}"], base={}
    )
    from ensemblecv.training.inputs import open_workspace

    with pytest.raises(DataError, match="holds a 'detect' dataset"):
        open_workspace(classify, progress=False)


def _train_cli(cfg_path: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    cmd = [sys.executable, str(Path(__file__).with_name("detect_standin.py")), "train"]
    return subprocess.Popen(
        [*cmd, str(cfg_path), *args, "--no-progress"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
        env=env,
    )


def test_train_over_folds_then_resume_after_sigkill_gives_same_detections(yolo_data, tmp_path):
    from ensemblecv.training import train

    overrides = ["train.epochs=2", "train.scheduler=cosine"]
    reference = _config(yolo_data, tmp_path / "ref", *overrides)
    results = train(reference, progress=False)
    assert [r.fold for r in results] == ["0", "1"] and all("map" in r.metrics for r in results)
    run = tmp_path / "ref/runs/tiny_fcos"
    folds = pd.read_parquet(tmp_path / "ref/folds.parquet")
    seen = []
    for k in (0, 1):
        ids = pd.read_parquet(run / f"fold_{k}/oof_samples.parquet")["sample_id"].tolist()
        assert set(ids) == set(folds.loc[folds["fold"] == k, "sample_id"])  # exactly its images
        seen += ids
        history = pd.read_csv(run / f"fold_{k}/history.csv")
        assert list(history.columns[:4]) == ["epoch", "train_loss", "val_map", "val_map50"]
    assert sorted(seen) == sorted(folds["sample_id"])
    pooled = json.loads((run / "oof_metrics.json").read_text())
    assert set(pooled["folds"]) == {"0", "1"} and set(pooled["per_class"]) == set(
        detect_standin.CLASSES
    )
    board = pd.read_csv(tmp_path / "ref/leaderboard.csv")
    assert board.loc[0, "name"] == "tiny_fcos"
    assert board.loc[0, "map"] == pytest.approx(pooled["pooled"]["map"])

    cfg = _config(yolo_data, tmp_path / "killed", *overrides)
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(to_yaml(cfg))
    proc = _train_cli(cfg_path, "--folds", "0")
    history = tmp_path / "killed/runs/tiny_fcos/fold_0/history.csv"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if history.is_file() and len(pd.read_csv(history)) >= 1:
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (history.parent / "done.json").exists()
    train(cfg, folds=[0], resume=True, progress=False)
    a = pd.read_parquet(run / "fold_0/oof_detections.parquet")
    b = pd.read_parquet(history.parent / "oof_detections.parquet")
    assert len(a) > 0
    pd.testing.assert_frame_equal(a, b, check_exact=False, atol=1e-5)
    assert pd.read_csv(history)["epoch"].tolist() == [0, 1]  # no epoch twice after resume


def test_augment_preview_draws_boxes(yolo_data, tmp_path):
    from typer.testing import CliRunner

    from ensemblecv.cli import app

    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(to_yaml(_config(yolo_data, tmp_path / "ws")))
    out = tmp_path / "grid.png"
    result = CliRunner().invoke(app, ["augment-preview", str(cfg), "--out", str(out), "-n", "2"])
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = CliRunner().invoke(app, ["augment-preview", str(cfg), "augment.preset=strong"])
    assert isinstance(bad.exception, ConfigError)  # main() prints it as one error line
    assert "moves pixels without moving boxes" in str(bad.exception)
