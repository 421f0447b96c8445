"""Contract test over timm's model families: every family trains at any image size, or says why not.

The pattern of timm's own ``tests/test_models.py``: one small member per
family, built with ``pretrained: false`` at a size other than its native one
— 64 px and the family's smallest legal size — then one training step,
prediction and Grad-CAM. A size the family cannot take must instead be
refused by the config check, in one line naming the model, the size and the
nearest sizes that work; the family is then trained at the first of those.

Heavy members are made small with timm kwargs (``model.kwargs``: fewer
blocks); the ones that cannot be shrunk are marked ``slow`` (they still run
in CI).
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
import torch

pytest.importorskip("pytorch_grad_cam")

from ensemblecv.config import load_config, to_yaml  # noqa: E402
from ensemblecv.errors import ConfigError  # noqa: E402
from ensemblecv.explain import gradcam_map  # noqa: E402
from ensemblecv.training.module import ClassifierModule  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py

_slow = pytest.mark.slow
# (family, model, timm kwargs that shrink it). One member per family the reports used or a
# user of this field reaches for; the transformer families keep 1–2 blocks.
FAMILIES = [
    pytest.param("resnet10t", {}, id="ResNet"),
    pytest.param("resnetv2_18", {}, id="ResNet-V2"),
    pytest.param("resnext26ts", {}, id="ResNeXt"),
    pytest.param("convnext_atto", {}, id="ConvNeXt"),
    pytest.param("convnextv2_atto", {}, id="ConvNeXt-V2"),
    pytest.param("efficientnet_b0", {}, id="EfficientNet"),
    pytest.param("tf_efficientnetv2_b0", {}, id="EfficientNet-V2"),
    pytest.param("regnety_002", {}, id="RegNetY"),
    pytest.param("densenet121", {}, id="DenseNet", marks=_slow),
    pytest.param("inception_resnet_v2", {}, id="Inception-ResNet", marks=_slow),
    pytest.param("tresnet_m", {}, id="TResNet", marks=_slow),
    pytest.param("vit_tiny_patch16_224", {"depth": 2}, id="ViT"),
    pytest.param("deit_tiny_distilled_patch16_224", {"depth": 2}, id="DeiT"),
    pytest.param("vit_small_r26_s32_224", {"depth": 1}, id="ViT-hybrid"),
    pytest.param("eva02_tiny_patch14_224", {"depth": 2}, id="EVA02"),
    pytest.param("swin_tiny_patch4_window7_224", {"depths": [1, 1, 1, 1]}, id="Swin"),
    pytest.param("vit_base_patch32_clip_224", {"depth": 1}, id="CLIP-ViT"),
    pytest.param("mobilenetv3_small_050", {}, id="MobileNet"),
]
_ONE_LINE = re.compile(
    r"^(?P<name>\S+) cannot take data\.image_size=(?P<size>\d+) \(.+\); "
    r"nearest sizes that work: (?P<near>\d+(, \d+)?) \(set data\.image_size to one of them\)\.$"
)


def _config(model: str, kwargs: dict, size: int, channels: int = 3) -> dict:
    base = {
        "data": {
            "train": "unused",
            "channels": channels,
            "image_size": size,
            "normalize": "imagenet",
        },
        "model": {"name": model, "kwargs": kwargs},
        "train": {"optimizer": "sgd", "lr": 0.001, "scheduler": "none"},
    }
    return load_config(None, [], base=base).model_dump(mode="json")


def _legal_size(model: str, kwargs: dict, size: int) -> int:
    """``size``, or — when the family refuses it — the first size its one-line message offers."""
    from ensemblecv.config import validate_config
    from ensemblecv.models import resolve_inputs

    try:
        resolve_inputs(validate_config(_config(model, kwargs, size)))
    except ConfigError as exc:
        message = str(exc)
        match = _ONE_LINE.match(message)
        assert match, f"refusal is not the one-line message: {message!r}"
        assert match["name"] == model and int(match["size"]) == size
        return int(match["near"].split(",")[0])
    return size


def _train_predict_explain(model: str, kwargs: dict, size: int) -> None:
    torch.manual_seed(0)
    module = ClassifierModule(_config(model, kwargs, size), 3, 1)
    x = torch.randint(0, 256, (4, 3, size, size), dtype=torch.uint8)
    y = torch.tensor([0, 1, 2, 0])
    optimizer = module.configure_optimizers()
    before = {n: p.detach().clone() for n, p in module.named_parameters() if p.requires_grad}
    module.train()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # self.log without a Trainer
        loss = module.training_step((x, y, torch.arange(4)), 0)
    assert torch.isfinite(loss)
    loss.backward()
    optimizer.step()
    changed = [
        n for n, p in module.named_parameters() if p.requires_grad and (p != before[n]).any()
    ]
    assert changed, "one SGD step changed no weight"

    # After one step, BatchNorm's running statistics are still their initial 0/1, which a
    # deep net at 8 px (1 x 1 maps) amplifies to inf in eval mode; one forward with
    # cumulative averaging sets them to this batch's, as training for a while would.
    for bn in module.modules():
        if isinstance(bn, torch.nn.modules.batchnorm._BatchNorm):
            bn.reset_running_stats()
            bn.momentum = None
    with torch.no_grad():
        module(x)
    module.eval()
    with torch.no_grad():
        probs = module.predict_step((x, y, torch.arange(4)), 0)
    assert probs.shape == (4, 3) and torch.allclose(probs.sum(1), torch.ones(4), atol=1e-5)

    image = torch.randn(1, 3, size, size)
    image[:, :, : size // 2, : size // 2] += 2.0  # structure the map can point at
    cam, cam_probs = gradcam_map(module.model, image, target=None)
    assert cam.shape == (size, size) and np.isfinite(cam).all()
    assert cam.min() >= 0 and cam.max() <= 1 + 1e-6
    assert cam_probs.shape == (3,)


@pytest.mark.parametrize("model,kwargs", FAMILIES)
def test_family_trains_at_64px_and_its_smallest_size_or_refuses_in_one_line(model, kwargs):
    from ensemblecv.models import check_image_size, smallest_image_size

    at_64 = _legal_size(model, kwargs, 64)
    smallest = smallest_image_size(model, 3, kwargs)
    assert smallest is not None and 8 <= smallest <= at_64
    check_image_size(model, smallest, 3, kwargs)  # what training checks must agree
    for size in sorted({at_64, smallest}):
        _train_predict_explain(model, kwargs, size)


# ---------------------------------------------------------------- the rows of issue 11's table


_SHALLOW = {"depth": 1}  # the patch and the stem decide the legal sizes, not the depth


@pytest.mark.parametrize(
    "model,kwargs,size,pattern",
    [
        (
            "eva02_tiny_patch14_224",
            _SHALLOW,
            64,
            r"14-px patches do not tile 64 px\); nearest sizes that work: 56, 70 ",
        ),
        ("eva02_tiny_patch14_224", _SHALLOW, 32, r"nearest sizes that work: 28, 42 "),
        (
            "vit_tiny_patch16_224",
            _SHALLOW,
            40,
            r"16-px patches do not tile 40 px\); nearest sizes that work: 32, 48 ",
        ),
        ("vit_tiny_patch16_224", _SHALLOW, 8, r"nearest sizes that work: 16 "),
        (
            "vit_small_r26_s32_224",
            _SHALLOW,
            48,
            r"32-px patches do not tile 48 px\); nearest sizes that work: 32, 64 ",
        ),
        ("convnext_atto", {}, 16, r"\(RuntimeError: .*\); nearest sizes that work: 32 "),
        pytest.param(
            "inception_resnet_v2",
            {},
            64,
            r"Kernel size can't be greater than actual input size\); nearest sizes that work: 75 ",
            marks=_slow,
        ),
    ],
)
def test_illegal_size_is_refused_in_one_line(model, kwargs, size, pattern):
    from ensemblecv.config import validate_config
    from ensemblecv.models import resolve_inputs

    cfg = validate_config(_config(model, kwargs, size))
    with pytest.raises(ConfigError, match=rf"^{model} cannot take data\.image_size={size} ") as err:
        resolve_inputs(cfg)
    message = str(err.value)
    assert "\n" not in message and _ONE_LINE.match(message), message
    assert re.search(pattern, message), message


def test_illegal_size_fails_before_any_data_is_read(tmp_path):
    """train() refuses the size before it scans the dataset or creates the workspace."""
    from ensemblecv.training import train

    cfg = load_config(
        None,
        [],
        base={
            "workspace": str(tmp_path / "ws"),
            "data": {"train": str(tmp_path / "no-such-folder"), "image_size": 32},
            "model": {"name": "eva02_tiny_patch14_224"},
            "tracking": "none",
        },
    )
    with pytest.raises(ConfigError, match=r"^eva02_tiny_patch14_224 cannot take .*28, 42"):
        train(cfg, progress=False)
    assert not (tmp_path / "ws").exists()


# ---------------------------------------------------------------- weights and the model's own config


def test_local_weights_resample_position_embeddings(tmp_path):
    """A ViT saved at 224 px loads into one built for 64 px: pos_embed is resampled, not dropped."""
    import timm
    from safetensors.torch import save_file
    from timm.layers import resample_abs_pos_embed

    from ensemblecv.config import ModelConfig
    from ensemblecv.models import create_model

    torch.manual_seed(0)
    source = timm.create_model("vit_tiny_patch16_224", depth=1, num_classes=3)
    path = tmp_path / "vit224.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    cfg = ModelConfig(name="vit_tiny_patch16_224", pretrained=str(path), kwargs={"depth": 1})
    with pytest.warns(UserWarning, match=r"resampled to this input size:\n.*pos_embed") as rec:
        model = create_model(cfg, num_classes=3, in_chans=3, image_size=64)
    assert not any("dropped" in str(w.message) for w in rec)
    want = resample_abs_pos_embed(source.pos_embed.detach(), new_size=[4, 4], num_prefix_tokens=1)
    assert model.pos_embed.shape == (1, 17, 192)
    torch.testing.assert_close(model.pos_embed.detach(), want)
    torch.testing.assert_close(model.blocks[0].attn.qkv.weight, source.blocks[0].attn.qkv.weight)


def test_local_swin_weights_resample_window_tables(tmp_path):
    """Swin at 64 px clamps its last windows to the 4 x 4 and 2 x 2 grids; the saved
    relative position tables are resized to them by Swin's own checkpoint filter."""
    import timm
    from safetensors.torch import save_file

    from ensemblecv.config import ModelConfig
    from ensemblecv.models import create_model

    kwargs = {"depths": [1, 1, 1, 1]}
    source = timm.create_model("swin_tiny_patch4_window7_224", num_classes=3, **kwargs)
    path = tmp_path / "swin224.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    cfg = ModelConfig(name="swin_tiny_patch4_window7_224", pretrained=str(path), kwargs=kwargs)
    with pytest.warns(
        UserWarning,
        match=r"layers\.3\.blocks\.0\.attn\.relative_position_bias_table "
        r"\(169, 24\) -> \(9, 24\)",
    ) as rec:
        model = create_model(cfg, num_classes=3, in_chans=3, image_size=64)
    assert not any("dropped" in str(w.message) for w in rec)
    assert model.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 3)


