"""Built-in small CNNs for 28–64 px images, registered in timm's model registry.

They live in timm's registry (not a private one) so one name space covers
everything ``model.name`` accepts: ``timm.create_model('mnist_cnn', num_classes=10)``
works, ``timm.list_models('*cnn*')`` lists them, and each model carries a
``pretrained_cfg`` (input size, mean/std, first conv, classifier) that
preprocessing and weight loading read exactly as they do for timm's models.

They follow timm's model API — ``forward_features`` / ``forward_head``,
``get_classifier`` / ``reset_classifier`` and ``group_matcher`` — so freezing by
stage count, head replacement and checkpoint adaptation need no special case.
None of them has hub weights: ``pretrained: true`` is refused by the factory.

Registration happens on import; ``ensemblecv.models`` imports this module.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from timm.layers import ClassifierHead, DropPath
from timm.models import build_model_with_cfg, register_model
from torch import nn

#: Names registered by this module, in the order they are documented.
BUILTIN_MODELS = ("mnist_cnn", "cnn_small", "resnet_mini", "resnet9_small")

_GROUP_MATCHER = dict(stem=r"^stem", blocks=r"^stages\.(\d+)")


def _cfg(**kwargs: Any) -> dict[str, Any]:
    # Neutral 0.5/0.5 normalisation: these models train from scratch, so the
    # usual choice is data.normalize: dataset; the entrypoint widens mean/std
    # to the requested number of channels.
    cfg = dict(
        url="",
        num_classes=10,
        input_size=(1, 28, 28),
        pool_size=(7, 7),
        crop_pct=1.0,
        interpolation="bilinear",
        mean=(0.5,),
        std=(0.5,),
        first_conv="stages.0.conv",
        classifier="head.fc",
    )
    return {**cfg, **kwargs}


#: Read by ``timm.models.register_model`` when each entrypoint below is decorated.
default_cfgs = {
    "mnist_cnn": _cfg(),
    "cnn_small": _cfg(first_conv="stages.0.0.conv", pool_size=(3, 3)),
    "resnet_mini": _cfg(first_conv="stem.conv", pool_size=(7, 7)),
    "resnet9_small": _cfg(first_conv="stem.conv", pool_size=(3, 3)),
}


def _warn_no_drop_path(name: str, drop_path_rate: float) -> None:
    if drop_path_rate:
        warnings.warn(
            f"{name} has no residual blocks, so drop_path_rate={drop_path_rate} (stochastic depth) "
            "is ignored; use resnet_mini or a timm model for stochastic depth.",
            stacklevel=3,
        )


class ConvBnAct(nn.Sequential):
    """conv 3×3 (padding 1) → BatchNorm → ReLU, the unit every model here is made of."""

    def __init__(self, in_chs: int, out_chs: int, stride: int = 1, bias: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, 3, stride=stride, padding=1, bias=bias)
        self.bn = nn.BatchNorm2d(out_chs)
        self.act = nn.ReLU(inplace=True)


class _TimmApi(nn.Module):
    """timm's model API on top of ``stages`` and a ``head`` with ``fc`` (and ``reset``)."""

    def group_matcher(self, coarse: bool = False) -> dict[str, str]:
        # Same regexes as timm's ConvNeXt: groups are stem, stages.0, stages.1, ...;
        # anything unmatched (the head) sorts last and is never frozen by count.
        return dict(_GROUP_MATCHER)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        if enable:
            raise NotImplementedError(
                f"{type(self).__name__} is too small for gradient checkpointing"
            )

    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        self.head.reset(num_classes, global_pool)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


