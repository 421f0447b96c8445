"""Recipes (``recipe: NAME``), batch tensor augmentation and the EMA weights they train with."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from ensemblecv.config import BatchAugmentConfig, load_config, to_yaml, validate_config
from ensemblecv.errors import ConfigError
from ensemblecv.recipes import get_recipe, list_recipes, merge_under
from ensemblecv.training import train

# ---------------------------------------------------------------- data


def _bars(kind: int, rng: np.random.Generator, size: int = 16) -> np.ndarray:
    img = np.full((size, size), 255, np.uint8)
    off = int(rng.integers(0, 3))
    if kind == 0:
        img[off::4, :] = 0
    elif kind == 1:
        img[:, off::4] = 0
    else:
        img[4 + off : 12 - off, 4:12] = 0
    return img


@pytest.fixture(scope="module")
def bars(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bars")
    rng = np.random.default_rng(0)
    for split, n in (("train", 12), ("test", 3)):
        for c, name in enumerate(["horizontal", "vertical", "square"]):
            d = root / split / name
            d.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(_bars(c, rng)).save(d / f"{i}.png")
    return root


#: What makes a recipe's run tiny without touching what the recipe is about.
TINY = {
    "small-cpu": ["data.image_size=16", "train.batch_size=8"],
    "finetune-224": ["data.image_size=32", "model.pretrained=false", "train.batch_size=8"],
    "detect-small": ["data.image_size=64", "train.batch_size=4", "augment.preset=detect"],
    "segment-voc": ["data.image_size=32", "model.backbone_pretrained=false", "train.batch_size=2"],
    "segment-small": ["data.image_size=32", "train.batch_size=4"],
}


def _recipe_config(name: str, bars: Path, ws: Path, *extra: str):
    base = {"recipe": name, "workspace": str(ws), "tracking": "none"}
    common = ["train.epochs=1", "data.folds=2", "data.num_workers=0"]
    if get_recipe(name).config.get("task") == "detect":
        import detect_standin  # tests/detect_standin.py

        detect_standin.install()
        data = detect_standin.make_yolo_dataset(ws.parent / "yolo", n=8)
        return load_config(None, [f"data.train={data}", *common, *TINY[name], *extra], base=base)
    if get_recipe(name).config.get("task") == "segment":
        from ensemblecv.tasks.segment.synthetic import make_shapes_dataset

        data = make_shapes_dataset(ws.parent / "shapes", 8, 2, size=(24, 32), seed=0)
        files = [f"data.train={data / 'train'}", f"data.test={data / 'test'}"]
        return load_config(None, [*files, *common, *TINY[name], *extra], base=base)
    files = [f"data.train={bars / 'train'}", f"data.test={bars / 'test'}"]
    return load_config(None, [*files, *common, *TINY[name], *extra], base=base)


# ---------------------------------------------------------------- the registry


def test_every_recipe_has_a_tiny_setting():
    assert sorted(TINY) == list_recipes()


@pytest.mark.parametrize("name", list_recipes())
def test_recipe_resolves_and_saved_config_keeps_name_and_merged_values(name):
    cfg = validate_config({"recipe": name, "data": {"train": "x"}, "train": {"epochs": 3}})
    recipe = get_recipe(name).resolved()
    assert cfg.recipe == name
    assert cfg.train.epochs == 3  # the user's key wins
    assert cfg.train.lr == recipe["train"]["lr"]  # the recipe's fills in below it
    assert cfg.model.name == recipe["model"]["name"]
    again = validate_config(__import__("yaml").safe_load(to_yaml(cfg)))
    assert again == cfg  # a saved config re-validates to itself (the recipe changes nothing)
    assert get_recipe(name).description and get_recipe(name).measured


def test_overrides_beat_the_recipe_key_by_key_and_sections_merge():
    cfg = load_config(
        None,
        ["train.batch_size=7", "augment.batch.erasing=0"],
        base={"recipe": "small-cpu", "data": {"train": "x"}},
    )
    assert cfg.train.batch_size == 7
    assert cfg.augment.batch.erasing == 0 and cfg.augment.batch.crop_padding == 2
    assert cfg.train.ema is not None and cfg.train.label_smoothing == 0.1
    assert merge_under({"a": {"b": 1, "c": 2}, "d": {"e": 1}}, {"a": {"b": 5}, "d": "none"}) == {
        "a": {"b": 5, "c": 2},
        "d": "none",
    }


def test_unknown_recipe_fails_listing_the_known_ones():
    with pytest.raises(
        ConfigError, match=r"Unknown recipe 'small-gpu'.*small-cpu.*ensemblecv recipes"
    ):
        validate_config({"recipe": "small-gpu", "data": {"train": "x"}})
    with pytest.raises(ConfigError, match="recipe must be a recipe name"):
        validate_config({"recipe": 3, "data": {"train": "x"}})


def test_ema_and_weight_averaging_together_are_refused():
    with pytest.raises(ConfigError, match="train.ema and train.weight_averaging"):
        validate_config(
            {"data": {"train": "x"}, "train": {"ema": {}, "weight_averaging": {"method": "swa"}}}
        )


def test_recipes_verb_lists_each_recipe_with_its_measurement():
    from typer.testing import CliRunner

    from ensemblecv.cli import app

    out = CliRunner().invoke(app, ["recipes"], env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    for name in list_recipes():
        assert name in out.output
        assert get_recipe(name).measured[:20] in out.output
    one = CliRunner().invoke(app, ["recipes", "small-cpu"], env={"COLUMNS": "200"})
    assert "resnet9_small" in one.output and "crop_padding" in one.output


#: Recipes whose tiny epoch still builds a big network (resnet50, a detector): marked slow.
_HEAVY = {"finetune-224", "detect-small", "segment-voc"}


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if n in _HEAVY else n for n in list_recipes()],
)
def test_each_recipe_trains_one_tiny_epoch(name, bars, tmp_path):
    cfg = _recipe_config(name, bars, tmp_path / "ws")
    (result,) = train(cfg, folds=[0], progress=False)
    assert result.status == "done"
    saved = (tmp_path / "ws" / "runs" / cfg.run_name / "config.yaml").read_text()
    assert saved.startswith(f"recipe: {name}\n")


# ---------------------------------------------------------------- batch augmentation


def _batch(n: int = 32) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randint(1, 255, (n, 1, 12, 12), generator=g, dtype=torch.uint8)


def test_batch_augment_is_a_function_of_the_seed_and_differs_per_sample():
    from ensemblecv.augment.batch import BatchAugment

    aug = BatchAugment(BatchAugmentConfig(crop_padding=2, hflip=0.5, erasing=0.5))
    x = _batch()
    before = x.clone()
    a = aug(x, torch.Generator().manual_seed(5))
    b = aug(x, torch.Generator().manual_seed(5))
    c = aug(x, torch.Generator().manual_seed(6))
    assert torch.equal(x, before)  # the input is left alone
    assert a.dtype == torch.uint8 and a.shape == x.shape
    assert torch.equal(a, b) and not torch.equal(a, c)
    changed = (a != x).flatten(1).any(1)
    assert 0 < changed.sum() < len(x) or changed.all()  # samples draw their own changes
    erased = (a == 0).flatten(1).sum(1)  # x has no zeros: zeros come from padding or erasing
    assert len(set(erased.tolist())) > 3


def test_batch_augment_ops_do_what_they_say():
    from ensemblecv.augment.batch import BatchAugment, build_batch_augment

    x = _batch(8).float()
    flip = BatchAugment(BatchAugmentConfig(hflip=1.0))(x, torch.Generator().manual_seed(0))
    assert torch.equal(flip, x.flip(3))
    crop = BatchAugment(BatchAugmentConfig(crop_padding=3))(x, torch.Generator().manual_seed(0))
    for i in range(len(x)):  # each crop is a window of the zero-padded image
        padded = torch.nn.functional.pad(x[i], (3, 3, 3, 3))
        windows = padded.unfold(1, 12, 1).unfold(2, 12, 1)  # (1, 7, 7, 12, 12)
        assert (windows == crop[i].view(1, 1, 1, 12, 12)).flatten(3).all(3).any()
    erase = BatchAugment(BatchAugmentConfig(erasing=1.0, erasing_area=(0.1, 0.2)))
    share = (erase(x, torch.Generator().manual_seed(0)) == 0).float().mean((1, 2, 3))
    assert ((share > 0.03) & (share < 0.3)).all()
    assert build_batch_augment(BatchAugmentConfig()) is None
    with pytest.raises(ValueError, match="0 < low <= high < 1"):
        BatchAugmentConfig(erasing_area=(0.5, 0.1))


# ---------------------------------------------------------------- EMA and resume

_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
_KILL_DRIVER = Path(__file__).with_name("kill_driver.py")


def _ema_config(bars: Path, ws: Path) -> Path:
    cfg = _recipe_config("small-cpu", bars, ws, "train.epochs=3", "model.kwargs={width: 4}")
    path = ws.parent / f"{ws.name}.yaml"
    path.write_text(to_yaml(cfg))
    return path


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], env=_ENV, capture_output=True, text=True, timeout=300
    )


@pytest.mark.slow
def test_batch_augment_and_ema_resume_after_sigkill_like_an_uninterrupted_run(bars, tmp_path):
    ref_cfg, killed_cfg = _ema_config(bars, tmp_path / "ref"), _ema_config(bars, tmp_path / "k")
    cli = ["-m", "ensemblecv", "train", "--folds", "0", "--no-progress"]
    done = _run(*cli[:3], str(ref_cfg), *cli[3:])
    assert done.returncode == 0, done.stderr[-2000:]
    killed = _run(str(_KILL_DRIVER), str(killed_cfg), "epoch_start:2")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    resumed = _run(*cli[:3], str(killed_cfg), *cli[3:], "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a, b = (p / "runs" / "resnet9_small" / "fold_0" for p in (tmp_path / "ref", tmp_path / "k"))
    for name in ("oof_probs.npy", "test_probs.npy", "oof_tta_probs.npy"):
        np.testing.assert_array_equal(np.load(a / name), np.load(b / name))
    cols = ["train_loss", "val_loss", "val_acc"]
    pd.testing.assert_frame_equal(
        pd.read_csv(a / "history.csv")[cols], pd.read_csv(b / "history.csv")[cols]
    )


def test_ema_weights_are_saved_as_the_model_and_predicted_with(bars, tmp_path):
    from ensemblecv.training.classify_outputs import predict_probs
    from ensemblecv.training.data import RowsDataset
    from ensemblecv.training.inputs import prepare_inputs
    from ensemblecv.training.module import ClassifierModule

    cfg = _recipe_config(
        "small-cpu", bars, tmp_path / "ws", "train.epochs=2", "train.tta=[]", "train.lr=0.01"
    )
    train(cfg, folds=[0], progress=False)
    fold = tmp_path / "ws" / "runs" / "resnet9_small" / "fold_0"
    ckpt = torch.load(fold / "best.ckpt", map_location="cpu", weights_only=False)
    state = ckpt["state_dict"]
    assert ckpt["ema_in_model"] is True
    key = next(k for k in state if k.startswith("model.") and k.endswith("conv.weight"))
    raw = state["ema.module." + key[len("model.") :]]
    assert not torch.equal(state[key], raw)  # EMA and training weights differ after 2 epochs

    module = ClassifierModule(**ckpt["hyper_parameters"])
    module.load_state_dict(state)
    # The EMA module's own copy, run directly, gives exactly what model.* gives.
    assert torch.equal(module.model.state_dict()[key[6:]], state[key])
    inputs = prepare_inputs(module.cfg, progress=False)
    rows = pd.read_parquet(fold / "oof_samples.parquet")["sample_id"]
    positions = np.flatnonzero(inputs.folds["sample_id"].isin(rows).to_numpy())
    ds = RowsDataset(inputs.source, positions, inputs.targets, inputs.eval_tf)
    ema_probs = predict_probs(module, ds, 16, torch.device("cpu"), 0)
    np.testing.assert_allclose(np.load(fold / "oof_probs.npy"), ema_probs, atol=1e-6)
    # ... and the raw training weights would have predicted something else.
    swapped = {**state}
    for k in [k for k in state if k.startswith("model.")]:
        swapped[k] = state["ema.module." + k[6:]]
    module.load_state_dict(swapped)
    raw_probs = predict_probs(module, ds, 16, torch.device("cpu"), 0)
    assert np.abs(raw_probs - ema_probs).max() > 1e-3


def test_configs_without_a_recipe_save_what_they_saved_before():
    text = to_yaml(validate_config({"data": {"train": "x"}}))
    assert text.startswith("workspace:")
    assert not any(line.startswith("recipe:") for line in text.splitlines())  # top level
