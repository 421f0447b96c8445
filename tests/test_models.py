"""Models: built-in CNNs, timm by name, weights files, freezing and BatchNorm policy.

Inputs are tiny (2 images, 28–64 px) and nothing touches the network: the
hub test forces huggingface_hub offline so it fails at once.
"""

from __future__ import annotations

import warnings

import pytest
import timm
import torch
from safetensors.torch import save_file
from torch import nn

import ensemblecv.models as models
from ensemblecv.config import ModelConfig
from ensemblecv.errors import ConfigError
from ensemblecv.models import (
    BUILTIN_MODELS,
    apply_batchnorm_policy,
    create_model,
    describe_model,
    freezable_groups,
    freeze,
    list_models,
    load_weights,
)


def _build(name: str = "resnet_mini", num_classes: int = 5, in_chans: int = 1, **cfg) -> nn.Module:
    return create_model(ModelConfig(name=name, **cfg), num_classes=num_classes, in_chans=in_chans)


def _sgd_step(model: nn.Module, in_chans: int = 1, size: int = 28) -> None:
    torch.manual_seed(0)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.5)
    loss = model(torch.randn(4, in_chans, size, size)).square().mean()
    loss.backward()
    opt.step()


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# --- built-in CNNs -----------------------------------------------------------------------------


@pytest.mark.parametrize("size", [28, 32, 64])
@pytest.mark.parametrize("in_chans", [1, 3])
@pytest.mark.parametrize("name", BUILTIN_MODELS)
def test_builtin_forward_backward(name, in_chans, size):
    model = _build(name, num_classes=7, in_chans=in_chans)
    out = model(torch.randn(2, in_chans, size, size))
    assert out.shape == (2, 7)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("name", BUILTIN_MODELS)
def test_builtin_registered_in_timm_with_pretrained_cfg(name):
    assert name in list_models() and name in timm.list_models("*")
    model = timm.create_model(name, num_classes=10, in_chans=1)
    cfg = model.pretrained_cfg
    assert cfg["input_size"] == (1, 28, 28) and len(cfg["mean"]) == len(cfg["std"]) == 1
    assert model.get_classifier() is model.get_submodule(cfg["classifier"])
    assert isinstance(model.get_submodule(cfg["first_conv"]), nn.Conv2d)
    # mean/std follow the channel count the instance was built for
    assert timm.create_model(name, in_chans=3).pretrained_cfg["mean"] == (0.5, 0.5, 0.5)


@pytest.mark.parametrize("name", BUILTIN_MODELS)
def test_builtin_timm_api(name):
    model = timm.create_model(name, num_classes=4, in_chans=1).eval()
    x = torch.randn(2, 1, 32, 32)
    feats = model.forward_features(x)
    assert feats.shape[1] == model.num_features
    assert model.forward_head(feats, pre_logits=True).shape == (2, model.head_hidden_size)
    model.reset_classifier(9)
    assert model(x).shape == (2, 9) and model.num_classes == 9
    model.reset_classifier(0)
    assert model(x).shape == (2, model.head_hidden_size)
    assert set(model.group_matcher(coarse=True)) == {"stem", "blocks"}


@pytest.mark.parametrize("name", BUILTIN_MODELS)
def test_builtin_has_no_hub_weights(name):
    with pytest.raises(ConfigError, match="no pretrained weights.*pretrained: /path"):
        _build(name, pretrained=True)


def test_mnist_cnn_is_the_reports_network():
    model = _build("mnist_cnn", num_classes=10, in_chans=1)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    pools = [m for m in model.modules() if isinstance(m, nn.MaxPool2d)]
    drops = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.padding) for c in convs] == [
        (1, 32, (3, 3), (1, 1)),
        (32, 64, (3, 3), (1, 1)),
    ]
    assert [b.num_features for b in bns] == [32, 64]
    assert [p.kernel_size for p in pools] == [2, 2]
    assert [d.p for d in drops] == [0.5]
    assert [(fc.in_features, fc.out_features) for fc in linears] == [(64 * 7 * 7, 128), (128, 10)]
    # conv biases kept, as in the report: 320 + 64 + 18,496 + 128 + 401,536 + 1,290
    assert describe_model(model) == {"params": 421_834, "trainable_params": 421_834}


