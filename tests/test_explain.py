"""Grad-CAM overlays from checkpoints of randomly initialised models (nothing is trained).

A real workspace is prepared from a few tiny PNGs; a run folder gets a
``config.yaml`` and a ``fold_0/best.ckpt`` in the format the trainer writes
(``state_dict`` + plain ``hyper_parameters``), which is what
:func:`ensemblecv.inference.load_module` reads back.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("pytorch_grad_cam")

from ensemblecv.config import load_config, to_yaml  # noqa: E402
from ensemblecv.errors import EnsembleCVError  # noqa: E402
from ensemblecv.explain import (  # noqa: E402
    find_target_layer,
    gradcam_map,
    gradcam_overlays,
    resolve_items,
)
from ensemblecv.training.module import ClassifierModule  # noqa: E402
from ensemblecv.workspace import prepare_workspace  # noqa: E402

CLASSES = ["ant", "bee", "cow"]
FOLDS = 2
# (model name, channels, image size): the built-in CNNs and a tiny timm ViT
# (test_vit: patch 16, dynamic image size, so 64 px gives a 4 × 4 token grid).
MODELS = [
    ("mnist_cnn", 1, 28),
    ("cnn_small", 3, 32),
    ("resnet_mini", 3, 32),
    ("test_vit", 3, 64),
]


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("explain")
    rng = np.random.default_rng(0)
    for c, name in enumerate(CLASSES):
        for i in range(4):
            path = root / "data" / name / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            pixels = rng.integers(0, 255, size=(40, 40, 3), dtype=np.uint8)
            pixels[8 * c : 8 * c + 16, 10:30] = 255  # a bright bar that moves with the class
            Image.fromarray(pixels).save(path)
    ws = root / "ws"
    prepare_workspace(ws, str(root / "data"), folds=FOLDS, seed=0, workers=0)
    return ws


def _fake_run(ws: Path, name: str, model: str, channels: int, size: int) -> None:
    base = {
        "workspace": str(ws),
        "name": name,
        "data": {
            "train": str(ws),
            "folds": FOLDS,
            "channels": channels,
            "image_size": size,
            "normalize": "imagenet",
        },
        "model": {"name": model},
    }
    cfg = load_config(None, [], base=base)
    run = ws / "runs" / name
    (run / "fold_0").mkdir(parents=True, exist_ok=True)
    (run / "config.yaml").write_text(to_yaml(cfg), encoding="utf-8")
    torch.manual_seed(0)
    mean, std = [0.5] * channels, [0.25] * channels
    hp = dict(
        config=cfg.model_dump(mode="json"),
        num_classes=len(CLASSES),
        steps_per_epoch=1,
        mean=mean,
        std=std,
    )
    module = ClassifierModule(**hp)
    torch.save(
        {"state_dict": module.state_dict(), "hyper_parameters": hp}, run / "fold_0" / "best.ckpt"
    )


@pytest.mark.parametrize("model,channels,size", MODELS)
def test_overlays_for_cnns_and_vit(workspace, tmp_path, model, channels, size):
    _fake_run(workspace, model, model, channels, size)
    ids = ["ant/0.png", "cow/1.png"]
    out = gradcam_overlays(workspace, model, ids, tmp_path / "cams", target="pred")
    assert [p.name for p in out] == ["gradcam_00_0.png", "gradcam_01_1.png"]
    for path in out:
        with Image.open(path) as img:
            assert img.size[0] > 200 and img.size[1] > 100
            assert np.asarray(img.convert("L")).std() > 5  # a picture, not a blank canvas


def _config(model: str, channels: int, size: int) -> dict:
    base = {
        "data": {"train": "unused", "channels": channels, "image_size": size},
        "model": {"name": model},
    }
    return load_config(None, [], base=base).model_dump(mode="json")


@pytest.mark.parametrize("model,channels,size", MODELS)
def test_heatmap_is_not_constant(model, channels, size):
    torch.manual_seed(0)
    module = ClassifierModule(_config(model, channels, size), len(CLASSES), 1).eval()
    x = torch.randn(1, channels, size, size)
    x[:, :, : size // 2, : size // 2] += 2.0  # structure the map can point at
    cam, probs = gradcam_map(module.model, x, target=None)
    assert cam.shape == (size, size)
    assert np.isfinite(cam).all() and cam.min() >= 0 and cam.max() <= 1 + 1e-6
    assert cam.std() > 1e-3, "Grad-CAM gave a constant map"
    assert probs.shape == (len(CLASSES),) and abs(probs.sum() - 1) < 1e-5


def test_target_layer_choice():
    vit = ClassifierModule(_config("test_vit", 3, 64), 3, 1).model
    layer, is_vit = find_target_layer(vit)
    assert is_vit and layer is vit.blocks[-1].norm1
    cnn = ClassifierModule(_config("cnn_small", 3, 32), 3, 1).model
    layer, is_vit = find_target_layer(cnn)
    assert not is_vit and layer is [m for m in cnn.modules() if isinstance(m, torch.nn.Conv2d)][-1]


def test_true_target_and_errors(workspace, tmp_path):
    _fake_run(workspace, "cnn", "cnn_small", 3, 32)
    image = workspace.parent / "data" / "bee" / "2.png"
    items = resolve_items(workspace, ["bee/2.png", str(image)])
    assert items[0].label == 1 and items[0].fold is not None
    assert items[1].label is None and items[1].path == str(image)
    out = gradcam_overlays(workspace, "cnn", ["bee/2.png"], tmp_path, target="true")
    assert out[0].is_file()
    with pytest.raises(EnsembleCVError, match="needs a labelled workspace sample"):
        gradcam_overlays(workspace, "cnn", [str(image)], tmp_path, target="true")
    with pytest.raises(EnsembleCVError, match="Not an image file nor a sample id"):
        gradcam_overlays(workspace, "cnn", ["nope/x.png"], tmp_path)
    with pytest.raises(EnsembleCVError, match="outside 0..2"):
        gradcam_overlays(workspace, "cnn", ["bee/2.png"], tmp_path, target=7)


def test_explain_cli(workspace, tmp_path):
    import json

    import pandas as pd
    import typer
    from typer.testing import CliRunner

    from ensemblecv.cli.report_commands import register

    _fake_run(workspace, "cli_run", "mnist_cnn", 1, 28)
    run = workspace / "runs" / "cli_run"
    folds = pd.read_parquet(workspace / "folds.parquet")
    rng = np.random.default_rng(0)
    for k in range(FOLDS):  # OOF predictions so --worst has errors to pick from
        fold = run / f"fold_{k}"
        fold.mkdir(exist_ok=True)
        ids = folds.loc[folds["fold"] == k, "sample_id"]
        np.save(fold / "oof_probs.npy", rng.dirichlet(np.ones(3), len(ids)).astype(np.float32))
        pd.DataFrame({"sample_id": ids}).to_parquet(fold / "oof_samples.parquet", index=False)
        (fold / "done.json").write_text(json.dumps({"fold": k}))
    app = typer.Typer()
    register(app)
    image = str(workspace.parent / "data" / "ant" / "1.png")
    args = [
        "explain",
        str(workspace),
        "--run",
        "cli_run",
        "--images",
        image,
        "bee/0.png",
        "--worst",
        "2",
        "--out",
        str(tmp_path / "cams"),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "cams").glob("gradcam_*.png"))) == 4
    result = CliRunner().invoke(app, ["explain", str(workspace), "--run", "cli_run"])
    assert isinstance(result.exception, EnsembleCVError)
