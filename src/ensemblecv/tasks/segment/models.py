"""Segmenters from ``model:`` config: torchvision's, smp architectures on any encoder, a tiny U-Net.

Three kinds of names, one namespace (:func:`list_segmenters`):

* torchvision's builders — ``deeplabv3_resnet50``, ``deeplabv3_resnet101``,
  ``deeplabv3_mobilenet_v3_large``, ``fcn_resnet50``, ``fcn_resnet101``,
  ``lraspp_mobilenet_v3_large`` — with the auxiliary head where they have one;
* segmentation-models-pytorch architectures (``unet``, ``unetplusplus``, ``fpn``,
  ``deeplabv3plus``, ...) with ``model.backbone`` = an smp encoder or any timm
  model as ``tu-<name>`` (``{name: unet, backbone: tu-convnext_atto}``). smp's
  Mix-Vision-Transformer encoders (``mit_b*``) are licensed for non-commercial
  use only and are refused;
* ``tiny_unet``: a three-level U-Net that trains on a CPU in minutes (tests, demo).

Every model is wrapped in :class:`Segmenter`: uint8 or 0-1 float images in,
``{"out": logits (B, K, H, W)[, "aux": ...]}`` at the input size out;
normalisation happens inside, so checkpoints and ``predict`` need no
separate preprocessing. ``model.pretrained`` (whole model, torchvision's
COCO-VOC weights or a file) and ``model.backbone_pretrained`` (ImageNet /
timm weights of the encoder, or a file) are separate, as for detection.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ...config import ModelConfig
from ...errors import ConfigError, unknown_name_message

TORCHVISION_SEGMENTERS = (
    "deeplabv3_resnet50",
    "deeplabv3_resnet101",
    "deeplabv3_mobilenet_v3_large",
    "fcn_resnet50",
    "fcn_resnet101",
    "lraspp_mobilenet_v3_large",
)
#: ensemblecv name -> smp architecture class name.
SMP_ARCHITECTURES = {
    "unet": "Unet",
    "unetplusplus": "UnetPlusPlus",
    "fpn": "FPN",
    "pspnet": "PSPNet",
    "deeplabv3plus": "DeepLabV3Plus",
    "smp_deeplabv3": "DeepLabV3",
    "linknet": "Linknet",
    "manet": "MAnet",
    "pan": "PAN",
    "upernet": "UPerNet",
}
BUILTIN_SEGMENTERS = ("tiny_unet",)
#: smp encoders whose weights/licence forbid commercial use (NVIDIA's SegFormer MiT).
NON_COMMERCIAL_ENCODERS = ("mit_b",)


def list_segmenters() -> list[str]:
    """Every name ``model.name`` accepts with ``task: segment``."""
    return [*BUILTIN_SEGMENTERS, *SMP_ARCHITECTURES, *TORCHVISION_SEGMENTERS]


class TinyUNet(nn.Module):
    """Three resolutions, two convs each, skip connections; ~30k parameters at width 8."""

    def __init__(self, num_classes: int, width: int = 8) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
                nn.Conv2d(cout, cout, 3, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
            )

        w = width
        self.enc1, self.enc2, self.enc3 = block(3, w), block(w, 2 * w), block(2 * w, 4 * w)
        self.up2 = nn.ConvTranspose2d(4 * w, 2 * w, 2, stride=2)
        self.dec2 = block(4 * w, 2 * w)
        self.up1 = nn.ConvTranspose2d(2 * w, w, 2, stride=2)
        self.dec1 = block(2 * w, w)
        self.head = nn.Conv2d(w, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(x)
        e2 = self.enc2(F.max_pool2d(e1, 2))
        e3 = self.enc3(F.max_pool2d(e2, 2))
        d2 = self.dec2(torch.cat([self.up2(e3), e2], 1))
        d1 = self.dec1(torch.cat([self.up1(d2), e1], 1))
        return self.head(d1)


class Segmenter(nn.Module):
    """Normalise, pad to the network's stride, run, crop back: ``{"out", ["aux"]}`` logits.

    ``stride``: inputs are padded (reflect) to a multiple of it, because smp's
    decoders and the U-Net concatenate features that must line up.
    """

    def __init__(self, net: nn.Module, kind: str, mean, std, stride: int = 1) -> None:
        super().__init__()
        self.net, self.kind, self.stride = net, kind, int(stride)
        self.register_buffer(
            "mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1)
        )
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = (x - self.mean) / self.std
        h, w = x.shape[-2:]
        # At least two cells at the deepest level: a 1x1 map of one image breaks GroupNorm
        # (smp's FPN head) and pooling (PAN) in a batch of one, as predict sends.
        least = 2 * self.stride if self.stride >= 32 else self.stride
        ph, pw = max(least, h + (-h) % self.stride) - h, max(least, w + (-w) % self.stride) - w
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="reflect" if min(h, w) > max(ph, pw) else "replicate")
        out = self.net(x)
        if not isinstance(out, dict):
            out = {"out": out}
        return {k: v[..., :h, :w] for k, v in out.items() if v is not None}


def create_segmenter(cfg: ModelConfig, num_classes: int, mean, std) -> Segmenter:
    """Build ``cfg.name`` for ``num_classes`` classes; ``mean``/``std`` on the 0-1 scale.

    Freezing (``model.freeze``: N encoder stages, or name patterns) and the
    BatchNorm policy apply as for classifiers (:mod:`ensemblecv.models.freeze`).
    """
    from ..detect.models import _weights_source

    name = cfg.name
    if name not in list_segmenters():
        raise ConfigError(
            unknown_name_message("segmentation model", name, list_segmenters())
            + ". smp architectures (unet, fpn, deeplabv3plus, ...) take model.backbone: an smp "
            "encoder or any timm model as tu-<name>."
        )
    if name in SMP_ARCHITECTURES:
        if not cfg.backbone:
            raise ConfigError(
                f"model.name {name!r} is an smp architecture: set model.backbone to its encoder, "
                "e.g. resnet34, efficientnet-b0 or tu-convnext_atto (any timm model)."
            )
    elif cfg.backbone:
        raise ConfigError(
            f"model.backbone is only for the smp architectures ({', '.join(SMP_ARCHITECTURES)}); "
            f"{name} has its own backbone."
        )
    if name in TORCHVISION_SEGMENTERS:
        net, kind, stride = _torchvision(name, num_classes, cfg), "torchvision", 1
    elif name in SMP_ARCHITECTURES:
        net, kind, stride = _smp(name, num_classes, cfg), "smp", 32
    else:
        net, kind, stride = TinyUNet(num_classes), "tiny", 4
    model = Segmenter(net, kind, mean, std, stride)
    source = _weights_source(cfg.pretrained, "model.pretrained")
    if isinstance(source, Path):
        from ...models.factory import load_weights

        load_weights(model.net, source)
    _freeze(model, cfg)
    return model


def _torchvision(name: str, num_classes: int, cfg: ModelConfig) -> nn.Module:
    from torchvision.models import get_model

    from ..detect.models import _hub_weights, _load_fitting, _weights_source

    whole = _weights_source(cfg.pretrained, "model.pretrained")
    back = _weights_source(cfg.backbone_pretrained, "model.backbone_pretrained")
    weights_backbone = (
        _hub_weights(name, "model.backbone_pretrained", backbone=True)
        if back is True and whole is not True
        else None
    )
    weights = _hub_weights(name, "model.pretrained") if whole is True else None
    aux = {} if name.startswith("lraspp") else {"aux_loss": True}
    model = get_model(
        name, weights=None, weights_backbone=weights_backbone, num_classes=num_classes, **aux
    )
    if weights is not None:
        # COCO-with-VOC-labels weights: the 21-class heads fit only a 21-class workspace.
        _load_fitting(model, weights.get_state_dict(progress=False))
    if isinstance(back, Path):
        from ...models.factory import load_weights

        load_weights(model.backbone, back)
    return model


def _smp(name: str, num_classes: int, cfg: ModelConfig) -> nn.Module:
    import segmentation_models_pytorch as smp

    from ..detect.models import _OFFLINE_HINT, _weights_source

    encoder = str(cfg.backbone)
    if encoder.startswith(NON_COMMERCIAL_ENCODERS):
        raise ConfigError(
            f"model.backbone {encoder!r}: smp's Mix-Vision-Transformer encoders are licensed for "
            "non-commercial use only and are not offered; use a timm encoder instead, e.g. "
            "tu-convnext_tiny or tu-efficientnet_b0."
        )
    if not encoder.startswith("tu-"):
        from segmentation_models_pytorch.encoders import get_encoder_names

        names = [n for n in get_encoder_names() if not n.startswith(NON_COMMERCIAL_ENCODERS)]
        if encoder not in names:
            raise ConfigError(
                unknown_name_message("smp encoder", encoder, names)
                + "; any timm model works as tu-<name> (e.g. tu-resnet18)."
            )
    source = _weights_source(cfg.backbone_pretrained, "model.backbone_pretrained")
    kwargs = dict(cfg.kwargs)
    try:
        net = smp.create_model(
            SMP_ARCHITECTURES[name],
            encoder_name=encoder,
            encoder_weights="imagenet" if source is True else None,
            in_channels=3,
            classes=num_classes,
            **kwargs,
        )
    except (RuntimeError, OSError, ValueError, KeyError, TypeError) as exc:
        if source is True:
            raise ConfigError(
                f"Could not get pretrained weights for encoder {encoder} ({exc}). "
                + _OFFLINE_HINT.format(key="model.backbone_pretrained")
            ) from exc
        raise ConfigError(f"smp {name} with encoder {encoder!r} cannot be built: {exc}") from exc
    if isinstance(source, Path):
        from ...models.factory import load_weights

        load_weights(net.encoder, source)
    return net


def _encoder(model: Segmenter) -> nn.Module:
    net = model.net
    if model.kind == "torchvision":
        return net.backbone
    if model.kind == "smp":
        return net.encoder
    return nn.ModuleList([net.enc1, net.enc2, net.enc3])


def encoder_stages(model: Segmenter) -> list[list[nn.Module]]:
    """The encoder's groups that ``freeze: N`` counts: the stem, then each stage."""
    enc = _encoder(model)
    if model.kind == "smp" and hasattr(enc, "model"):  # timm universal encoder
        enc = enc.model
    children = list(enc.named_children())
    stem = [m for n, m in children if n in ("conv1", "bn1", "relu", "maxpool", "act1")]
    rest = [[m] for n, m in children if n not in ("conv1", "bn1", "relu", "maxpool", "act1")]
    return ([stem] if stem else []) + [g for g in rest if any(True for _ in g[0].parameters())]


def _freeze(model: Segmenter, cfg: ModelConfig) -> None:
    from ...models.freeze import apply_batchnorm_policy, freeze

    spec = cfg.freeze
    if isinstance(spec, int) and not isinstance(spec, bool) and spec:
        groups = encoder_stages(model)
        if spec > len(groups):
            raise ConfigError(
                f"model.freeze={spec}, but the encoder of {cfg.name} has only {len(groups)} "
                "stages (stem first); use fewer, or name patterns."
            )
        for group in groups[:spec]:
            for module in group:
                for p in module.parameters():
                    p.requires_grad_(False)
    elif spec:
        freeze(model.net, spec)
    apply_batchnorm_policy(model, cfg.batchnorm)


__all__ = [
    "BUILTIN_SEGMENTERS",
    "SMP_ARCHITECTURES",
    "TORCHVISION_SEGMENTERS",
    "Segmenter",
    "TinyUNet",
    "create_segmenter",
    "encoder_stages",
    "list_segmenters",
]
