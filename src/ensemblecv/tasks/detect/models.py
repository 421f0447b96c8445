"""Detectors from ``model:`` config: torchvision builders, heads on any timm backbone, a tiny one.

Three kinds of names, one namespace (:func:`list_detectors`):

* torchvision's builder names — ``ssd300_vgg16``, ``ssdlite320_mobilenet_v3_large``,
  ``retinanet_resnet50_fpn_v2``, ``fcos_resnet50_fpn``, ``fasterrcnn_resnet50_fpn_v2``,
  ``fasterrcnn_mobilenet_v3_large_fpn`` — with their own backbones;
* the head names ``ssd``, ``retinanet``, ``fcos``, ``fasterrcnn`` with
  ``model.backbone`` = any timm model (``{name: ssd, backbone: vit_small_patch16_224}``
  is a ViT under an SSD head: the backbone is a part, not a new model);
* ``tiny_fcos``: a small CNN + FPN + FCOS head that trains on a CPU in minutes.

Every detector is a torchvision detection model: ``model(images, targets)``
returns losses in training mode and ``[{boxes, labels, scores}]`` in eval
mode, in the pixels of the images it was given. Class ``k`` of the workspace
is label ``k + 1`` inside the model (0 is background for SSD and Faster R-CNN;
kept for all heads so the mapping is one rule).

``model.pretrained`` (whole detector: torchvision's COCO weights, or a local
file) and ``model.backbone_pretrained`` (ImageNet / timm hub weights, or a
file) are separate; offline, ``true`` fails at once, saying how to use a file.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...config import DetectConfig, ModelConfig
from ...errors import ConfigError, unknown_name_message
from .backbones import SSDFeatures, TimmFeatures, TinyCNN, with_fpn

TORCHVISION_DETECTORS = (
    "ssd300_vgg16",
    "ssdlite320_mobilenet_v3_large",
    "retinanet_resnet50_fpn_v2",
    "fcos_resnet50_fpn",
    "fasterrcnn_resnet50_fpn_v2",
    "fasterrcnn_mobilenet_v3_large_fpn",
)
HEADS = ("ssd", "retinanet", "fcos", "fasterrcnn")
BUILTIN_DETECTORS = ("tiny_fcos",)

_OFFLINE_HINT = (
    "To work offline, download the weights once where there is a network and set "
    "{key} to the local file (a .pth or .safetensors state dict)."
)


def list_detectors() -> list[str]:
    """Every name ``model.name`` accepts with ``task: detect``."""
    return [*BUILTIN_DETECTORS, *HEADS, *TORCHVISION_DETECTORS]


def create_detector(
    cfg: ModelConfig, num_classes: int, image_size: int, mean, std, detect: DetectConfig
) -> nn.Module:
    """Build ``cfg.name`` for ``num_classes`` workspace classes at ``image_size`` px inputs.

    ``mean``/``std`` (0-1 scale) normalise inside the model; ``detect`` sets its
    score threshold, NMS IoU and per-image cap. Freezing and the BatchNorm
    policy apply as for classifiers (:mod:`ensemblecv.models.freeze`).
    """
    name = cfg.name
    if name not in list_detectors():
        raise ConfigError(
            unknown_name_message("detector", name, list_detectors())
            + ". Heads (ssd, retinanet, fcos, fasterrcnn) take any timm model as model.backbone."
        )
    if name in HEADS and not cfg.backbone:
        raise ConfigError(
            f"model.name {name!r} is a detection head: set model.backbone to a timm model, "
            "e.g. resnet18, convnext_atto or vit_small_patch16_224."
        )
    if name not in HEADS and cfg.backbone:
        raise ConfigError(
            f"model.backbone is only for the heads {', '.join(HEADS)}; {name} has its own backbone."
        )
    n = num_classes + 1
    if name in TORCHVISION_DETECTORS:
        model = _torchvision(name, n, cfg)
    elif name == "tiny_fcos":
        model = _fcos(TinyCNN(), n, image_size, fpn_channels=32, num_convs=2)
    else:
        features = _timm_features(cfg, image_size)
        model = _HEAD_BUILDERS[name](features, n, image_size)
    configure(model, image_size, mean, std, detect)
    source = _weights_source(cfg.pretrained, "model.pretrained")
    if isinstance(source, Path):
        from ...models.factory import load_weights

        load_weights(model, source)
    _freeze(model, cfg)
    return model


# ----------------------------------------------------------------- post-processing


def configure(model: nn.Module, image_size: int, mean, std, detect: DetectConfig) -> None:
    """Normalisation, input size and post-processing (threshold, NMS, cap) of any detector."""
    t = model.transform
    t.image_mean, t.image_std = list(mean), list(std)
    if getattr(t, "fixed_size", None) is None:
        # Images arrive already resized to image_size; keep them so (no second resize).
        t.min_size, t.max_size = (int(image_size),), int(image_size)
    target = model.roi_heads if hasattr(model, "roi_heads") else model
    target.score_thresh = float(detect.score_threshold)
    target.nms_thresh = float(detect.nms_iou)
    target.detections_per_img = int(detect.max_detections)


# ----------------------------------------------------------------- weights


def _weights_source(value: bool | str, key: str) -> bool | Path:
    if isinstance(value, bool):
        return value
    text = value.strip()
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    if not text:
        raise ConfigError(f"{key} is an empty string; use true, false or a path to weights.")
    path = Path(text).expanduser()
    if not path.is_file():
        raise ConfigError(f"{key}: weights file {str(path)!r} does not exist.")
    return path


def _download_ok(url: str) -> bool:
    """True when ``url``'s file is in torch's cache or its host answers within 3 s."""
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)
    if cached.is_file():
        return True
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return False
    from urllib.parse import urlparse

    try:
        socket.create_connection((urlparse(url).hostname, 443), timeout=3).close()
        return True
    except OSError:
        return False


def _hub_weights(name: str, key: str, backbone: bool = False):
    """torchvision's DEFAULT weights enum of builder ``name`` (or of its backbone), checked."""
    from torchvision.models import get_model_weights

    if backbone:
        import inspect

        from torchvision.models import get_model_builder

        ann = inspect.signature(get_model_builder(name)).parameters["weights_backbone"].annotation
        enum_name = str(ann).split("[")[-1].split("]")[0].split(".")[-1]
        import torchvision.models as tvm

        weights = getattr(tvm, enum_name).DEFAULT
    else:
        weights = get_model_weights(name).DEFAULT
    if not _download_ok(weights.url):
        raise ConfigError(
            f"{key}: true needs {weights.url}, which cannot be reached (offline?). "
            + _OFFLINE_HINT.format(key=key)
        )
    return weights


