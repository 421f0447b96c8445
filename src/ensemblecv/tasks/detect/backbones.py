"""Feature extractors for the detection heads: any timm model, or a tiny built-in CNN.

torchvision's heads want a backbone that returns an ordered dict of feature
maps and says its ``out_channels``. :class:`TimmFeatures` gets the maps from
timm's ``features_only`` (CNNs, Swin, ... — also ViTs, through
``forward_intermediates``); a plain backbone whose maps all share one stride
(ViT) gets a simple feature pyramid from its last map, as ViTDet does.
:func:`with_fpn` puts torchvision's FPN on top (RetinaNet, FCOS, Faster R-CNN);
SSD uses the maps directly plus a few extra stride-2 blocks.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock, LastLevelMaxPool, LastLevelP6P7


class TimmFeatures(nn.Module):
    """The last (up to) three feature maps of a timm model with stride >= 8, NCHW.

    ``channels`` and ``strides`` describe the outputs. A ViT-like model (every
    map at one stride) is turned into strides s/2, s, 2s by :class:`SimplePyramid`.
    """

    def __init__(self, body: nn.Module, levels: int = 3) -> None:
        super().__init__()
        self.body = body
        info = body.feature_info
        reductions, channels = list(info.reduction()), list(info.channels())
        fmt = getattr(body, "output_fmt", "NCHW")
        self.nhwc = str(getattr(fmt, "value", fmt)) == "NHWC"
        self.plain = len(set(reductions)) == 1
        if self.plain:
            self.pick = [len(reductions) - 1]
            self.pyramid: nn.Module | None = SimplePyramid(channels[-1])
            self.channels = self.pyramid.channels
            self.strides = [reductions[-1] // 2, reductions[-1], reductions[-1] * 2]
        else:
            keep = [i for i, r in enumerate(reductions) if r >= 8] or [len(reductions) - 1]
            self.pick = keep[-levels:]
            self.pyramid = None
            self.channels = [channels[i] for i in self.pick]
            self.strides = [reductions[i] for i in self.pick]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = self.body(x)
        maps = [feats[i] for i in self.pick]
        if self.nhwc:
            maps = [m.permute(0, 3, 1, 2).contiguous() for m in maps]
        return self.pyramid(maps[-1]) if self.pyramid is not None else maps


class SimplePyramid(nn.Module):
    """Strides s/2, s, 2s from one stride-s map (ViTDet's simple feature pyramid)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        half = max(16, channels // 2)
        self.up = nn.Sequential(nn.ConvTranspose2d(channels, half, 2, stride=2), nn.GELU())
        self.same = nn.Conv2d(channels, channels, 1)
        self.down = nn.MaxPool2d(2, ceil_mode=True)
        self.channels = [half, channels, channels]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [self.up(x), self.same(x), self.down(x)]


def _conv(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class TinyCNN(nn.Module):
    """Five stride-2 stages (16-128 channels): maps at strides 8, 16, 32 for 64-128 px images.

    Small enough to train a useful detector on a CPU in minutes. ``group_matcher``
    lets ``model.freeze: N`` count its stem and stages like a timm model's.
    """

    def __init__(self, widths: tuple[int, ...] = (16, 32, 48, 64, 96)) -> None:
        super().__init__()
        self.stem = _conv(3, widths[0], 2)
        self.stages = nn.ModuleList(
            nn.Sequential(
                _conv(widths[i], widths[i + 1], 2), _conv(widths[i + 1], widths[i + 1], 1)
            )
            for i in range(len(widths) - 1)
        )
        self.channels = list(widths[2:])
        self.strides = [8, 16, 32]

    def group_matcher(self, coarse: bool = False) -> dict:
        return {"stem": r"^stem", "blocks": r"^stages\.(\d+)"}

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        out = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i >= 1:
                out.append(x)
        return out


class WithFPN(nn.Module):
    """A multi-scale backbone + torchvision's FPN; returns an ordered dict, ``out_channels`` maps."""

    def __init__(self, features: nn.Module, out_channels: int, extra: ExtraFPNBlock | None) -> None:
        super().__init__()
        self.features = features
        self.fpn = FeaturePyramidNetwork(features.channels, out_channels, extra_blocks=extra)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> OrderedDict:
        maps = self.features(x)
        return self.fpn(OrderedDict((str(i), m) for i, m in enumerate(maps)))


def with_fpn(features: nn.Module, out_channels: int, extra: str) -> WithFPN:
    """``extra``: ``p6p7`` (RetinaNet, FCOS), ``pool`` (Faster R-CNN) or ``none``."""
    block = {
        "p6p7": LastLevelP6P7(out_channels, out_channels),
        "pool": LastLevelMaxPool(),
        "none": None,
    }[extra]
    return WithFPN(features, out_channels, block)


class SSDFeatures(nn.Module):
    """A backbone's maps plus ``extra`` stride-2 blocks, as SSD's extra layers; dict output."""

    def __init__(self, features: nn.Module, extra: int = 2, width: int = 128) -> None:
        super().__init__()
        self.features = features
        last = features.channels[-1]
        blocks = []
        for _ in range(extra):
            blocks.append(
                nn.Sequential(
                    nn.Conv2d(last, width // 2, 1),
                    nn.ReLU(inplace=True),
                    nn.Conv2d(width // 2, width, 3, stride=2, padding=1),
                    nn.ReLU(inplace=True),
                )
            )
            last = width
        self.extra = nn.ModuleList(blocks)
        self.channels = list(features.channels) + [width] * extra

    def forward(self, x: torch.Tensor) -> OrderedDict:
        maps = list(self.features(x))
        for block in self.extra:
            maps.append(block(maps[-1]))
        return OrderedDict((str(i), m) for i, m in enumerate(maps))