def test_unset_image_size_follows_the_model_and_is_saved():
    from ensemblecv.config import validate_config
    from ensemblecv.models import model_data_config, resolve_inputs

    raw = {"data": {"train": "unused", "channels": 1}, "model": {"name": "vit_tiny_patch16_224"}}
    resolved = resolve_inputs(validate_config(raw))
    timm_cfg = model_data_config("vit_tiny_patch16_224")
    data = resolved.data
    assert data.image_size == timm_cfg["input_size"][-1] == 224
    assert data.interpolation == timm_cfg["interpolation"]
    assert data.resize == "center_crop" and data.crop_pct == pytest.approx(timm_cfg["crop_pct"])
    # one channel: the mean of the model's RGB values
    assert data.normalize.mean == pytest.approx([float(np.mean(timm_cfg["mean"]))])
    text = to_yaml(resolved)
    assert "image_size: 224" in text and "crop_pct: 0.9" in text
    assert resolve_inputs(resolved) == resolved  # idempotent: a saved config resolves to itself

    # keys the user set win; built-in CNNs keep their 28 px and dataset normalisation
    raw["data"].update(normalize="dataset", resize="letterbox")
    mine = resolve_inputs(validate_config(raw)).data
    assert (mine.normalize, mine.resize, mine.crop_pct) == ("dataset", "letterbox", None)
    builtin = resolve_inputs(validate_config({"data": {"train": "unused"}})).data
    assert (builtin.image_size, builtin.normalize, builtin.resize) == (28, "dataset", "letterbox")


