"""One factory from ``model:`` config to a ready ``nn.Module``.

Any name in timm's registry works — timm's ~1,300 architectures and the
built-in small CNNs, which register there (``small_cnns``). Weights come from
the hub (``pretrained: true``) or a local file (``pretrained: PATH``); a local
file is the offline route, so every hub failure says how to use one.

Local files are read without executing code (safetensors, or ``torch.load``
with ``weights_only=True``) and adapted to the model: training wrappers are
unwrapped, the first conv follows ``in_chans`` and tensors whose shapes differ
(a head for another number of classes) are dropped — always reported, never
silently.
"""

from __future__ import annotations

import os
import socket
import sys
import warnings
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import timm
import torch
from timm.layers import resample_abs_pos_embed
from timm.models import adapt_input_conv
from torch import nn

from ..config import ModelConfig
from ..errors import ConfigError, format_list
from .freeze import apply_batchnorm_policy, freeze
from .input_size import check_image_size, size_kwargs
from .names import check_model_name

_OFFLINE_HINT = (
    "To work offline, download the weights once where there is a network and set "
    "model.pretrained to a local file: pretrained: /path/to/weights.safetensors (or .pth)."
)
#: Keys under which training frameworks nest the weights in a checkpoint.
_CONTAINER_KEYS = (
    "state_dict",
    "model_state_dict",
    "model",
    "module",
    "state_dict_ema",
    "model_ema",
)


def list_models(pattern: str = "*", pretrained: bool = False) -> list[str]:
    """Names ``model.name`` accepts that match ``pattern`` (fnmatch), built-ins included.

    ``pretrained=True`` lists ``arch.tag`` names that have hub weights.
    """
    return timm.list_models(pattern, pretrained=pretrained)


def describe_model(model: nn.Module) -> dict[str, int]:
    """Parameter counts: ``params`` (all) and ``trainable_params`` (``requires_grad``)."""
    params = list(model.parameters())
    return dict(
        params=sum(p.numel() for p in params),
        trainable_params=sum(p.numel() for p in params if p.requires_grad),
    )


def create_model(
    cfg: ModelConfig, num_classes: int, in_chans: int, image_size: int | None = None
) -> nn.Module:
    """Build ``cfg.name`` for ``num_classes`` outputs and ``in_chans`` (1 or 3) input channels.

    ``image_size`` (px, square): models built for one input size (ViT, DeiT,
    EVA, Swin, hybrids) are built for it — timm's ``img_size``, with hub
    position embeddings resampled to the new token grid, and a local weights
    file's too (:func:`load_weights`); a size the architecture cannot take is
    a one-line ConfigError with the nearest sizes that work
    (:func:`~ensemblecv.models.input_size.check_image_size`). None builds the
    model at its default size.

    Passes ``drop_rate`` (dropout before the classifier), ``drop_path_rate``
    (stochastic depth; skipped with a warning where the architecture has none)
    and ``global_pool`` to the model; loads ``cfg.pretrained`` weights; then
    applies ``cfg.freeze`` and ``cfg.batchnorm`` (both idempotent, so callers
    may apply them again — the BatchNorm policy must be, after each ``train()``).

    Raises ConfigError for an unknown name (with close matches), hub weights
    that cannot be fetched (with the offline alternative) and unusable files.
    """
    source = _pretrained_source(cfg.pretrained)
    check_model_name(cfg.name, hub=source is True)
    if image_size is not None:
        check_image_size(cfg.name, image_size, in_chans, cfg.kwargs)
    kwargs: dict[str, Any] = dict(
        num_classes=num_classes,
        in_chans=in_chans,
        drop_rate=cfg.drop_rate,
        **size_kwargs(cfg.name, image_size, cfg.kwargs),
        **cfg.kwargs,
    )
    if cfg.drop_path_rate > 0:
        kwargs["drop_path_rate"] = cfg.drop_path_rate
    if cfg.global_pool is not None:
        kwargs["global_pool"] = cfg.global_pool
    try:
        model = _build(cfg.name, source is True, kwargs)
    except ConfigError:
        raise
    except Exception as exc:
        error = _build_error(cfg, exc, hub=source is True or ":" in cfg.name)
        if error is None:
            raise
        raise error from exc
    if isinstance(source, Path):
        load_weights(model, source)
    if cfg.mixstyle is not None:  # domain generalisation: see models/mixstyle.py
        from .mixstyle import attach_mixstyle

        attach_mixstyle(model, **cfg.mixstyle.model_dump())
    if cfg.freeze:
        freeze(model, cfg.freeze)
    touched = apply_batchnorm_policy(model, cfg.batchnorm)
    if cfg.batchnorm != "train" and not touched:
        warnings.warn(
            f"model.batchnorm={cfg.batchnorm!r} has no effect: {cfg.name} has no BatchNorm layers "
            "(it normalises with LayerNorm/GroupNorm, which keep no running statistics).",
            stacklevel=2,
        )
    return model


