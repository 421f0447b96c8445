"""An ensemble as one ``torch.nn.Module``: uint8 images in, the ensemble's probabilities out.

This is what ``ensemblecv export`` traces to ONNX and what ``ensemblecv serve
WORKSPACE`` runs in PyTorch, so both give the numbers ``ensemblecv predict``
gives: every member run averages the softmax of its fold models (or its
``refit_full`` model alone, as :func:`ensemblecv.inference.checkpoints`
chooses), ``NAME+tta`` members average in the mirrored view, each model
normalises the uint8 pixels with its own checkpoint's mean/std, and the
ensemble's rule is applied to the member probabilities with the weights of its
spec (or, for rules fitted on the out-of-fold store, the same deterministic
refit that ``predict`` does).

Resizing is not in the graph: the caller gives images already decoded and
resized to the members' common input size (see :mod:`.preprocess`), because
the project's letterbox pad colour and area interpolation have no exact ONNX
equivalent, and an approximation would break parity with ``predict``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..ensemble.metrics import EPS
from ..errors import EnsembleCVError
from .preprocess import InputSpec

#: Rules that are a weighted average of the member probabilities.
LINEAR_METHODS = ("single", "ensemble_selection", "soft_voting", "weighted_average")
#: Every rule the graph can express; anything else is refused by name.
EXPORTABLE_METHODS = (*LINEAR_METHODS, "geometric_mean", "hard_voting", "stacking")


@dataclass
class MemberInfo:
    """One member run of the ensemble, as model.json lists it."""

    name: str
    weight: float | None
    model: str
    checkpoints: list[str]
    tta: bool
    scores: dict = field(default_factory=dict)


class _Normalised(nn.Module):
    """A trained network with its checkpoint's normalisation, softmax at the end."""

    def __init__(self, model: nn.Module, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", mean.detach().clone().float())
        self.register_buffer("std", std.detach().clone().float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: uint8 (N, C, H, W)
        return torch.softmax(self.model((x.float() - self.mean) / self.std).float(), dim=1)


class MemberNet(nn.Module):
    """One member run: the mean of its models' probabilities (and mirrored views with TTA)."""

    def __init__(self, models: Sequence[_Normalised], tta: bool) -> None:
        super().__init__()
        self.models = nn.ModuleList(models)
        self.tta = tta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        views = [x, torch.flip(x, dims=[3])] if self.tta else [x]
        total = None
        for model in self.models:
            for view in views:
                p = model(view)
                total = p if total is None else total + p
        return total / float(len(self.models) * len(views))


class LinearRule(nn.Module):
    def __init__(self, weights: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("weights", torch.tensor(list(weights), dtype=torch.float64))

    def forward(self, p: torch.Tensor) -> torch.Tensor:  # p: (N, M, C)
        return (p * self.weights.view(1, -1, 1)).sum(1)


class GeometricMeanRule(nn.Module):
    """As :class:`ensemblecv.ensemble.GeometricMean`: normalised exp of the mean log-probability."""

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        return torch.softmax(torch.log(p.clamp(EPS, 1.0)).mean(1), dim=1)


class HardVotingRule(nn.Module):
    """As :class:`ensemblecv.ensemble.HardVoting`: vote shares plus a tie-breaking mean term."""

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        m = p.shape[1]
        votes = F.one_hot(p.argmax(2), p.shape[2]).to(p.dtype).sum(1)
        out = votes / m + 1e-6 * p.sum(1) / m
        return out / out.sum(1, keepdim=True)


class StackingRule(nn.Module):
    """As :class:`ensemblecv.ensemble.Stacking`: a standardised logistic model over log-probabilities.

    Baked from the fitted scikit-learn pipeline: scaler ``mean_``/``scale_``,
    ``coef_``/``intercept_`` and ``classes_`` (classes the meta-learner never saw
    get probability 0, as in ``Stacking.predict_proba``).
    """

    def __init__(self, fitted, n_classes: int) -> None:
        super().__init__()
        scaler, meta = fitted.meta_[0], fitted.meta_[-1]
        if getattr(meta, "multi_class", "auto") == "ovr":
            raise EnsembleCVError(
                "Stacking with a one-vs-rest meta-learner cannot be exported; refit it multinomial."
            )
        classes = np.asarray(meta.classes_, dtype=np.int64)
        scatter = np.zeros((len(classes), n_classes), dtype=np.float64)
        scatter[np.arange(len(classes)), classes] = 1.0
        self.binary = len(classes) <= 2
        self.register_buffer("mean", torch.tensor(scaler.mean_, dtype=torch.float64))
        self.register_buffer("scale", torch.tensor(scaler.scale_, dtype=torch.float64))
        self.register_buffer("coef", torch.tensor(meta.coef_.T, dtype=torch.float64))
        self.register_buffer("intercept", torch.tensor(meta.intercept_, dtype=torch.float64))
        self.register_buffer("scatter", torch.from_numpy(scatter))

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        x = torch.log(p.clamp(EPS, 1.0)).flatten(1)  # members side by side, as hstack
        z = ((x - self.mean) / self.scale) @ self.coef + self.intercept
        if self.binary:  # scikit-learn's binary case: a sigmoid of one decision value
            s = torch.sigmoid(z[:, :1])
            probs = torch.cat([1.0 - s, s], dim=1)
        else:
            probs = torch.softmax(z, dim=1)
        return probs @ self.scatter


class EnsembleGraph(nn.Module):
    """``images uint8 (N, H, W, C) -> (probabilities float64 (N, K), member_probabilities float32 (N, M, K))``."""

    def __init__(self, members: Sequence[MemberNet], rule: nn.Module) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.rule = rule

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = images.permute(0, 3, 1, 2)
        member_probs = torch.stack([m(x) for m in self.members], dim=1)
        # The rule runs in float64, as the numpy estimators do: hard voting's 1e-6
        # tie-break (and near-equal stacking logits) would round away in float32 and
        # change the predicted class of tied rows.
        return self.rule(member_probs.double()), member_probs


@dataclass
class BuiltEnsemble:
    """An :class:`EnsembleGraph` with what was read to build it."""

    graph: EnsembleGraph
    spec: dict
    classes: list[str]
    input: InputSpec
    members: list[MemberInfo]
    #: First model of each member, for Grad-CAM (ClassifierModule, eval mode).
    explain_modules: dict[str, nn.Module]


def _member_input(workspace: Path, run: str) -> tuple[InputSpec, dict]:
    from ..inference import run_config

    cfg = run_config(workspace / "runs" / run)
    data = cfg.data
    spec = InputSpec(
        int(data.image_size),
        int(data.channels),
        str(data.resize),
        data.interpolation,
        data.crop_pct,
    )
    return spec, cfg.model_dump(mode="json")


def common_input(workspace: Path, runs: Sequence[str]) -> InputSpec:
    """The one input every member shares, or a refusal that lists how they differ."""
    specs = {run: _member_input(workspace, run.removesuffix("+tta"))[0] for run in runs}
    distinct = set(specs.values())
    if len(distinct) > 1:
        listing = ", ".join(
            f"{r}: {s.size} px, {s.channels} channel(s), resize {s.resize}"
            for r, s in specs.items()
        )
        raise EnsembleCVError(
            "The members do not share one input (image size, channels, resize mode), so one "
            f"uint8 input cannot feed them all exactly: {listing}. Export an ensemble of members "
            "with the same data settings (--ensemble NAME or a run name)."
        )
    return next(iter(distinct))


def _rule(spec: dict, workspace: Path, runs: list[str], n_classes: int) -> nn.Module:
    from ..inference import fit_spec_method

    method = spec["method"]
    if method not in EXPORTABLE_METHODS:
        raise EnsembleCVError(
            f"Ensemble method {method!r} cannot be expressed as an ONNX graph; exportable "
            f"methods: {', '.join(EXPORTABLE_METHODS)}."
        )
    if method == "single":
        return LinearRule([1.0])
    if method in LINEAR_METHODS:
        if spec.get("weights"):
            return LinearRule([float(spec["weights"][r]) for r in runs])
        return LinearRule(fit_spec_method(spec, workspace, runs).weights_)
    if method == "geometric_mean":
        return GeometricMeanRule()
    if method == "hard_voting":
        return HardVotingRule()
    return StackingRule(fit_spec_method(spec, workspace, runs), n_classes)


def _member_scores(workspace: Path, run: str) -> dict:
    path = workspace / "ensembles" / f"{run}.yaml"
    if not path.is_file():
        return {}
    import yaml

    return (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("scores", {})


def build_ensemble(workspace: str | Path, ensemble: str = "best") -> BuiltEnsemble:
    """Load every member's checkpoints and the ensemble's rule into one module (eval, CPU).

    ``ensemble``: ``best``, an ensemble name (``ensembles/NAME.yaml``) or a run name.
    """
    from ..data.samples import load_classes
    from ..inference import checkpoints, load_module, resolve_spec

    workspace = Path(workspace)
    classes = load_classes(workspace / "classes.json")
    spec = resolve_spec(workspace, ensemble)
    runs = [str(r) for r in spec["members"]]
    input_spec = common_input(workspace, runs)
    rule = _rule(spec, workspace, runs, len(classes))
    cpu = torch.device("cpu")
    members, infos, explain = [], [], {}
    for run in runs:
        base, tta = run.removesuffix("+tta"), run.endswith("+tta")
        ckpts = checkpoints(workspace / "runs" / base)
        models = []
        for ckpt in ckpts:
            module = load_module(ckpt, cpu)
            explain.setdefault(run, module)
            models.append(_Normalised(module.model, module.pixel_mean, module.pixel_std))
        members.append(MemberNet(models, tta))
        weight = spec["weights"].get(run) if spec.get("weights") else None
        _, cfg = _member_input(workspace, base)
        infos.append(
            MemberInfo(
                run,
                None if weight is None else float(weight),
                str(cfg["model"]["name"]),
                [str(c.relative_to(workspace)) for c in ckpts],
                tta,
                _member_scores(workspace, run),
            )
        )
    graph = EnsembleGraph(members, rule).eval()
    graph.requires_grad_(False)
    return BuiltEnsemble(graph, spec, classes, input_spec, infos, explain)