def test_model_kwargs_cannot_repeat_other_keys():
    from ensemblecv.config import validate_config

    with pytest.raises(ConfigError, match=r"model\.kwargs: .*img_size \(set by data\.image_size\)"):
        validate_config({"data": {"train": "x"}, "model": {"kwargs": {"img_size": 64}}})


def test_train_predict_explain_use_the_size_resolved_from_the_model(tmp_path):
    """The whole road with data.image_size unset: train() builds the ViT for its own 224 px,
    saves the resolved values in config.yaml, and predict and explain rebuild it from there."""
    import yaml
    from PIL import Image

    from ensemblecv.data.samples import load_samples
    from ensemblecv.explain import gradcam_overlays
    from ensemblecv.inference import predict_members
    from ensemblecv.training import train

    rng = np.random.default_rng(0)
    for c, name in enumerate(["ant", "bee", "cow"]):
        for i in range(4):
            path = tmp_path / "data" / name / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            pixels = rng.integers(0, 255, size=(40, 48, 3), dtype=np.uint8)
            pixels[8 * c : 8 * c + 16, 10:30] = 255
            Image.fromarray(pixels).save(path)
    ws = tmp_path / "ws"
    cfg = load_config(
        None,
        [],
        base={
            "workspace": str(ws),
            "data": {"train": str(tmp_path / "data"), "folds": 2, "num_workers": 0},
            "model": {"name": "vit_tiny_patch16_224", "kwargs": {"depth": 1}},
            "train": {"epochs": 1, "batch_size": 6, "refit_full": False},
            "augment": {"preset": "none"},
            "tracking": "none",
        },
    )
    assert cfg.data.image_size is None
    results = train(cfg, progress=False)
    assert [r.status for r in results] == ["done", "done"]
    run = ws / "runs" / "vit_tiny_patch16_224"
    saved = yaml.safe_load((run / "config.yaml").read_text())["data"]
    assert saved["image_size"] == 224 and saved["resize"] == "center_crop"
    assert saved["interpolation"] == "bicubic" and saved["crop_pct"] == pytest.approx(0.9)
    assert saved["normalize"] == {"mean": [0.5] * 3, "std": [0.5] * 3}

    table = load_samples(str(tmp_path / "data"))
    (member,) = predict_members(ws, ["vit_tiny_patch16_224"], table)
    assert member.probs.shape == (12, 3) and np.allclose(member.probs.sum(1), 1, atol=1e-5)
    (png,) = gradcam_overlays(ws, "vit_tiny_patch16_224", ["cow/1.png"], tmp_path / "cams")
    assert png.stat().st_size > 1000