def _pretrained_source(value: bool | str) -> bool | Path:
    """True (hub), False (random init) or the Path of a weights file."""
    if isinstance(value, bool):
        return value
    text = value.strip()
    # A command-line override may arrive as the string "true"; nobody names a weights file that.
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    if not text:
        raise ConfigError(
            "model.pretrained is an empty string; use true, false or a path to weights."
        )
    return Path(text).expanduser()


def _hub_unreachable() -> bool:
    """True when offline mode is set or the hub's host cannot be reached within 3 s."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return True
    host = (
        urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname
        or "huggingface.co"
    )
    try:
        socket.create_connection((host, 443), timeout=3).close()
        return False
    except OSError:
        return True


@contextmanager
def _cache_only_when_offline(pretrained: bool):
    """Offline, use only weights already in the local hub cache.

    Without this, huggingface_hub retries for about a minute before failing;
    with it, missing weights fail at once and cached ones still load.
    """
    if not pretrained or not _hub_unreachable():
        yield
        return
    import huggingface_hub.constants as hub_constants

    old = hub_constants.HF_HUB_OFFLINE
    hub_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        hub_constants.HF_HUB_OFFLINE = old


def _build(name: str, pretrained: bool, kwargs: dict[str, Any]) -> nn.Module:
    try:
        with _cache_only_when_offline(pretrained):
            return timm.create_model(name, pretrained=pretrained, **kwargs)
    except TypeError as exc:
        if "drop_path_rate" not in kwargs or "drop_path_rate" not in str(exc):
            raise
    warnings.warn(
        f"{name} does not support stochastic depth; "
        f"model.drop_path_rate={kwargs['drop_path_rate']} is ignored.",
        stacklevel=3,
    )
    rest = {k: v for k, v in kwargs.items() if k != "drop_path_rate"}
    return timm.create_model(name, pretrained=pretrained, **rest)


def _build_error(cfg: ModelConfig, exc: Exception, hub: bool) -> ConfigError | None:
    """Turn a failure of timm.create_model into a user-facing error, or None if it is a bug."""
    text = _one_line(exc)
    if cfg.global_pool is not None and "pool" in str(exc).lower():
        return ConfigError(
            f"model.global_pool={cfg.global_pool!r} is not supported by {cfg.name} ({text}). "
            "CNN heads accept avg, max, avgmax, catavgmax; transformers e.g. token, avg, map."
        )
    if cfg.global_pool is not None and isinstance(exc, TypeError) and "global_pool" in str(exc):
        return ConfigError(
            f"{cfg.name} has no pooling head, so model.global_pool cannot be set ({text})."
        )
    if cfg.kwargs and isinstance(exc, TypeError):
        return ConfigError(f"model.kwargs {cfg.kwargs} are not accepted by {cfg.name} ({text}).")
    if hub:
        return ConfigError(
            f"Could not get pretrained weights for {cfg.name} from the Hugging Face hub ({text}). "
            + _OFFLINE_HINT
        )
    return None


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


@dataclass
class LoadReport:
    """What :func:`load_weights` did with a weights file (tensor names are the model's)."""

    path: Path
    loaded: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)  # in the file, but shaped for another model
    missing: list[str] = field(default_factory=list)  # in the model, left at their initial values
    unexpected: list[str] = field(default_factory=list)  # in the file, unknown to the model
    adapted: list[str] = field(default_factory=list)  # first-conv weights converted to in_chans
    resampled: list[str] = field(default_factory=list)  # position tables resized to the grid