def _load_fitting(model: nn.Module, state: dict) -> None:
    """Load what fits (a COCO head for 91 classes does not fit another class count)."""
    own = model.state_dict()
    fitting = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(fitting, strict=False)


def _torchvision(name: str, n: int, cfg: ModelConfig) -> nn.Module:
    from torchvision.models import get_model

    whole = _weights_source(cfg.pretrained, "model.pretrained")
    back = _weights_source(cfg.backbone_pretrained, "model.backbone_pretrained")
    weights_backbone = (
        _hub_weights(name, "model.backbone_pretrained", backbone=True)
        if back is True and whole is not True
        else None
    )
    # Checked before building: offline, a hub request fails at once, not after a slow build.
    weights = _hub_weights(name, "model.pretrained") if whole is True else None
    model = get_model(name, weights=None, weights_backbone=weights_backbone, num_classes=n)
    if weights is not None:
        _load_fitting(model, weights.get_state_dict(progress=False))
    if isinstance(back, Path):
        from ...models.factory import load_weights

        load_weights(model.backbone, back)
    return model


def _timm_features(cfg: ModelConfig, image_size: int) -> TimmFeatures:
    import timm

    from ...models.factory import _cache_only_when_offline
    from ...models.names import check_model_name

    source = _weights_source(cfg.backbone_pretrained, "model.backbone_pretrained")
    try:
        check_model_name(cfg.backbone, hub=source is True)
    except ConfigError as exc:
        raise ConfigError(f"model.backbone: {exc}") from None
    kwargs: dict[str, Any] = dict(features_only=True, pretrained=source is True)
    if cfg.drop_path_rate > 0:
        kwargs["drop_path_rate"] = cfg.drop_path_rate
    try:
        with _cache_only_when_offline(source is True):
            try:  # ViT/Swin-like models need the input size for their position embeddings
                body = timm.create_model(cfg.backbone, img_size=image_size, **kwargs)
            except TypeError:
                body = timm.create_model(cfg.backbone, **kwargs)
    except (RuntimeError, OSError) as exc:
        if source is True:
            raise ConfigError(
                f"Could not get pretrained weights for backbone {cfg.backbone} ({exc}). "
                + _OFFLINE_HINT.format(key="model.backbone_pretrained")
            ) from exc
        raise ConfigError(
            f"timm model {cfg.backbone!r} cannot serve as a detection backbone ({exc})."
        ) from exc
    if isinstance(source, Path):
        from ...models.factory import load_weights

        load_weights(body, source)
    return TimmFeatures(body)


def _freeze(model: nn.Module, cfg: ModelConfig) -> None:
    """``model.freeze`` counts the backbone's groups (stem, stages); patterns name any parameter."""
    from ...models.freeze import apply_batchnorm_policy, freeze

    if cfg.freeze:
        if isinstance(cfg.freeze, int) and not isinstance(cfg.freeze, bool):
            body = _backbone_body(model)
            if hasattr(body, "group_matcher"):
                freeze(body, cfg.freeze)
            elif hasattr(getattr(body, "model", None), "group_matcher"):  # timm FeatureGetterNet
                freeze(body.model, cfg.freeze)
            elif hasattr(body, "feature_info"):  # timm FeatureListNet: cut at the feature stages
                _freeze_feature_stages(body, cfg.freeze)
            else:
                freeze(body, cfg.freeze)  # fails with the advice to use name patterns
        else:
            freeze(model, cfg.freeze)
    apply_batchnorm_policy(model, cfg.batchnorm)


