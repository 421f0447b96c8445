"""Is a model name one timm (or our built-ins) can build? Checked before anything is built,
so a typo says "did you mean" rather than failing deep in timm or on a download."""

from __future__ import annotations

import difflib

import timm
from timm.models import get_pretrained_cfg, parse_model_name, split_model_name_tag

from ..errors import ConfigError, format_list
from .small_cnns import BUILTIN_MODELS


def check_model_name(name: str, hub: bool) -> None:
    """An unknown name, weights tag or (``hub``) a model without downloadable weights fails
    with a suggestion, before anything is built or downloaded."""
    try:
        source, model_id = parse_model_name(name)
    except ValueError as exc:
        raise ConfigError(
            f"model.name {name!r}: {exc} To start from a weights file, keep a model name in "
            "model.name and set model.pretrained: /path/to/weights.safetensors (or .pth)."
        ) from None
    if source:  # hf-hub:/local-dir: names are resolved (and reported) by timm itself
        return
    arch, tag = split_model_name_tag(model_id)
    if not timm.is_model(arch):
        raise ConfigError(_unknown_model_message(arch))
    try:
        pretrained_cfg = get_pretrained_cfg(model_id, allow_unregistered=False)
    except RuntimeError:
        pretrained_cfg = None
    if tag and pretrained_cfg is None:
        tags = timm.list_pretrained(f"{arch}.*")
        raise ConfigError(
            f"Unknown weights tag {tag!r} for {arch}. Known tags:\n{format_list(tags, 15)}"
            if tags
            else f"{arch} has no tagged weights; drop the '.{tag}' suffix from model.name."
        )
    if hub and not (pretrained_cfg is not None and pretrained_cfg.has_weights):
        with_weights = timm.list_pretrained(f"{arch}.*")
        raise ConfigError(
            f"{name} has no pretrained weights to download"
            + (f" (weights exist for: {', '.join(with_weights[:5])})" if with_weights else "")
            + ". Use pretrained: false to train from scratch, or "
            "pretrained: /path/to/weights.safetensors (or .pth) for your own weights."
        )


def _unknown_model_message(name: str) -> str:
    names = timm.list_models()
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.6)
    msg = f"Unknown model {name!r}."
    if close:
        msg += f" Did you mean {', '.join(close)}?"
    return msg + (
        f" Built-in small CNNs: {', '.join(BUILTIN_MODELS)}; any of timm's {len(names)} models "
        "also works (list them with ensemblecv.models.list_models('*pattern*'))."
    )
