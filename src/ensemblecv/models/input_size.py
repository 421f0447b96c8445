"""Which image sizes a model can take, and the input settings a run resolves from its model.

Why this exists: ViT-style models are built for one input size (their position
embeddings, token grid and attention windows follow it), so training at
``data.image_size: 64`` must *build* the model at 64 — timm's ``img_size``
argument, which also resamples pretrained position embeddings on load. Some
architectures cannot take a size at all (a stem that shrinks 64 px to nothing,
patches that do not tile the image); that is refused before training, in one
line, with the nearest sizes that work.

The legality rule is not a table per model name; it is two checks any timm
model can answer:

1. **the forward pass runs**: the model is built at that size and given one
   image — on PyTorch's ``meta`` device (shapes only, no memory, no
   arithmetic), or for a CNN at up to 160 px as a zero-filled CPU copy, whose
   small real forward is faster than the meta device's Python kernels; a stem
   or pooling that leaves no pixels fails there exactly as in training;
2. **the patches tile the image**: a model with a patch embedding (ViT, DeiT,
   EVA, Swin, hybrids) must get a multiple of its total patch stride — a
   strided patch convolution would otherwise silently drop the last rows.

A failure is only believed once it is seen on a normally initialised model
(zeros could, in principle, trip a data-dependent op), and models whose ops
the meta device cannot run are probed on the CPU instead. Results are cached
per process, so the check costs one probe per (model, size) — about a second.
"""

from __future__ import annotations

import json
import warnings
from functools import lru_cache
from typing import Any

import torch
from torch import nn

from ..config import ExperimentConfig, NormalizeValues
from ..errors import ConfigError
from .small_cnns import BUILTIN_MODELS

#: Size the built-in CNNs are trained at when data.image_size is unset (their pretrained_cfg).
BUILTIN_IMAGE_SIZE = 28
#: Smallest and largest sizes data.image_size accepts (the config's bounds).
_MIN_SIZE, _MAX_SIZE = 8, 4096
#: Probes per direction when looking for the nearest legal sizes (each one forward).
_NEAREST_PROBES = 10
#: Up to this size a CNN is probed with a real one-image CPU forward: the meta device runs
#: every op through Python (~2 s for Inception-ResNet), a small real forward takes ~0.2 s.
_REAL_PROBE_MAX = 160


def _is_local_name(name: str) -> bool:
    """True for names timm resolves from its registry (not ``hf-hub:`` / ``local-dir:``)."""
    return ":" not in name


# ---------------------------------------------------------------- building at a size


Frozen = str  # model.kwargs as canonical JSON: hashable, so probes can be cached by it


def _freeze(kwargs: dict[str, Any]) -> Frozen:
    return json.dumps(kwargs, sort_keys=True)


def _thaw(extra: Frozen) -> dict[str, Any]:
    return json.loads(extra) if extra else {}


@lru_cache(maxsize=256)
def _takes_img_size(name: str, extra: Frozen = "") -> bool:
    """Whether ``name``'s constructor accepts ``img_size`` (fixed-input-size models do).

    Asked by building it on the meta device at its native size: a constructor
    without the argument fails at once with a TypeError that names it.
    """
    try:
        _build(name, 3, {**_thaw(extra), "img_size": _native_size(name)}, device="meta")
    except TypeError as exc:
        if "img_size" in str(exc):
            return False
    except Exception:  # accepted the argument, failed for another reason: the probe reports it
        pass
    return True


def size_kwargs(
    name: str, image_size: int | None, kwargs: dict[str, Any] | None = None
) -> dict[str, Any]:
    """timm kwargs that build ``name`` for ``image_size`` px inputs: ``{'img_size': size}``
    for models that take one (ViT, DeiT, EVA, Swin, hybrids, ...), else ``{}``.

    timm resamples pretrained absolute position embeddings (and Swin's relative
    position tables) to the new grid when it loads hub weights into such a model.
    """
    if image_size is None or not _is_local_name(name):
        return {}
    if not _takes_img_size(name, _freeze(kwargs or {})):
        return {}
    return {"img_size": int(image_size)}