class _MnistHead(nn.Module):
    """pool to 7×7 → flatten → [dropout drop_rate] → Linear(·,128) → ReLU → Dropout(0.5) → fc."""

    def __init__(
        self, in_chs: int, num_classes: int, pool_type: str, drop_rate: float, hidden: int = 128
    ):
        super().__init__()
        self.hidden = hidden
        self.global_pool = self._pool(pool_type)
        self.flatten = nn.Flatten(1)
        # The report's network has no dropout here; drop_rate adds one for users who ask for it.
        self.drop = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()
        self.fc1 = nn.Linear(in_chs * 7 * 7, hidden)
        self.act = nn.ReLU(inplace=True)
        self.drop_hidden = nn.Dropout(0.5)  # part of the report's architecture, not a knob
        self.fc = nn.Linear(hidden, num_classes) if num_classes > 0 else nn.Identity()

    @staticmethod
    def _pool(pool_type: str) -> nn.Module:
        # Pooling to a fixed 7×7 (identity at 28 px) keeps fc1's size, and so
        # checkpoints, the same for any input from 28 to 64 px.
        if pool_type == "avg":
            return nn.AdaptiveAvgPool2d((7, 7))
        if pool_type == "max":
            return nn.AdaptiveMaxPool2d((7, 7))
        raise ValueError(
            f"mnist_cnn supports global_pool 'avg' or 'max' (to 7×7), not {pool_type!r}"
        )

    def reset(self, num_classes: int, pool_type: str | None = None) -> None:
        if pool_type is not None:
            self.global_pool = self._pool(pool_type)
        self.fc = nn.Linear(self.hidden, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.drop_hidden(self.act(self.fc1(self.drop(self.flatten(self.global_pool(x))))))
        return x if pre_logits else self.fc(x)


class MnistCNN(_TimmApi):
    """The reports' MNIST network.

    conv(in,32)-BN-ReLU-maxpool2 → conv(32,64)-BN-ReLU-maxpool2 → 7×7 → Linear(3136,128)-ReLU
    -Dropout(0.5) → Linear(128, num_classes). Convs keep their bias, as in the report.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 1,
        drop_rate: float = 0.0,
        global_pool: str = "avg",
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        _warn_no_drop_path("mnist_cnn", drop_path_rate)
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.stem = nn.Identity()
        self.stages = nn.Sequential(self._block(in_chans, 32), self._block(32, 64))
        self.num_features = 64
        self.head = _MnistHead(64, num_classes, global_pool, drop_rate)
        self.head_hidden_size = self.head.hidden

    @staticmethod
    def _block(in_chs: int, out_chs: int) -> nn.Sequential:
        block = ConvBnAct(in_chs, out_chs, bias=True)
        block.add_module("pool", nn.MaxPool2d(2))
        return block


class _PoolHead(ClassifierHead):
    """timm's ClassifierHead whose ``reset`` accepts ``(num_classes, global_pool)`` positionally."""

    def reset(self, num_classes: int, pool_type: str | None = None, **kwargs: Any) -> None:
        super().reset(num_classes, pool_type=pool_type, **kwargs)


class CnnSmall(_TimmApi):
    """VGG-style: 3 blocks of two conv-BN-ReLU (32, 64, 128 wide) each ending in maxpool 2,
    then global pooling → dropout(drop_rate) → Linear."""

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 1,
        drop_rate: float = 0.0,
        global_pool: str = "avg",
        drop_path_rate: float = 0.0,
        widths: tuple[int, ...] = (32, 64, 128),
    ) -> None:
        super().__init__()
        _warn_no_drop_path("cnn_small", drop_path_rate)
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.stem = nn.Identity()
        stages, prev = [], in_chans
        for width in widths:
            stages.append(
                nn.Sequential(ConvBnAct(prev, width), ConvBnAct(width, width), nn.MaxPool2d(2))
            )
            prev = width
        self.stages = nn.Sequential(*stages)
        self.num_features = self.head_hidden_size = prev
        self.head = _PoolHead(prev, num_classes, pool_type=global_pool, drop_rate=drop_rate)


class BasicBlock(nn.Module):
    """ResNet basic block; ``drop_path`` drops the residual branch per sample (stochastic depth)."""

    def __init__(self, in_chs: int, out_chs: int, stride: int = 1, drop_path: float = 0.0) -> None:
        super().__init__()
        self.conv1 = ConvBnAct(in_chs, out_chs, stride=stride)
        self.conv2 = nn.Conv2d(out_chs, out_chs, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_chs)
        self.downsample = None
        if stride != 1 or in_chs != out_chs:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_chs, out_chs, 1, stride=stride, bias=False), nn.BatchNorm2d(out_chs)
            )
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        x = self.bn2(self.conv2(self.conv1(x)))
        return self.act(self.drop_path(x) + shortcut)