@pytest.mark.parametrize(
    "model,size,tokens,grid",
    [
        ("deit_tiny_distilled_patch16_224", 64, 2 + 16, (4, 4)),  # class + distillation token
        ("eva02_tiny_patch14_224", 56, 1 + 16, (4, 4)),
        ("vit_small_r26_s32_224", 96, 1 + 9, (3, 3)),  # the hybrid's CNN reduces by 32
    ],
)
def test_grad_cam_reshapes_tokens_on_the_real_grid(model, size, tokens, grid):
    import timm

    from ensemblecv.errors import EnsembleCVError
    from ensemblecv.explain import token_grid, vit_reshape

    net = timm.create_model(model, img_size=size, depth=1, num_classes=3)
    assert token_grid(net, size, size) == grid
    with torch.no_grad():
        feats = net.forward_features(torch.randn(2, 3, size, size))
    assert feats.shape[1] == tokens
    spatial = vit_reshape(net, size, size)(feats)
    assert spatial.shape == (2, feats.shape[2], *grid)
    torch.testing.assert_close(spatial[:, :, 0, 0], feats[:, tokens - grid[0] * grid[1]])
    with pytest.raises(EnsembleCVError, match=r"not \d prefix tokens \+ a \(\d, \d\) patch grid"):
        vit_reshape(net, size, size)(torch.cat([feats, feats[:, :3]], 1))  # 3 tokens too many


def test_resize_follows_crop_pct_and_interpolation():
    import cv2

    from ensemblecv.augment import build_resize, resize_op
    from ensemblecv.config import DataConfig

    img = np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8)
    # crop_pct 0.5: the shorter side becomes 20 / 0.5 = 40 px (no resize), the middle 20 kept
    np.testing.assert_array_equal(
        resize_op("center_crop", 20, crop_pct=0.5)(img), img[10:30, 10:30]
    )
    small = img[:10, :10]
    bicubic = resize_op("stretch", 30, interpolation="bicubic")(small)
    np.testing.assert_array_equal(
        bicubic, cv2.resize(small, (30, 30), interpolation=cv2.INTER_CUBIC)
    )
    assert not np.array_equal(bicubic, resize_op("stretch", 30)(small))  # auto = bilinear
    with pytest.raises(ConfigError, match=r"data\.image_size is unset: resolve the config"):
        build_resize(DataConfig(train="unused"))


def test_the_size_check_leaves_the_global_rng_alone():
    """A probe inside a seeded run (here one that needs a normally initialised model to
    confirm a failure) must not shift the weights the run then initialises."""
    from ensemblecv.models.input_size import size_problem

    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    assert size_problem("convnext_atto", 12) is not None  # zeroed, then initialised probe
    torch.testing.assert_close(torch.rand(3), expected)