def _freeze_feature_stages(body: nn.Module, count: int) -> None:
    """Freeze the first ``count`` stages of a timm ``features_only`` trunk.

    Stage k runs up to the module that emits feature map k (its ``feature_info``),
    so stage 0 is the stem and the next ones the network's stages, as a
    classifier's ``freeze: N`` counts them.
    """
    ends = [name.replace(".", "_") for name in body.feature_info.module_name()]
    if count > len(ends):
        raise ConfigError(
            f"model.freeze={count}, but backbone {type(body).__name__} has only {len(ends)} stages "
            f"({', '.join(ends)})."
        )
    stage = 0
    for name, child in body.named_children():
        if stage >= count:
            break
        for param in child.parameters():
            param.requires_grad_(False)
        if name == ends[stage] or ends[stage].startswith(name + "_"):
            stage += 1


def _backbone_body(model: nn.Module) -> nn.Module:
    """The classifier-like trunk whose stages ``freeze: N`` counts."""
    backbone = model.backbone
    for attr in ("features", "body"):
        inner = getattr(backbone, attr, None)
        if isinstance(inner, nn.Module):
            backbone = inner
    return getattr(backbone, "body", backbone)


# ----------------------------------------------------------------- heads on any backbone


def _scale(image_size: int) -> float:
    """Anchors shrink with the image below 256 px (torchvision's sizes assume ~800 px)."""
    return min(1.0, image_size / 256)


def _fcos(features, n: int, image_size: int, fpn_channels: int = 128, num_convs: int = 4):  # noqa: ARG001
    from torchvision.models.detection import FCOS
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.fcos import FCOSHead

    backbone = with_fpn(features, fpn_channels, "p6p7" if fpn_channels >= 64 else "none")
    strides = _level_strides(features, backbone)
    # FCOS's anchor is one point per location; its size (= the stride, as torchvision's)
    # sets the centre-sampling radius and each level's range of box sizes.
    sizes = tuple((int(s),) for s in strides)
    anchors = AnchorGenerator(sizes, ((1.0,),) * len(sizes))
    head = FCOSHead(fpn_channels, 1, n, num_convs=num_convs)
    return FCOS(backbone, n, anchor_generator=anchors, head=head)


def _level_strides(features, backbone) -> list[int]:
    extra = getattr(backbone.fpn, "extra_blocks", None)
    strides = list(features.strides)
    if extra is not None:
        added = 2 if type(extra).__name__ == "LastLevelP6P7" else 1
        strides += [strides[-1] * 2**k for k in range(1, added + 1)]
    return strides


def _retinanet(features, n: int, image_size: int):
    from torchvision.models.detection import RetinaNet
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.retinanet import RetinaNetHead

    backbone = with_fpn(features, 128, "p6p7")
    strides = _level_strides(features, backbone)
    sizes = tuple(
        tuple(max(2, round(4 * s * _scale(image_size) * 2 ** (i / 3))) for i in range(3))
        for s in strides
    )
    anchors = AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(sizes))
    head = RetinaNetHead(128, anchors.num_anchors_per_location()[0], n)
    return RetinaNet(backbone, n, anchor_generator=anchors, head=head)


def _fasterrcnn(features, n: int, image_size: int):
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.ops import MultiScaleRoIAlign

    backbone = with_fpn(features, 128, "pool")
    strides = _level_strides(features, backbone)
    sizes = tuple((max(2, round(4 * s * _scale(image_size))),) for s in strides)
    anchors = AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(sizes))
    names = [str(i) for i in range(len(features.strides))]
    pool = MultiScaleRoIAlign(featmap_names=names, output_size=7, sampling_ratio=2)
    return FasterRCNN(backbone, n, rpn_anchor_generator=anchors, box_roi_pool=pool)


def _ssd(features, n: int, image_size: int):
    from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
    from torchvision.models.detection.ssd import SSD, SSDHead

    backbone = SSDFeatures(features, extra=2)
    levels = len(backbone.channels)
    ratios = [[2]] + [[2, 3]] * (levels - 2) + [[2]]
    anchors = DefaultBoxGenerator(ratios)
    head = SSDHead(backbone.channels, anchors.num_anchors_per_location(), n)
    return SSD(backbone, anchors, (image_size, image_size), n, head=head)


_HEAD_BUILDERS = {"ssd": _ssd, "retinanet": _retinanet, "fcos": _fcos, "fasterrcnn": _fasterrcnn}

__all__ = [
    "BUILTIN_DETECTORS",
    "HEADS",
    "TORCHVISION_DETECTORS",
    "configure",
    "create_detector",
    "list_detectors",
]