def _build(name: str, in_chans: int, kwargs: dict[str, Any], device: str) -> nn.Module:
    import timm

    with warnings.catch_warnings(), torch.device(device):
        warnings.simplefilter("ignore")
        return timm.create_model(name, pretrained=False, num_classes=2, in_chans=in_chans, **kwargs)


def patch_stride(model: nn.Module) -> int | None:
    """Pixels per token side of a patch-embedding model (16 for ViT-B/16, 32 for R26+S/32)."""
    embed = getattr(model, "patch_embed", None)
    if embed is None:
        return None
    if hasattr(embed, "feat_ratio"):
        return int(embed.feat_ratio())
    size = getattr(embed, "patch_size", None)
    if size is None:
        return None
    return int(max(size) if isinstance(size, (tuple, list)) else size)


# ---------------------------------------------------------------- probing


@lru_cache(maxsize=64)
def _meta_model(name: str, in_chans: int, extra: Frozen) -> nn.Module:
    """One shape-only instance for models whose build does not depend on the size."""
    return _build(name, in_chans, _thaw(extra), device="meta").eval()


#: Models whose zeroed-tensor probe failed only where an initialised one failed too.
_ZEROED_AGREES: set[tuple] = set()


@lru_cache(maxsize=2)  # one real model (zeroed + initialised): throwaway memory
def _cpu_model(name: str, in_chans: int, extra: Frozen, initialised: bool) -> nn.Module:
    """A CPU instance for probing. Not ``initialised``: the meta model's tensors allocated
    and zeroed (no random init, which costs seconds for 50M parameters); shapes are all a
    probe needs, and a failure is confirmed on an ``initialised`` one before it is believed.
    """
    if initialised:
        return _build(name, in_chans, _thaw(extra), device="cpu").eval()
    model = _build(name, in_chans, _thaw(extra), device="meta").to_empty(device="cpu")
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            tensor.zero_()
    return model.eval()


def _forward_fails(name: str, size: int, in_chans: int, extra: Frozen, device: str) -> str | None:
    """None when one ``size`` px image goes through ``name``, else a one-line reason.

    ``device``: ``meta``, ``cpu`` (zeroed tensors) or ``cpu-initialised``. The global
    RNG is left as it was: a probe inside a seeded run must not change its weights.
    """
    with torch.random.fork_rng(devices=[]):
        return _forward_fails_here(name, size, in_chans, extra, device)


def _forward_fails_here(
    name: str, size: int, in_chans: int, extra: Frozen, device: str
) -> str | None:
    try:
        fixed = _takes_img_size(name, extra)
        if fixed:
            kwargs = {**_thaw(extra), "img_size": size}
            model = _build(name, in_chans, kwargs, device=device.split("-")[0]).eval()
        elif device == "meta":
            model = _meta_model(name, in_chans, extra)
        else:
            model = _cpu_model(name, in_chans, extra, device == "cpu-initialised")
        stride = _size_step(name, in_chans, extra) if fixed else None
        if stride and stride > 1 and size % stride:
            return f"its {stride}-px patches do not tile {size} px"
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model(torch.zeros(1, in_chans, size, size, device=device.split("-")[0]))
    except Exception as exc:  # any failure at this size: the reason goes into the message
        return _short(exc)
    return None