class ResNetMini(_TimmApi):
    """A tiny ResNet: conv stem (no downsampling — inputs are small), 3 stages of
    BasicBlocks 32/64/128 wide with strides 1/2/2, global pooling → dropout → Linear.

    ``drop_path_rate`` is the stochastic-depth rate of the last block; earlier
    blocks get linearly smaller rates, the first none (as in timm's ResNets).
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 1,
        drop_rate: float = 0.0,
        global_pool: str = "avg",
        drop_path_rate: float = 0.0,
        widths: tuple[int, ...] = (32, 64, 128),
        depths: tuple[int, ...] = (2, 2, 2),
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.stem = ConvBnAct(in_chans, widths[0])
        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        stages, prev = [], widths[0]
        for i, (width, depth) in enumerate(zip(widths, depths, strict=True)):
            blocks = []
            for j in range(depth):
                stride = 2 if i > 0 and j == 0 else 1
                blocks.append(BasicBlock(prev, width, stride=stride, drop_path=rates.pop(0)))
                prev = width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.num_features = self.head_hidden_size = prev
        self.head = _PoolHead(prev, num_classes, pool_type=global_pool, drop_rate=drop_rate)


class _Residual(nn.Module):
    """x + (conv-BN-ReLU twice)(x): ResNet-9's residual unit (no projection, same width)."""

    def __init__(self, chs: int, drop_path: float = 0.0) -> None:
        super().__init__()
        self.body = nn.Sequential(ConvBnAct(chs, chs), ConvBnAct(chs, chs))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop_path(self.body(x))


class ResNet9Small(_TimmApi):
    """ResNet-9 (Page, 2018; the DAWNBench CIFAR-10 speed record) sized for 28–64 px.

    stem conv(w) → stage 1: conv(2w)-pool, residual(2w) → stage 2: conv(4w)-pool →
    stage 3: conv(8w)-pool, residual(8w) → global pool → dropout → Linear. Few, wide
    layers at low resolution: most of the compute is in large matrix products, which
    is what a CPU does fastest, and 3 poolings take 28 px down to 3×3.
    ``width`` (``model.kwargs: {width: 48}``) trades speed for accuracy.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 1,
        drop_rate: float = 0.0,
        global_pool: str = "avg",
        drop_path_rate: float = 0.0,
        width: int = 32,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.in_chans = in_chans
        w = width
        self.stem = ConvBnAct(in_chans, w)

        def down(i: int, o: int) -> nn.Sequential:
            return nn.Sequential(ConvBnAct(i, o), nn.MaxPool2d(2))

        self.stages = nn.Sequential(
            nn.Sequential(down(w, 2 * w), _Residual(2 * w, drop_path_rate / 2)),
            nn.Sequential(down(2 * w, 4 * w)),
            nn.Sequential(down(4 * w, 8 * w), _Residual(8 * w, drop_path_rate)),
        )
        self.num_features = self.head_hidden_size = 8 * w
        self.head = _PoolHead(8 * w, num_classes, pool_type=global_pool, drop_rate=drop_rate)


def _create(variant: str, model_cls: type[nn.Module], pretrained: bool, **kwargs: Any) -> nn.Module:
    # The pretrained cfg is per architecture; overlay input size and mean/std so
    # they describe the channel count this instance was built for.
    chans = kwargs.get("in_chans", 1)
    overlay = dict(kwargs.pop("pretrained_cfg_overlay", None) or {})
    overlay.setdefault("input_size", (chans, 28, 28))
    overlay.setdefault("mean", (0.5,) * chans)
    overlay.setdefault("std", (0.5,) * chans)
    return build_model_with_cfg(
        model_cls, variant, pretrained, pretrained_cfg_overlay=overlay, **kwargs
    )


@register_model
def mnist_cnn(pretrained: bool = False, **kwargs: Any) -> MnistCNN:
    """The reports' MNIST CNN: two conv-BN-ReLU-maxpool blocks, Linear 128, dropout 0.5."""
    return _create("mnist_cnn", MnistCNN, pretrained, **kwargs)


@register_model
def cnn_small(pretrained: bool = False, **kwargs: Any) -> CnnSmall:
    """VGG-style CNN, 3 blocks of 2 convs (32/64/128), global-average-pool head."""
    return _create("cnn_small", CnnSmall, pretrained, **kwargs)


@register_model
def resnet_mini(pretrained: bool = False, **kwargs: Any) -> ResNetMini:
    """Tiny ResNet (3 stages of 2 BasicBlocks, 32/64/128) with stochastic depth."""
    return _create("resnet_mini", ResNetMini, pretrained, **kwargs)


@register_model
def resnet9_small(pretrained: bool = False, **kwargs: Any) -> ResNet9Small:
    """ResNet-9 for small images (widths 32/64/128/256; ``width`` scales them): small-cpu's."""
    return _create("resnet9_small", ResNet9Small, pretrained, **kwargs)