def test_head_options_reach_builtin_models():
    model = _build("cnn_small", drop_rate=0.3, global_pool="max")
    assert model.head.drop.p == 0.3
    assert "max" in model.head.global_pool.pool_type
    assert _build("mnist_cnn", drop_rate=0.2).head.drop.p == 0.2
    with pytest.raises(ConfigError, match="global_pool='bogus'"):
        _build("cnn_small", global_pool="bogus")


def test_drop_path_rate_builds_stochastic_depth():
    model = _build("resnet_mini", drop_path_rate=0.2)
    rates = [m.drop_prob for m in model.modules() if isinstance(m, timm.layers.DropPath)]
    assert rates and all(r > 0 for r in rates)
    assert rates == sorted(rates) and rates[-1] == pytest.approx(0.2)
    plain = _build("resnet_mini")
    assert not any(isinstance(m, timm.layers.DropPath) for m in plain.modules())


def test_drop_path_rate_on_a_model_without_residuals_warns():
    with pytest.warns(UserWarning, match="no residual blocks"):
        _build("mnist_cnn", drop_path_rate=0.1)


def test_drop_path_rate_retried_without_when_rejected(monkeypatch):
    real = timm.create_model

    def no_drop_path(name, **kwargs):
        if "drop_path_rate" in kwargs:
            raise TypeError("__init__() got an unexpected keyword argument 'drop_path_rate'")
        return real(name, **kwargs)

    monkeypatch.setattr(timm, "create_model", no_drop_path)
    with pytest.warns(UserWarning, match="does not support stochastic depth"):
        model = _build("cnn_small", drop_path_rate=0.1)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 5)


# --- timm models by name -----------------------------------------------------------------------


def test_timm_model_by_name():
    model = _build("resnet18", num_classes=5, in_chans=1)
    assert model.conv1.in_channels == 1
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 5)


def test_unknown_model_lists_close_matches():
    with pytest.raises(
        ConfigError, match=r"Unknown model 'resnet5'.*Did you mean.*(resnet50|resnet18)"
    ):
        _build("resnet5")


def test_unknown_weights_tag_lists_known_tags():
    with pytest.raises(ConfigError, match=r"(?s)Unknown weights tag 'bogus'.*resnet18\.a1_in1k"):
        _build("resnet18.bogus")


def test_path_as_model_name_points_to_pretrained(tmp_path):
    with pytest.raises(ConfigError, match="model.pretrained: /path"):
        _build(str(tmp_path / "weights.pth"))


def test_pretrained_true_offline_explains_local_weights(monkeypatch, tmp_path):
    import huggingface_hub.constants as hf_constants

    # huggingface_hub reads these at import, so the module attributes are patched too;
    # an empty cache makes sure no earlier download can satisfy the request.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(
        ConfigError, match=r"pretrained: /path/to/weights\.safetensors \(or \.pth\)"
    ):
        _build("resnet18", pretrained=True)


def test_batchnorm_policy_on_model_without_batchnorm_warns():
    with pytest.warns(UserWarning, match="no BatchNorm layers"):
        _build("test_convnext", batchnorm="freeze_stats")


# --- weights files -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def resnet18_imagenet_shaped() -> nn.Module:
    """A resnet18 with ImageNet's shapes (1000 classes, RGB), standing in for downloaded weights."""
    torch.manual_seed(0)
    return timm.create_model("resnet18", num_classes=1000, in_chans=3).eval()


def _assert_transferred(model: nn.Module, source: nn.Module) -> None:
    src, dst = source.state_dict(), model.state_dict()
    assert torch.allclose(dst["conv1.weight"], src["conv1.weight"].sum(dim=1, keepdim=True))
    for key in src:
        if key.startswith("fc.") or key == "conv1.weight":
            continue
        assert torch.equal(dst[key], src[key]), key
    assert dst["fc.weight"].shape == (7, 512)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_pretrained_path_adapts_channels_and_head(tmp_path, resnet18_imagenet_shaped, suffix):
    path = tmp_path / f"resnet18{suffix}"
    state = resnet18_imagenet_shaped.state_dict()
    save_file(state, str(path)) if suffix == ".safetensors" else torch.save(state, path)
    with pytest.warns(
        UserWarning,
        match=r"(?s)conv1.weight 3 -> 1.*dropped.*fc\.weight \(1000, 512\) -> \(7, 512\)",
    ):
        model = _build("resnet18", num_classes=7, in_chans=1, pretrained=str(path))
    _assert_transferred(model, resnet18_imagenet_shaped)
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 7)