def _short(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ""
    if len(text) > 160:
        text = text[:157] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def size_problem(
    name: str, size: int, in_chans: int = 3, kwargs: dict[str, Any] | None = None
) -> str | None:
    """Why ``name`` cannot take ``size`` px images (one line), or None when it can.

    CNNs up to 160 px: a forward of the zero-filled CPU copy, a failure
    confirmed on an initialised one. Otherwise the meta device; when that
    fails and the meta device cannot run the model even at its native size
    (an op without a meta kernel), the probe is repeated on the CPU.
    """
    return _size_problem(name, int(size), in_chans, _freeze(kwargs or {}))


@lru_cache(maxsize=1024)
def _size_problem(name: str, size: int, in_chans: int, extra: Frozen) -> str | None:
    if not _takes_img_size(name, extra) and size <= _REAL_PROBE_MAX:
        reason = _forward_fails(name, size, in_chans, extra, "cpu")
        if reason is None or (name, in_chans, extra) in _ZEROED_AGREES:
            return reason
        confirmed = _forward_fails(name, size, in_chans, extra, "cpu-initialised")
        if confirmed is not None:  # a failure from the shapes, not from the zeros: trust them
            _ZEROED_AGREES.add((name, in_chans, extra))
        return confirmed
    reason = _forward_fails(name, size, in_chans, extra, "meta")
    if reason is None or "patches do not tile" in reason:
        return reason
    native = _native_size(name)
    if native != size and _forward_fails(name, native, in_chans, extra, "meta") is not None:
        return _forward_fails(name, size, in_chans, extra, "cpu-initialised")
    return reason


def _native_size(name: str) -> int:
    cfg = model_data_config(name)
    return int(cfg["input_size"][-1]) if cfg else 224


@lru_cache(maxsize=256)
def _size_step(name: str, in_chans: int, extra: Frozen) -> int:
    """The lattice legal sizes lie on: the patch stride for patch models, else 1 px.

    Read from the model at its default size: a hybrid's embedding infers its
    CNN's reduction from the size it was built for, which floors at others.
    """
    if not _takes_img_size(name, extra):
        return 1
    return patch_stride(_build(name, in_chans, _thaw(extra), device="meta")) or 1


def smallest_image_size(
    name: str, in_chans: int = 3, kwargs: dict[str, Any] | None = None
) -> int | None:
    """The smallest size found to work for ``name`` (None if none up to 4096 px).

    Searched upwards from 8 px on the model's size lattice (doubling, then
    bisecting), assuming that a size works once it is large enough — true of
    stems and downsampling; the size returned has itself passed the probe.
    """
    extra = _freeze(kwargs or {})
    step = _size_step(name, in_chans, extra)
    first = -(-_MIN_SIZE // step) * step
    ok = lambda s: _size_problem(name, s, in_chans, extra) is None  # noqa: E731
    if ok(first):
        return first
    return _first_ok_above(first, step, ok)


def nearest_sizes(
    name: str, size: int, in_chans: int = 3, kwargs: dict[str, Any] | None = None
) -> list[int]:
    """Up to two sizes near ``size`` that ``name`` takes: the closest below and above.

    Patch models step in multiples of their patch stride. When ``size`` is
    below :func:`smallest_image_size` (a stem too small for it) that is the
    one answer; otherwise the closest few sizes each way are probed, and
    above, when they all fail, the search doubles and bisects. Every size
    returned has passed the probe.
    """
    smallest = smallest_image_size(name, in_chans, kwargs)
    if smallest is None or smallest > size:  # too small: the first size that works, above
        return [] if smallest is None else [smallest]
    extra = _freeze(kwargs or {})
    step = _size_step(name, in_chans, extra)
    ok = lambda s: _size_problem(name, s, in_chans, extra) is None  # noqa: E731
    below = [s for s in range((size // step) * step, _MIN_SIZE - 1, -step) if s != size]
    above = list(range((size // step + 1) * step, _MAX_SIZE + 1, step))
    found = [next((s for s in below[:_NEAREST_PROBES] if ok(s)), None)]
    up = next((s for s in above[:_NEAREST_PROBES] if ok(s)), None)
    if up is None and len(above) > _NEAREST_PROBES:
        up = _first_ok_above(above[_NEAREST_PROBES - 1], step, ok)
    found.append(up)
    return [s for s in found if s is not None]


def _first_ok_above(failed: int, step: int, ok) -> int | None:
    hi = failed * 2
    while hi <= _MAX_SIZE and not ok(hi):
        failed, hi = hi, hi * 2
    if hi > _MAX_SIZE:
        return None
    while hi - failed > step:  # bisect on the step lattice; hi always passes
        mid = failed + ((hi - failed) // step // 2) * step
        if ok(mid):
            hi = mid
        else:
            failed = mid
    return hi


def check_image_size(
    name: str, size: int, in_chans: int = 3, kwargs: dict[str, Any] | None = None
) -> None:
    """Raise ConfigError, one line naming the model, the size and the nearest sizes that work,
    when ``name`` cannot take ``size`` px images. Names from a hub or folder are not probed."""
    if not _is_local_name(name):
        return
    reason = size_problem(name, int(size), in_chans, kwargs)
    if reason is None:
        return
    near = nearest_sizes(name, int(size), in_chans, kwargs)
    hint = (
        f"nearest sizes that work: {', '.join(map(str, near))}"
        if near
        else "no size up to 4096 px works"
    )
    raise ConfigError(
        f"{name} cannot take data.image_size={size} ({reason}); {hint} "
        "(set data.image_size to one of them)."
    )


# ---------------------------------------------------------------- the model's own data config


@lru_cache(maxsize=256)
def _data_config_cached(name: str) -> tuple | None:
    from timm.data import resolve_data_config
    from timm.models import get_pretrained_cfg, parse_model_name

    _, model_id = parse_model_name(name)
    try:
        pretrained_cfg = get_pretrained_cfg(model_id)
    except RuntimeError:
        pretrained_cfg = None
    if pretrained_cfg is None:
        return None
    cfg = resolve_data_config({}, pretrained_cfg=pretrained_cfg.to_dict())
    return tuple(sorted(cfg.items()))


def model_data_config(name: str) -> dict[str, Any] | None:
    """timm's resolved data config of ``name`` (input_size, interpolation, mean, std,
    crop_pct, crop_mode), from its pretrained_cfg; None when timm has none for it."""
    if not _is_local_name(name):
        return None
    cached = _data_config_cached(name)
    return dict(cached) if cached is not None else None


def _channel_values(values, channels: int) -> list[float]:
    values = [float(v) for v in values]
    if channels == 1 and len(values) == 3:
        return [sum(values) / 3]  # a gray image is the mean of the RGB channels
    return values


def resolve_inputs(config: ExperimentConfig) -> ExperimentConfig:
    """The config with its input size settled and checked against the model.

    ``data.image_size`` unset: built-in CNNs train at 28 px, as they always
    did; a timm model takes its pretrained_cfg's input size, interpolation
    and crop, and its mean/std — each only where the config leaves that key
    unset (``data.normalize``, ``data.resize``, ``data.interpolation``,
    ``data.crop_pct``). The returned config is what the run saves, so its
    ``config.yaml`` records the values used.

    Then the size is checked (:func:`check_image_size`): a size the
    architecture cannot take is a ConfigError here, before any data is read.
    Idempotent.
    """
    from .names import check_model_name

    data = config.data
    name = config.model.name
    check_model_name(name, hub=False)  # an unknown name says so, not "cannot take this size"
    if data.image_size is None:
        if name in BUILTIN_MODELS:
            update: dict[str, Any] = {"image_size": BUILTIN_IMAGE_SIZE}
        else:
            update = _from_model(name, data)
        data = data.model_copy(update=update)
        config = config.model_copy(update={"data": data})
    check_image_size(name, data.image_size, data.channels, config.model.kwargs)
    return config


def _from_model(name: str, data) -> dict[str, Any]:
    cfg = model_data_config(name)
    if cfg is None:
        raise ConfigError(
            f"data.image_size is unset and timm has no pretrained_cfg for {name} to take it "
            "from; set data.image_size (e.g. 224)."
        )
    _, height, width = cfg["input_size"]
    update: dict[str, Any] = {"image_size": int(max(height, width))}
    given = data.model_fields_set
    if "normalize" not in given:
        update["normalize"] = NormalizeValues(
            mean=_channel_values(cfg["mean"], data.channels),
            std=_channel_values(cfg["std"], data.channels),
        )
    if "interpolation" not in given and cfg.get("interpolation") in _INTERPOLATIONS:
        update["interpolation"] = cfg["interpolation"]
    if "resize" not in given and cfg.get("crop_mode", "center") == "center":
        update["resize"] = "center_crop"
        if "crop_pct" not in given and cfg.get("crop_pct"):
            update["crop_pct"] = float(cfg["crop_pct"])
    return update


_INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos")