def load_weights(model: nn.Module, path: str | Path) -> LoadReport:
    """Load a local weights file into ``model`` (non-strict) and warn about what did not fit.

    Accepts a bare state dict or the usual containers (``state_dict``,
    ``model``, ``model_state_dict``; Lightning's ``model.`` and DDP's
    ``module.`` prefixes). The first conv is converted when the channel count
    differs (summed for 1 channel, repeated and rescaled for more); tensors of
    another shape — typically a classifier for another number of classes — are
    dropped and keep their fresh initialisation. Raises ConfigError when the
    file is missing or unreadable, or when under half of the model's tensors
    load (the file is for another architecture).
    """
    path = Path(path).expanduser()
    state = _unwrap(_read_state_dict(path), path)
    target = model.state_dict()
    state = _strip_prefix(state, set(target))
    report = LoadReport(path=path)
    report.adapted = _adapt_first_conv(model, state, target)
    report.resampled = _resample_to_model(model, state, target)
    fitting, dropped = {}, set()
    for key, tensor in state.items():
        if key not in target:
            report.unexpected.append(key)
        elif tensor.shape != target[key].shape:
            dropped.add(key)
            report.dropped.append(f"{key} {tuple(tensor.shape)} -> {tuple(target[key].shape)}")
        else:
            fitting[key] = tensor
    if len(fitting) < len(target) / 2:
        raise ConfigError(
            f"Weights in {path} do not fit {type(model).__name__}: only {len(fitting)} of its "
            f"{len(target)} tensors match by name and shape. File keys look like:\n"
            f"{format_list(sorted(state), 5)}\nmodel keys like:\n{format_list(sorted(target), 5)}"
        )
    result = model.load_state_dict(fitting, strict=False)
    report.loaded = sorted(fitting)
    report.missing = [k for k in result.missing_keys if k not in dropped]
    _warn_load_report(report)
    return report


def _read_state_dict(path: Path) -> Any:
    if not path.is_file():
        raise ConfigError(
            f"model.pretrained: weights file {str(path)!r} does not exist"
            + (" (it is a folder)" if path.is_dir() else "")
            + ". Give the path of a .safetensors or .pth file, or true for hub weights."
        )
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        # weights_only: a checkpoint is data; unpickling arbitrary objects would run code.
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConfigError(
            f"Cannot read weights from {path} ({_one_line(exc)}). Files are loaded safely "
            "(safetensors, or torch.load(weights_only=True)); if the checkpoint holds custom "
            "objects, re-save just the tensors: torch.save(model.state_dict(), 'weights.pth')."
        ) from exc


