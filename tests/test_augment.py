"""Augmentation contracts: every op × channel count, presets, resize, normalisation,
seeded determinism, CutMix/MixUp soft targets and the preview grid."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

from ensemblecv.augment import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    build_batch_mix,
    build_op,
    build_transforms,
    list_ops,
    list_presets,
    op_params,
    preset_ops,
    preview_grid,
    resize_op,
    resolve_normalization,
)
from ensemblecv.config import AugmentConfig, DataConfig, MixConfig, NormalizeValues
from ensemblecv.errors import ConfigError

SIZE = 32
#: Ops that may leave an image unchanged by design, per channel count.
MAY_BE_IDENTITY = {("grayscale", 1)}


def textured(channels: int, size: int = SIZE, seed: int = 0) -> np.ndarray:
    """Noise on a gradient with a bright square: every op has something to change."""
    rng = np.random.default_rng(seed)
    grad = np.linspace(0, 160, size)[None, :, None] + np.linspace(0, 60, size)[:, None, None]
    img = grad + rng.integers(0, 60, (size, size, channels))
    img[size // 4 : size // 2, size // 4 : size // 2] = 250
    if channels == 3:
        img[..., 1] = img[..., 1] * 0.6
    return np.clip(img, 0, 255).astype(np.uint8)


def data_cfg(channels: int, size: int = SIZE, resize: str = "letterbox") -> DataConfig:
    return DataConfig(train="unused", image_size=size, channels=channels, resize=resize)


def transforms(channels: int, ops: list[dict] | None = None, preset: str = "none", **kw):
    norm = ([0.5] * channels, [0.25] * channels)
    return build_transforms(data_cfg(channels, **kw), AugmentConfig(preset=preset, ops=ops), *norm)


# ---------------------------------------------------------------- every op


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", list_ops())
def test_every_op_keeps_shape_and_changes_image(name: str, channels: int) -> None:
    train_tf, eval_tf = transforms(channels, [{"name": name, "p": 1.0}])
    img = textured(channels)
    reference = eval_tf(img)
    outs = [train_tf(img, seed=s) for s in range(6)]
    for out in outs:
        assert out.shape == (channels, SIZE, SIZE) and out.dtype == torch.float32
        assert torch.isfinite(out).all()
    raw = train_tf.augment(img, seed=0)
    assert raw.dtype == np.uint8 and raw.shape == (SIZE, SIZE, channels)
    assert torch.equal(train_tf(img, seed=3), train_tf(img, seed=3))
    if (name, channels) not in MAY_BE_IDENTITY:
        assert any(not torch.equal(out, reference) for out in outs), (
            f"{name} never changed the image"
        )


@pytest.mark.parametrize("name", list_ops())
def test_every_op_with_p0_is_identity(name: str) -> None:
    train_tf, eval_tf = transforms(3, [{"name": name, "p": 0.0}])
    img = textured(3)
    assert torch.equal(train_tf(img, seed=1), eval_tf(img))


@pytest.mark.parametrize("name", list_ops())
def test_every_op_lists_p_and_no_injected_size(name: str) -> None:
    params = op_params(name)
    assert "p" in params and "size" not in params


def test_grayscale_keeps_three_channels_and_colour_jitter_on_gray() -> None:
    out = transforms(3, [{"name": "grayscale", "p": 1.0}])[0].augment(textured(3), seed=0)
    assert out.shape == (SIZE, SIZE, 3)
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    # saturation/hue alone cannot change a 1-channel image
    spec = {"name": "color_jitter", "brightness": 0, "contrast": 0, "saturation": 0.5, "hue": 0.3}
    gray = textured(1)
    assert np.array_equal(transforms(1, [{**spec, "p": 1.0}])[0].augment(gray, seed=0), gray)


@pytest.mark.parametrize("channels", [1, 3])
def test_canny_draws_black_edges_on_white(channels: int) -> None:
    img = np.zeros((SIZE, SIZE, channels), np.uint8)
    img[8:24, 8:24] = 255
    out = transforms(channels, [{"name": "canny", "p": 1.0}])[0].augment(img, seed=0)
    assert set(np.unique(out)) == {0, 255}
    assert out[0, 0].min() == 255 and (out == 0).sum() > 0  # white background, dark edges


def test_erode_thickens_dark_strokes_dilate_thins_them() -> None:
    img = np.full((SIZE, SIZE, 1), 255, np.uint8)
    img[:, 15:17] = 0  # a black 2-px line on white paper
    spec = {"kernel": [3, 3], "p": 1.0}
    eroded = transforms(1, [{"name": "erode", **spec}])[0].augment(img, seed=0)
    dilated = transforms(1, [{"name": "dilate", **spec}])[0].augment(img, seed=0)
    assert (eroded == 0).sum() > (img == 0).sum() > (dilated == 0).sum()


# ---------------------------------------------------------------- presets


def test_preset_names() -> None:
    assert {"none", "light", "sketch", "strong"} <= set(list_presets())


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("preset", list_presets())
def test_every_preset_builds_and_runs(preset: str, channels: int) -> None:
    train_tf, _ = transforms(channels, preset=preset)
    for seed in range(3):
        out = train_tf(textured(channels, size=20), seed=seed)
        assert out.shape == (channels, SIZE, SIZE)


def test_preset_ops_are_copies_in_config_format() -> None:
    ops = preset_ops("strong")
    assert all(isinstance(op, dict) and "name" in op for op in ops)
    ops[0]["p"] = 0.0
    assert preset_ops("strong")[0]["p"] != 0.0
    # a preset pasted under augment.ops is accepted as is
    transforms(3, ops=preset_ops("sketch"))


def test_explicit_empty_ops_overrides_preset() -> None:
    train_tf, eval_tf = transforms(3, ops=[], preset="strong")
    assert torch.equal(train_tf(textured(3), seed=0), eval_tf(textured(3)))


# ---------------------------------------------------------------- errors


def test_unknown_op_lists_close_matches() -> None:
    with pytest.raises(ConfigError, match=r"augment\.ops\[1\].*'rotat'.*Did you mean rotate"):
        transforms(3, [{"name": "hflip"}, {"name": "rotat"}])


def test_unknown_preset_lists_close_matches() -> None:
    with pytest.raises(ConfigError, match="Did you mean light"):
        preset_ops("ligth")


def test_unknown_param_names_op_and_accepted_params() -> None:
    with pytest.raises(ConfigError, match=r"'rotate'.*'limt'.*Did you mean limit.*Accepted: limit"):
        build_op({"name": "rotate", "limt": 10}, SIZE)


def test_size_is_injected_not_user_given() -> None:
    with pytest.raises(ConfigError, match="data.image_size"):
        build_op({"name": "random_resized_crop", "size": 64}, SIZE)


@pytest.mark.parametrize(
    "spec, match",
    [
        ({"name": "gauss_noise", "std": [0.5, 0.1]}, "gauss_noise"),
        ({"name": "erode", "kernel": [0, 2]}, "erode.*kernel"),
        ({"name": "canny", "p": 2}, "canny.*p must be"),
        ({"name": "rotate", "border": "mirror"}, "rotate.*border must be one of"),
        ({"name": "randaugment", "m": 99}, "randaugment.*m an int"),
        ({"name": "autoaugment", "policy": "coco"}, "autoaugment.*imagenet"),
        ({"name": "hflip", "p": 1.5}, "hflip"),
        ({"p": 0.5}, "needs a 'name'"),
    ],
)
def test_invalid_values_are_config_errors(spec: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        build_op(spec, SIZE)


# ---------------------------------------------------------------- resize


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("mode", ["stretch", "letterbox", "center_crop"])
@pytest.mark.parametrize("shape", [(10, 20), (40, 13), (20, 20), (7, 7)])
def test_resize_modes_give_square_output(mode: str, shape: tuple, channels: int) -> None:
    img = np.random.default_rng(0).integers(0, 256, (*shape, channels), dtype=np.uint8)
    out = resize_op(mode, 20)(img)
    assert out.shape == (20, 20, channels) and out.dtype == np.uint8


def test_letterbox_keeps_aspect_and_pads_with_border_colour() -> None:
    img = np.zeros((10, 20, 1), np.uint8)  # 20 wide × 10 high, black background
    img[3:7, 5:15] = 255
    out = resize_op("letterbox", 20)(img)
    assert (out[:5] == 0).all() and (out[15:] == 0).all()  # 5 padding rows above and below
    assert np.array_equal(out[5:15], img)  # content unscaled, not stretched
    sketch = 255 - img  # white paper pads white
    out = resize_op("letterbox", 20)(sketch)
    assert (out[:5] == 255).all() and np.array_equal(out[5:15], sketch)


def test_letterbox_shrinks_longer_side() -> None:
    img = np.zeros((40, 80, 3), np.uint8)
    img[:, :, 0] = 200
    img[0, :] = 7  # border colour differs from the content
    img[-1, :] = 7
    out = resize_op("letterbox", 20)(img)
    assert (out[:5] == 7).all() and (out[15:] == 7).all()
    assert (out[6:14, :, 0] == 200).all()


def test_center_crop_and_stretch() -> None:
    img = np.zeros((10, 20, 1), np.uint8)
    img[:, 10:] = 255
    out = resize_op("center_crop", 20)(img)  # 20×40 after resize, middle 20 columns kept
    assert out[:, 0].max() == 0 and out[:, -1].min() == 255
    out = resize_op("stretch", 20)(img)
    assert out[:, :8].max() == 0 and out[:, 12:].min() == 255


def test_unknown_resize_mode() -> None:
    with pytest.raises(ConfigError, match="Did you mean letterbox"):
        resize_op("letterbx", 20)


def test_include_resize_false_skips_resizing() -> None:
    cfg = data_cfg(3)
    train_tf, eval_tf = build_transforms(cfg, None, [0.0] * 3, [1.0] * 3, include_resize=False)
    assert eval_tf(textured(3, size=12)).shape == (3, 12, 12)


# ---------------------------------------------------------------- normalisation


def test_resolve_normalization_choices() -> None:
    resolve = resolve_normalization
    assert resolve("imagenet", 3) == (IMAGENET_MEAN, IMAGENET_STD)
    mean, std = resolve("imagenet", 1)
    assert mean == pytest.approx((np.mean(IMAGENET_MEAN),))
    assert std == pytest.approx((np.mean(IMAGENET_STD),))
    assert resolve("none", 3) == ((0.0,) * 3, (1.0,) * 3)
    rgb = {"mean": [0.1, 0.2, 0.3], "std": [0.4, 0.5, 0.6]}
    stats = {"gray": {"mean": [0.2], "std": [0.3]}, "rgb": rgb}
    assert resolve("dataset", 1, stats) == ((0.2,), (0.3,))
    assert resolve("dataset", 3, {"normalization": stats}) == (
        tuple(rgb["mean"]),
        tuple(rgb["std"]),
    )
    assert resolve(NormalizeValues(mean=[0.5], std=[0.2]), 3) == ((0.5,) * 3, (0.2,) * 3)
    assert resolve({"mean": [0.1, 0.2, 0.3], "std": [1, 1, 1]}, 3)[0] == (0.1, 0.2, 0.3)


def test_resolve_normalization_errors() -> None:
    with pytest.raises(ConfigError, match="'dataset' but no 'rgb' mean/std"):
        resolve_normalization("dataset", 3, {"gray": {"mean": [0.1], "std": [0.2]}})
    with pytest.raises(ConfigError, match="'dataset'"):
        resolve_normalization("dataset", 1)
    with pytest.raises(ConfigError, match="needs 1 mean/std"):
        resolve_normalization(NormalizeValues(mean=[0.1, 0.2, 0.3], std=[1, 1, 1]), 1)
    with pytest.raises(ConfigError, match="Did you mean imagenet"):
        resolve_normalization("imagenett", 3)
    with pytest.raises(ConfigError, match="finite"):
        resolve_normalization("dataset", 1, {"gray": {"mean": [float("nan")], "std": [0.2]}})


def test_tensor_is_normalised() -> None:
    img = np.full((SIZE, SIZE, 3), 128, np.uint8)
    _, eval_tf = build_transforms(data_cfg(3), None, [0.5, 0.0, 0.25], [0.25, 1.0, 0.5])
    out = eval_tf(img)
    expected = (128 / 255 - torch.tensor([0.5, 0.0, 0.25])) / torch.tensor([0.25, 1.0, 0.5])
    assert torch.allclose(out[:, 0, 0], expected)
    with pytest.raises(ConfigError, match="need 3 values"):
        build_transforms(data_cfg(3), None, [0.5], [0.25])


# ---------------------------------------------------------------- determinism


def test_same_seed_same_output_different_seed_differs() -> None:
    train_tf, _ = transforms(3, preset="strong")
    img = textured(3)
    a = train_tf(img, seed=123)
    _ = train_tf(img, seed=7)  # interleaved calls must not matter
    torch.manual_seed(99)
    np.random.seed(99)
    assert torch.equal(a, train_tf(img, seed=123))
    assert not torch.equal(a, train_tf(img, seed=124))
    fresh, _ = transforms(3, preset="strong")  # e.g. a resumed run in a new process
    assert torch.equal(a, fresh(img, seed=123))
    clone = pickle.loads(pickle.dumps(train_tf))  # spawn-started DataLoader workers
    assert torch.equal(a, clone(img, seed=123))


def test_seeded_call_leaves_global_rngs_alone() -> None:
    train_tf, _ = transforms(
        3, [{"name": "randaugment", "p": 1.0}, {"name": "gauss_noise", "p": 1.0}]
    )
    state = torch.get_rng_state()
    train_tf(textured(3), seed=5)
    assert torch.equal(state, torch.get_rng_state())


def test_ops_draw_independent_randomness_under_one_seed() -> None:
    # albumentations' own set_random_seed gives every op the same stream, so two
    # p=0.5 flips would always fire together; ours must show all four outcomes.
    train_tf, _ = transforms(1, [{"name": "hflip", "p": 0.5}, {"name": "vflip", "p": 0.5}])
    img = textured(1)
    outcomes = set()
    for seed in range(40):
        out = train_tf.augment(img, seed=seed)
        both = np.array_equal(out, img[::-1, ::-1])
        outcomes.add(
            (both or np.array_equal(out, img[:, ::-1]), both or np.array_equal(out, img[::-1]))
        )
    assert len(outcomes) == 4


# ---------------------------------------------------------------- CutMix / MixUp


def mix_cfg(cutmix: float = 0.0, mixup: float = 0.0) -> AugmentConfig:
    return AugmentConfig(cutmix=MixConfig(p=cutmix, alpha=1.0), mixup=MixConfig(p=mixup, alpha=0.4))


def test_batch_mix_off_when_both_p_zero() -> None:
    assert build_batch_mix(mix_cfg(), 10) is None


def test_mixup_is_convex_combination() -> None:
    n = 6
    mix = build_batch_mix(mix_cfg(mixup=1.0), n)
    x, y = torch.randn(n, 3, 8, 8), torch.arange(n)
    before = x.clone()
    out, soft = mix(x, y, generator=torch.Generator().manual_seed(0))
    assert torch.equal(x, before)  # input untouched
    assert soft.shape == (n, n) and soft.dtype == torch.float32
    assert torch.allclose(soft.sum(1), torch.ones(n))
    for i in range(n):
        lam = soft[i, i].item()
        others = [k for k in range(n) if k != i and soft[i, k] > 0]
        j = others[0] if others else i
        assert torch.allclose(out[i], lam * x[i] + (1 - lam) * x[j], atol=1e-6)


def test_cutmix_pastes_a_box_with_area_matching_targets() -> None:
    n = 5
    mix = build_batch_mix(mix_cfg(cutmix=1.0), n)
    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 1, 16, 16).contiguous()
    out, soft = mix(x, torch.arange(n), generator=torch.Generator().manual_seed(3))
    assert torch.allclose(soft.sum(1), torch.ones(n))
    for i in range(n):
        own = (out[i] == i).float().mean().item()
        assert soft[i, i].item() == pytest.approx(own if own < 1 else 1.0)


def test_batch_mix_deterministic_with_generator_and_one_hot_otherwise() -> None:
    mix = build_batch_mix(mix_cfg(cutmix=0.5, mixup=0.5), 4)
    x, y = torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])
    a = mix(x, y, generator=torch.Generator().manual_seed(11))
    b = mix(x, y, generator=torch.Generator().manual_seed(11))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    never = build_batch_mix(AugmentConfig(cutmix=MixConfig(p=1e-12), mixup=MixConfig(p=0)), 4)
    out, soft = never(x, y, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, x) and torch.equal(soft, torch.eye(4))


# ---------------------------------------------------------------- preview


def _write_pngs(root, channels: int) -> list[str]:
    from PIL import Image

    paths = []
    for i in range(3):
        arr = textured(channels, size=24 + 4 * i, seed=i)
        path = root / f"class{i % 2}" / f"img{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr[..., 0] if channels == 1 else arr).save(path)
        paths.append(str(path))
    return paths


@pytest.mark.parametrize("channels", [1, 3])
def test_preview_writes_png(tmp_path, channels: int) -> None:
    paths = _write_pngs(tmp_path / "data", channels)
    out = preview_grid(
        paths,
        data_cfg(channels),
        AugmentConfig(preset="light"),
        [0.5] * channels,
        [0.25] * channels,
        tmp_path / "grid.png",
        n_images=2,
        n_aug=3,
    )
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_augment_preview_cli(tmp_path) -> None:
    from ensemblecv.cli.augment_preview import register

    _write_pngs(tmp_path / "data", 3)
    config = tmp_path / "cfg.yaml"
    data = tmp_path / "data"
    config.write_text(f"workspace: {tmp_path / 'ws'}\ndata:\n  train: {data}\n  image_size: 24\n")
    app = typer.Typer()
    register(app)
    app.command("other")(lambda: None)  # two commands: typer keeps the sub-command name
    out = tmp_path / "grid.png"
    args = ["augment-preview", str(config), "augment.preset=sketch", "--out", str(out), "-n", "2"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert out.is_file() and "grid.png" in result.output