def test_pretrained_path_unwraps_lightning_checkpoint(tmp_path, resnet18_imagenet_shaped):
    path = tmp_path / "epoch=3.ckpt"
    state = {f"model.{k}": v for k, v in resnet18_imagenet_shaped.state_dict().items()}
    state["criterion.weight"] = torch.ones(3)  # a loss with class weights lives in the module too
    torch.save(
        {"epoch": 3, "global_step": 10, "state_dict": state, "hyper_parameters": {"lr": 0.1}}, path
    )
    with pytest.warns(UserWarning, match="criterion.weight"):
        model = _build("resnet18", num_classes=7, in_chans=1, pretrained=str(path))
    _assert_transferred(model, resnet18_imagenet_shaped)


def test_pretrained_path_unwraps_ddp_model_container(tmp_path, resnet18_imagenet_shaped):
    path = tmp_path / "ddp.pth"
    state = {f"module.{k}": v for k, v in resnet18_imagenet_shaped.state_dict().items()}
    torch.save({"model": state, "optimizer": {"state": {}}}, path)
    with pytest.warns(UserWarning):
        report = load_weights(_build("resnet18", num_classes=7, in_chans=1), path)
    assert "layer4.1.bn2.running_var" in report.loaded
    assert [d.split()[0] for d in report.dropped] == ["fc.weight", "fc.bias"]
    assert report.missing == [] and report.unexpected == []


def test_same_shapes_load_silently(tmp_path):
    source = _build("resnet_mini", num_classes=5, in_chans=1)
    path = tmp_path / "mini.safetensors"
    save_file(source.state_dict(), str(path))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = _build("resnet_mini", num_classes=5, in_chans=1, pretrained=str(path))
    assert all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), source.state_dict().values(), strict=True)
    )


def test_one_channel_weights_into_three_channels(tmp_path):
    source = _build("mnist_cnn", num_classes=10, in_chans=1)
    path = tmp_path / "mnist.pth"
    torch.save(source.state_dict(), path)
    with pytest.warns(UserWarning, match="1 -> 3 channels"):
        model = _build("mnist_cnn", num_classes=10, in_chans=3, pretrained=str(path))
    expected = source.stages[0].conv.weight.repeat(1, 3, 1, 1) / 3
    assert torch.allclose(model.stages[0].conv.weight, expected)


def test_missing_weights_file_names_the_path(tmp_path):
    path = tmp_path / "nowhere" / "weights.safetensors"
    with pytest.raises(ConfigError, match="weights.safetensors' does not exist"):
        _build("resnet_mini", pretrained=str(path))


def test_weights_for_another_architecture_fail(tmp_path):
    path = tmp_path / "mnist.pth"
    torch.save(_build("mnist_cnn").state_dict(), path)
    with pytest.raises(ConfigError, match="do not fit ResNet"):
        _build("resnet18", pretrained=str(path))


def test_unreadable_weights_file(tmp_path):
    path = tmp_path / "broken.pth"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="Cannot read weights"):
        _build("resnet_mini", pretrained=str(path))


def test_pretrained_false_as_string_means_random_init():
    assert _build("resnet_mini", pretrained="false") is not None


# --- freezing ----------------------------------------------------------------------------------


def test_freeze_by_count_freezes_stem_then_stages():
    model = _build("resnet_mini")
    frozen = freeze(model, 2)
    assert frozen and all(n.startswith(("stem.", "stages.0.")) for n in frozen)
    expected = {n for n, _ in model.named_parameters() if n.startswith(("stem.", "stages.0."))}
    assert set(frozen) == expected
    assert {n for n, p in model.named_parameters() if not p.requires_grad} == expected
    before = _snapshot(model)
    _sgd_step(model)
    for name, param in model.named_parameters():
        changed = not torch.equal(before[name], param)
        assert changed == (name not in expected), name