def _unwrap(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """Descend into checkpoint containers until a flat name → tensor mapping is found."""
    for _ in range(4):  # e.g. {'model': {'state_dict': {...}}}; bounded so cycles cannot loop
        if not isinstance(obj, dict):
            break
        tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if tensors and len(tensors) >= len(obj) / 2:
            return tensors
        inner = next((obj[k] for k in _CONTAINER_KEYS if isinstance(obj.get(k), dict)), None)
        if inner is None:
            break
        obj = inner
    keys = list(obj)[:8] if isinstance(obj, dict) else type(obj).__name__
    raise ConfigError(
        f"{path} holds no state dict (found {keys}); expected tensors by name, or a checkpoint "
        f"with one of {', '.join(_CONTAINER_KEYS)}."
    )


def _strip_prefix(state: dict[str, torch.Tensor], model_keys: set[str]) -> dict[str, torch.Tensor]:
    """Remove the wrapper prefix ('model.', 'module.', 'model.module.', ...) that most keys share.

    The prefix is whatever, cut at a dot, turns the most file keys into model keys.
    """
    votes: Counter[str] = Counter()
    for key in state:
        starts = [0] + [i + 1 for i, ch in enumerate(key) if ch == "."]
        for start in starts:
            if key[start:] in model_keys:
                votes[key[:start]] += 1
                break
    if not votes:
        return state
    prefix = votes.most_common(1)[0][0]
    if not prefix:
        return state
    return {(k[len(prefix) :] if k.startswith(prefix) else k): v for k, v in state.items()}


def _first_conv_keys(model: nn.Module, target: dict[str, torch.Tensor]) -> list[str]:
    names = (getattr(model, "pretrained_cfg", None) or {}).get("first_conv")
    if isinstance(names, str):
        names = [names]
    keys = [f"{n}.weight" for n in names or () if f"{n}.weight" in target]
    if keys:
        return keys
    return next(([k] for k, v in target.items() if k.endswith("weight") and v.ndim == 4), [])


def _adapt_first_conv(model: nn.Module, state: dict, target: dict) -> list[str]:
    adapted = []
    for key in _first_conv_keys(model, target):
        src, want = state.get(key), target[key]
        if (
            src is None
            or src.ndim != 4
            or src.shape[1] == want.shape[1]
            or src.shape[0] != want.shape[0]
        ):
            continue
        try:
            state[key] = adapt_input_conv(want.shape[1], src, base_chans=src.shape[1])
        except (NotImplementedError, ValueError, AssertionError):
            continue  # left mismatched: dropped and reported with the rest
        adapted.append(f"{key} {src.shape[1]} -> {want.shape[1]} channels")
    return adapted


def _resample_to_model(model: nn.Module, state: dict, target: dict) -> list[str]:
    """Resize position embeddings (and window tables) saved for another input size.

    A ViT saved at 224 px has 14 × 14 position embeddings; built for 64 px it
    has 4 × 4. The model family's own ``checkpoint_filter_fn`` — what timm
    applies to hub weights — resamples them; a ``pos_embed`` it leaves (or a
    family without one) is interpolated with timm's ``resample_abs_pos_embed``.
    Only tensors whose shape differed are replaced, so nothing else changes.
    """
    mismatched = [k for k, v in state.items() if k in target and v.shape != target[k].shape]
    if not mismatched:
        return []
    filtered: dict = {}
    filter_fn = getattr(sys.modules.get(type(model).__module__), "checkpoint_filter_fn", None)
    if filter_fn is not None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                filtered = filter_fn(dict(state), model)
        except Exception:  # a filter for the family's original checkpoints; fall back below
            filtered = {}
    done = []
    for key in mismatched:
        old, want = state[key], target[key]
        new = filtered.get(key)
        if (new is None or new.shape != want.shape) and key.endswith("pos_embed"):
            new = _resample_pos_embed(model, old, want)
        if new is not None and new.shape == want.shape:
            state[key] = new.to(old.dtype)
            done.append(f"{key} {tuple(old.shape)} -> {tuple(want.shape)}")
    return done


def _resample_pos_embed(model: nn.Module, old: torch.Tensor, want: torch.Tensor):
    grid = getattr(getattr(model, "patch_embed", None), "grid_size", None)
    if grid is None or old.ndim != 3 or want.ndim != 3:
        return None
    prefix = 0 if getattr(model, "no_embed_class", False) else _prefix_tokens(model)
    try:
        return resample_abs_pos_embed(old, new_size=list(grid), num_prefix_tokens=prefix)
    except Exception:
        return None


def _prefix_tokens(model: nn.Module) -> int:
    """Class/register tokens before the patch tokens (1 for ViT, 2 for DeiT-distilled)."""
    return int(getattr(model, "num_prefix_tokens", 1 if hasattr(model, "cls_token") else 0))


def _warn_load_report(report: LoadReport) -> None:
    notes = []
    if report.resampled:
        notes.append("resampled to this input size:\n" + format_list(report.resampled))
    if report.adapted:
        notes.append("converted first conv:\n" + format_list(report.adapted))
    if report.dropped:
        notes.append(
            "dropped (shape differs, e.g. a head for another class count):\n"
            + format_list(report.dropped)
        )
    if report.missing:
        notes.append("not in the file, left freshly initialised:\n" + format_list(report.missing))
    if report.unexpected:
        notes.append(
            "in the file but not in the model, ignored:\n" + format_list(report.unexpected)
        )
    if notes:
        warnings.warn(
            f"Loaded {len(report.loaded)} tensors from {report.path}; " + "\n".join(notes),
            stacklevel=3,
        )
