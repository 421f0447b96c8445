"""Transfer-learning controls: freeze parameters, and choose what BatchNorm learns.

Freezing only stops gradients (``requires_grad=False``). BatchNorm running
statistics are a separate switch (:func:`apply_batchnorm_policy`) because they
change in ``train()`` mode without any gradient: a frozen stage still drifts
unless ``batchnorm: freeze_stats`` or ``freeze`` is set as well.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence

from timm.models import group_parameters
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..errors import ConfigError, format_list

BATCHNORM_POLICIES = ("train", "freeze_stats", "freeze")


def freeze(model: nn.Module, spec: int | Sequence[str]) -> list[str]:
    """Set ``requires_grad=False`` on part of ``model``; return the frozen parameter names.

    ``spec`` is either

    * an int N: the first N parameter groups of the model's coarse
      ``group_matcher`` — for timm models and the built-ins that is the stem,
      then stage 0, stage 1, ... The classifier head is never counted, so N may
      be at most the number of non-head groups (N = all of them trains only the head);
    * a list of ``fnmatch`` patterns on parameter names (``'layer1.*'``,
      ``'*.bn*'``). A pattern also matches everything under a module name, so
      ``'stem'`` freezes ``stem.conv.weight``. Each pattern must match something.

    Idempotent: calling it again with the same spec changes nothing.
    """
    if isinstance(spec, bool) or not isinstance(spec, (int, list, tuple)):
        raise ConfigError(
            "model.freeze must be a number of parameter groups or a list of name patterns, "
            f"not {spec!r}."
        )
    names = (
        _names_by_count(model, spec) if isinstance(spec, int) else _names_by_patterns(model, spec)
    )
    frozen = set(names)
    for name, param in model.named_parameters():
        if name in frozen:
            param.requires_grad_(False)
    return names


def freezable_groups(model: nn.Module) -> list[list[str]]:
    """Parameter names per group, in the order :func:`freeze` counts them (head excluded)."""
    matcher = _group_matcher(model)
    head = _head_param_names(model, matcher)
    groups = group_parameters(model, matcher)
    ordered = [[n for n in groups[k] if n not in head] for k in sorted(groups)]
    return [g for g in ordered if g]


def _group_matcher(model: nn.Module):
    fn = getattr(model, "group_matcher", None)
    if fn is not None:
        try:
            return fn(coarse=True)
        except NotImplementedError:
            pass
    raise ConfigError(
        f"{type(model).__name__} does not describe its stages (no group_matcher), so it cannot be "
        "frozen by count; give name patterns instead, e.g. model.freeze: ['conv1*', 'layer1.*']."
    )


def _head_param_names(model: nn.Module, matcher) -> set[str]:
    """The classifier's parameters plus, for regex matchers, everything no regex matches
    (timm sorts those last: the head, its norm and pre-logits)."""
    head: set[str] = set()
    get_classifier = getattr(model, "get_classifier", None)
    classifier = get_classifier() if get_classifier is not None else None
    if isinstance(classifier, nn.Module):
        owned = {id(p) for p in classifier.parameters()}
        head |= {n for n, p in model.named_parameters() if id(p) in owned}
    if isinstance(matcher, dict):
        regexes = []
        for spec in matcher.values():
            if isinstance(spec, (list, tuple)):
                regexes += [re.compile(sub[0]) for sub in spec]
            elif spec is not None:
                regexes.append(re.compile(spec))
        head |= {n for n, _ in model.named_parameters() if not any(r.match(n) for r in regexes)}
    return head


def _names_by_count(model: nn.Module, count: int) -> list[str]:
    if count < 0:
        raise ConfigError(f"model.freeze must be >= 0 parameter groups, not {count}.")
    if count == 0:
        return []
    groups = freezable_groups(model)
    if count > len(groups):
        summary = [f"{i + 1}: {g[0]} ... ({len(g)} tensors)" for i, g in enumerate(groups)]
        raise ConfigError(
            f"model.freeze={count}, but {type(model).__name__} has only {len(groups)} parameter "
            f"groups before the head (freeze: {len(groups)} trains only the head):\n"
            + format_list(summary, 20)
        )
    return [name for group in groups[:count] for name in group]


def _names_by_patterns(model: nn.Module, patterns: Sequence[str]) -> list[str]:
    all_names = [n for n, _ in model.named_parameters()]
    selected: set[str] = set()
    for pattern in patterns:
        if not isinstance(pattern, str) or not pattern:
            raise ConfigError(f"model.freeze patterns must be non-empty strings, not {pattern!r}.")
        hits = {
            n
            for n in all_names
            if fnmatch.fnmatchcase(n, pattern) or fnmatch.fnmatchcase(n, pattern + ".*")
        }
        if not hits:
            raise ConfigError(
                f"model.freeze pattern {pattern!r} matches no parameter of {type(model).__name__}. "
                f"Parameter names look like:\n{format_list(_sample_names(all_names), 12)}"
            )
        selected |= hits
    return [n for n in all_names if n in selected]


def _sample_names(names: list[str], limit: int = 12) -> list[str]:
    # Spread the sample over the model so stem, middle and head names all show.
    if len(names) <= limit:
        return names
    step = (len(names) - 1) / (limit - 1)
    return [names[round(i * step)] for i in range(limit)]


def apply_batchnorm_policy(model: nn.Module, policy: str) -> list[str]:
    """Apply a BatchNorm policy; return the names of the BatchNorm layers it acted on.

    * ``train``: BatchNorm learns as usual (no-op).
    * ``freeze_stats``: every BatchNorm layer is put in eval mode — it normalises
      with, and no longer updates, its running mean/var — while its affine
      weight and bias still train. The usual choice for fine-tuning with small batches.
    * ``freeze``: as ``freeze_stats``, and weight/bias get ``requires_grad=False``.

    ``model.train()`` switches BatchNorm back to batch statistics, so call this
    after every ``train()`` (the LightningModule does, from its ``train`` override).
    Only ``_BatchNorm`` subclasses are touched (timm's BatchNormAct2d included);
    LayerNorm/GroupNorm have no running statistics.
    """
    if policy not in BATCHNORM_POLICIES:
        raise ConfigError(
            f"Unknown batchnorm policy {policy!r}; choose one of {', '.join(BATCHNORM_POLICIES)}."
        )
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, _BatchNorm)]
    if policy == "train":
        return []
    for _, module in layers:
        # Only the BatchNorm itself: .eval() would recurse into children (the
        # activation/dropout that timm's BatchNormAct2d carries).
        module.training = False
        if policy == "freeze":
            for param in module.parameters(recurse=False):
                param.requires_grad_(False)
    return [n for n, _ in layers]