def test_freeze_by_count_on_timm_model():
    model = _build("resnet18", in_chans=1)
    assert set(freeze(model, 1)) == {"conv1.weight", "bn1.weight", "bn1.bias"}
    assert len(freezable_groups(model)) == 5


def test_freeze_all_groups_trains_only_the_head():
    model = _build("mnist_cnn")
    freeze(model, len(freezable_groups(model)))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"head.fc1.weight", "head.fc1.bias", "head.fc.weight", "head.fc.bias"}


def test_freeze_count_beyond_groups_says_how_many():
    with pytest.raises(ConfigError, match="has only 4 parameter groups"):
        freeze(_build("resnet_mini"), 5)


def test_freeze_by_pattern():
    model = _build("cnn_small")
    frozen = freeze(model, ["stages.0", "*.bn.*"])
    expected = {n for n, _ in model.named_parameters() if n.startswith("stages.0.") or ".bn." in n}
    assert set(frozen) == expected
    before = _snapshot(model)
    _sgd_step(model)
    for name, param in model.named_parameters():
        assert torch.equal(before[name], param) == (name in expected), name


def test_freeze_pattern_matching_nothing_lists_names():
    with pytest.raises(
        ConfigError, match=r"(?s)'layer9\.\*' matches no parameter.*stem\.conv\.weight"
    ):
        freeze(_build("resnet_mini"), ["layer9.*"])


def test_freeze_from_config_and_describe_model():
    model = _build("resnet_mini", freeze=["stem", "stages.0"])
    counts = describe_model(model)
    frozen = sum(
        p.numel() for n, p in model.named_parameters() if n.startswith(("stem.", "stages.0."))
    )
    assert counts["trainable_params"] == counts["params"] - frozen > 0


# --- BatchNorm policy --------------------------------------------------------------------------


def _batchnorms(model: nn.Module) -> list[nn.BatchNorm2d]:
    return [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]


@pytest.mark.parametrize(
    ("policy", "stats_change", "affine_change"),
    [("train", True, True), ("freeze_stats", False, True), ("freeze", False, False)],
)
def test_batchnorm_policy(policy, stats_change, affine_change):
    model = _build("resnet_mini")
    model.train()
    apply_batchnorm_policy(model, policy)
    model.train()  # what Lightning does each epoch; the policy is re-applied after it
    apply_batchnorm_policy(model, policy)
    bns = _batchnorms(model)
    assert all(bn.training == (policy == "train") for bn in bns)
    assert all(m.training for m in model.modules() if not isinstance(m, nn.BatchNorm2d))
    stats = [t.clone() for bn in bns for t in (bn.running_mean, bn.running_var)]
    affine = [t.detach().clone() for bn in bns for t in (bn.weight, bn.bias)]
    head = model.head.fc.weight.detach().clone()
    _sgd_step(model)
    stats_after = [t for bn in bns for t in (bn.running_mean, bn.running_var)]
    affine_after = [t for bn in bns for t in (bn.weight, bn.bias)]
    stats_changed = {not torch.equal(a, b) for a, b in zip(stats, stats_after, strict=True)}
    affine_changed = {not torch.equal(a, b) for a, b in zip(affine, affine_after, strict=True)}
    assert stats_changed == {stats_change} and affine_changed == {affine_change}
    assert not torch.equal(head, model.head.fc.weight)  # the rest trains under every policy


def test_batchnorm_policy_from_config_and_unknown_policy():
    model = _build("resnet_mini", batchnorm="freeze")
    assert not any(p.requires_grad for n, p in model.named_parameters() if ".bn." in n)
    with pytest.raises(ConfigError, match="train, freeze_stats, freeze"):
        apply_batchnorm_policy(model, "frozen")


def test_public_api():
    assert set(models.__all__) >= {
        "create_model",
        "list_models",
        "freeze",
        "apply_batchnorm_policy",
        "describe_model",
    }
