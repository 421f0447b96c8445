"""Experiment config: YAML validated by pydantic, overridable as ``key.sub=value``.

Unknown keys are errors (a typo such as ``train.lrr`` must not silently train
with the default), and every error names the full key and what is allowed.
The resolved config — file + overrides + defaults — is what runs save, so a
run can be reproduced from its own folder.
"""

from __future__ import annotations

import difflib
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class NormalizeValues(_Strict):
    mean: list[float] = Field(min_length=1, max_length=3)
    std: list[float] = Field(min_length=1, max_length=3)

    @model_validator(mode="after")
    def _same_length(self) -> NormalizeValues:
        if len(self.mean) != len(self.std) or any(s <= 0 for s in self.std):
            raise ValueError("mean and std need the same length and std must be > 0")
        return self


class DataConfig(_Strict):
    train: str = Field(description="folder, CSV index or built-in name (fashion-mnist, digits)")
    test: str | None = None
    # Label layout: detection (ensemblecv.tasks.detect.read: yolo coco voc labelme images) or
    # segmentation (ensemblecv.tasks.segment.read: voc folders csv coco images).
    format: Literal["yolo", "coco", "voc", "labelme", "folders", "csv", "images"] | None = Field(
        None,
        description="label layout of train/test (detect: yolo|coco|voc|labelme; segment: "
        "voc|folders|csv|coco); images = unlabelled; null = detected from the files",
    )
    # Segmentation (task: segment).
    classes: list[str] | str | None = Field(
        None,
        description="segment: class names in mask-value order, or a classes file (name [R G B] "
        "per line); null = classes.txt at the data root, else VOC's / COCO's / class_0..K",
    )
    ignore_index: int = Field(
        255, ge=0, le=255, description="segment: mask value never scored (VOC's void border 255)"
    )
    image_size: int | None = Field(
        None,
        ge=8,
        le=4096,
        description="px (square); unset = the model's own: 28 for built-ins, timm's pretrained_cfg",
    )
    channels: Literal[1, 3] = 3
    folds: int = Field(5, ge=2, le=100)
    fold_seed: int = 0
    resize: Literal["stretch", "letterbox", "center_crop"] = "letterbox"
    interpolation: Literal["auto", "nearest", "bilinear", "bicubic", "lanczos"] = Field(
        "auto",
        description="filter when enlarging (auto = bilinear); shrinking always averages areas",
    )
    crop_pct: float | None = Field(
        None, gt=0, le=1, description="center_crop keeps this share of the shorter side (timm's)"
    )
    normalize: Literal["imagenet", "dataset", "none"] | NormalizeValues = "dataset"
    limit: int | None = Field(
        None,
        ge=1,
        description="use at most N training images, classes balanced (quick experiments)",
    )
    test_limit: int | None = Field(
        None, ge=1, description="use at most N test images, classes balanced"
    )
    groups: str | None = Field(
        None, description="duplicates.csv from `ensemblecv dedup`: its groups never straddle folds"
    )
    exclude: str | None = Field(
        None,
        description="CSV with a sample_id column (e.g. from label-issues): left out of training",
    )
    strict: bool = Field(False, description="abort on unreadable files instead of excluding them")
    num_workers: int | None = Field(None, ge=0, description="DataLoader workers; None = auto")
    cache_ram_mb: int = Field(
        4096, ge=0, description="keep decoded, resized images in RAM when they fit (0 = never)"
    )
    layout: Literal["imagefolder", "domains"] = Field(
        "imagefolder",
        description="folder layout: ROOT/CLASS/image (imagefolder) or ROOT/DOMAIN/CLASS/image",
    )
    protocol: Literal["kfold", "leave_one_domain_out"] = Field(
        "kfold",
        description="kfold | leave_one_domain_out (each domain in turn is the unseen test set)",
    )
    held_out: str | None = Field(
        None,
        description="the unseen test domain of one leave-one-domain-out sub-experiment",
    )


class MixStyleConfig(_Strict):
    """MixStyle (Zhou et al., 2021): mix instance feature statistics after some stages."""

    p: float = Field(0.5, ge=0, le=1, description="probability per batch")
    alpha: float = Field(0.1, gt=0, description="Beta(alpha, alpha) mixing weights")
    mix: Literal["random", "crossdomain"] = "random"
    stages: list[int] | None = Field(
        None,
        min_length=1,
        description="1-based stages to mix after (None = every stage but the last, at most 3)",
    )


class ModelConfig(_Strict):
    name: str = "mnist_cnn"
    pretrained: bool | str = Field(False, description="true (hub) | false | path to weights")
    drop_rate: float = Field(0.0, ge=0, lt=1, description="dropout before the classifier")
    drop_path_rate: float = Field(0.0, ge=0, lt=1, description="stochastic depth (timm models)")
    global_pool: str | None = Field(None, description="timm head pooling, e.g. avg, max, avgmax")
    kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="more timm.create_model arguments, e.g. {depth: 6} or {window_size: 8}",
    )
    freeze: int | list[str] = Field(
        0,
        description="freeze the first N parameter groups (stem, stages), or names matching patterns",
    )
    batchnorm: Literal["train", "freeze_stats", "freeze"] = Field(
        "train",
        description="train | freeze_stats (running stats fixed) | freeze (stats and affine)",
    )
    # Detection (task: detect): a head name (ssd, retinanet, fcos, fasterrcnn) takes any timm
    # backbone; torchvision builder names (fcos_resnet50_fpn, ...) bring their own.
    backbone: str | None = Field(
        None, description="timm backbone under a detection head (task: detect)"
    )
    backbone_pretrained: bool | str = Field(
        False, description="backbone weights under a detection head: true (hub) | false | path"
    )

    @field_validator("kwargs")
    @classmethod
    def _no_reserved_kwargs(cls, v: dict[str, Any]) -> dict[str, Any]:
        # These come from other keys; two sources for one argument would be ambiguous.
        reserved = {
            "num_classes": "the dataset",
            "in_chans": "data.channels",
            "img_size": "data.image_size",
            "pretrained": "model.pretrained",
            "drop_rate": "model.drop_rate",
            "drop_path_rate": "model.drop_path_rate",
            "global_pool": "model.global_pool",
        }
        clash = [f"{k} (set by {reserved[k]})" for k in v if k in reserved]
        if clash:
            raise ValueError(f"these are set elsewhere: {', '.join(clash)}")
        return v

    mixstyle: MixStyleConfig | None = Field(
        None, description="{p, alpha, mix: random|crossdomain, stages: [1, 2, 3]}"
    )


class EarlyStoppingConfig(_Strict):
    monitor: str = Field(
        "val_loss",
        description="a validation metric of the task: val_loss | val_acc (classify), "
        "val_map | val_map50 (detect), val_miou (segment); default: the task's own",
    )
    patience: int = Field(5, ge=1)
    mode: Literal["min", "max"] | None = Field(
        None, description="default: min for loss, max for acc and mAP"
    )
    min_delta: float = Field(0.0, ge=0)


class WeightAveragingConfig(_Strict):
    """Average the weights over training (SWA / SWAD-style, or EMA), then recompute BatchNorm."""

    method: Literal["swa", "ema"] = "swa"
    start: float = Field(
        0.5, ge=0, lt=1, description="fraction of the epochs after which averaging starts"
    )
    decay: float = Field(0.999, gt=0, lt=1, description="EMA decay per optimizer step")
    bn_batches: int | None = Field(
        None, ge=1, description="training batches to recompute BatchNorm statistics (None = all)"
    )


class EmaConfig(_Strict):
    """Weight EMA during training (timm ``ModelEmaV3``): validation, ``best.ckpt`` and every
    prediction use the EMA weights; the raw weights only keep training."""

    decay: float = Field(0.998, gt=0, lt=1, description="EMA decay per optimizer step")
    warmup: bool = Field(
        True, description="ramp the decay up from 0 (timm's warm-up): early steps count"
    )


class TrainConfig(_Strict):
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(128, ge=1)
    optimizer: Literal["adam", "adamw", "sgd"] = "adamw"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(
        0.0, ge=0, description="decoupled (adamw) or L2-in-gradient (adam, sgd)"
    )
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = False
    scheduler: Literal["none", "step", "multistep", "cosine", "onecycle", "plateau", "poly"] = (
        "cosine"
    )
    poly_power: float = Field(0.9, gt=0, description="poly schedule: lr * (1 - t/T) ** power")
    warmup_epochs: int = Field(0, ge=0, description="linear warm-up before cosine")
    step_size: int = Field(10, ge=1, description="StepLR period in epochs")
    gamma: float = Field(0.1, gt=0, le=1, description="StepLR / multistep / plateau decay factor")
    milestones: list[int] = Field(default_factory=list, description="multistep epochs")
    min_lr: float = Field(0.0, ge=0)
    plateau_patience: int = Field(2, ge=0)
    loss: Literal["cross_entropy", "focal", "focal+cross_entropy"] = "cross_entropy"
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    focal_gamma: float = Field(2.0, ge=0)
    focal_alpha: float | None = Field(None, gt=0, le=1)
    focal_weight: float = Field(
        0.5, ge=0, le=1, description="share of focal in focal+cross_entropy"
    )
    l1: float = Field(0.0, ge=0, description="L1 penalty on weights, added to the loss")
    l2: float = Field(0.0, ge=0, description="L2 penalty on weights, added to the loss")
    accumulate_grad_batches: int = Field(1, ge=1)
    gradient_clip_val: float | None = Field(None, gt=0)
    early_stopping: EarlyStoppingConfig | None = None
    refit_full: bool = Field(
        False,
        description="also train one model on all training data; it alone predicts test and new "
        "images, as CV scores one model per row (default: the task's, on for classify)",
    )
    bootstrap: bool = Field(
        False, description="train on a bootstrap resample of each fold's training rows"
    )
    repeats: int = Field(
        1,
        ge=1,
        le=100,
        description="train N members (runs NAME_r0..), differing in seed and bootstrap sample",
    )
    algorithm: Literal["erm", "coral"] = Field(
        "erm", description="erm | coral (align feature covariances across training domains)"
    )
    coral_weight: float = Field(1.0, ge=0, description="weight of the CORAL penalty")
    domain_batches: bool | None = Field(
        None,
        description="batches with equal shares of each domain (None = on for coral and "
        "crossdomain MixStyle)",
    )
    weight_averaging: WeightAveragingConfig | None = Field(
        None, description="{method: swa|ema, start: 0.5, decay: 0.999}"
    )
    ema: EmaConfig | None = Field(
        None, description="{decay: 0.998}: train with weight EMA, predict with the EMA weights"
    )
    channels_last: bool = Field(
        False, description="channels_last memory format (faster convolutions on CPU and GPU)"
    )
    tta: list[Literal["hflip"]] = Field(
        default_factory=list,
        description="also store OOF/test predictions with test-time augmentation",
    )
    seed: int = 0

    @model_validator(mode="after")
    def _one_average(self) -> TrainConfig:
        if self.ema is not None and self.weight_averaging is not None:
            raise ValueError(
                "train.ema and train.weight_averaging both average the weights; set one of them"
            )
        return self


class MixConfig(_Strict):
    p: float = Field(0.0, ge=0, le=1, description="probability per batch")
    alpha: float = Field(1.0, gt=0)


class BatchAugmentConfig(_Strict):
    """Augmentation of whole batches as tensors, on the training device (no per-image Python).

    Every sample draws its own crop offset, flip and erasing box from a generator
    seeded by (seed, epoch, batch), so it is reproducible and resume-safe.
    """

    crop_padding: int = Field(
        0, ge=0, le=32, description="random crop after zero-padding this many px per side"
    )
    hflip: float = Field(0.0, ge=0, le=1, description="probability of a horizontal flip")
    erasing: float = Field(
        0.0, ge=0, le=1, description="probability of random erasing (one box per image)"
    )
    erasing_area: tuple[float, float] = Field(
        (0.02, 0.25), description="erased share of the image, drawn uniformly in this range"
    )

    @field_validator("erasing_area")
    @classmethod
    def _area(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 0 < v[0] <= v[1] < 1:
            raise ValueError("needs 0 < low <= high < 1")
        return v


class AugmentConfig(_Strict):
    preset: str = Field(
        "light", description="none | light | sketch | strong (ignored when ops is set)"
    )
    ops: list[dict[str, Any]] | None = Field(
        None, description="explicit op list: [{name: rotate, limit: 15, p: 0.5}, ...]"
    )
    cutmix: MixConfig = MixConfig()
    mixup: MixConfig = MixConfig(alpha=0.2)
    batch: BatchAugmentConfig | None = Field(
        None, description="{crop_padding: 2, hflip: 0.5, erasing: 0.5}: on whole batches"
    )


class DetectConfig(_Strict):
    """Detection options (``task: detect``): what is stored, and box-aware augmentation."""

    score_threshold: float = Field(
        0.001,
        ge=0,
        le=1,
        description="keep detections scoring at least this (low: mAP needs the tail)",
    )
    max_detections: int = Field(100, ge=1, le=10000, description="detections kept per image")
    nms_iou: float = Field(0.5, gt=0, le=1, description="IoU of the detector's own NMS")
    min_visibility: float = Field(
        0.3, ge=0, le=1, description="augmentation drops boxes keeping less of their area"
    )
    min_box_size: float = Field(
        1.0, ge=0, description="augmentation drops boxes narrower/shorter than this (pixels)"
    )


class SegmentConfig(_Strict):
    """Segmentation options (``task: segment``): loss, auxiliary head, OOF map storage, TTA."""

    loss: str | dict[str, float] = Field(
        "cross_entropy",
        description="cross_entropy | dice | focal | lovasz | jaccard, or a weighted sum "
        "{dice: 0.5, cross_entropy: 0.5}",
    )
    aux_weight: float = Field(
        0.5, ge=0, description="weight of the auxiliary head's loss (DeepLabV3 / FCN)"
    )
    recipe: Literal["torchvision"] | None = Field(
        None,
        description="torchvision: the reference recipe (random scale 0.5-2.0, flip, crop, "
        "SGD + poly LR per iteration, aux loss 0.5) for the keys the config leaves unset",
    )
    store_bytes: int = Field(
        49152,
        ge=256,
        description="bytes per image for one run's OOF probability map (sets its side)",
    )
    store_size: int | None = Field(
        None, ge=4, le=1024, description="side of the stored maps in px (overrides store_bytes)"
    )
    store_dtype: Literal["uint8", "float16"] = "uint8"
    tta: list[Literal["hflip", "scales"]] = Field(
        default_factory=list,
        description="also store OOF/test maps with flip and/or multi-scale TTA (a member of its own)",
    )
    tta_scales: list[float] = Field(
        default_factory=lambda: [0.75, 1.0, 1.25], min_length=1, description="scales of 'scales'"
    )


class TrackingConfig(_Strict):
    backend: Literal["mlflow", "wandb", "none"] = "mlflow"
    uri: str | None = Field(None, description="default sqlite:///WORKSPACE/mlflow.db")
    experiment: str | None = None


class TrainerConfig(BaseModel):
    """Passed to ``lightning.Trainer``; extra keys are allowed and checked by Lightning."""

    model_config = ConfigDict(extra="allow")
    accelerator: str = "auto"
    devices: int | str | list[int] = "auto"
    precision: Literal["32", "16-mixed", "bf16-mixed", "32-true"] = "32"

    @field_validator("precision", mode="before")
    @classmethod
    def _precision_str(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int) else v


class ExperimentConfig(_Strict):
    recipe: str | None = Field(
        None, description="a named preset applied under these keys (see `ensemblecv recipes`)"
    )
    workspace: str = "runs/default"
    name: str | None = Field(
        None, description="run name in the workspace (default: the model name)"
    )
    task: str = Field("classify", description="classify | detect | segment (see ensemblecv.tasks)")
    data: DataConfig
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    augment: AugmentConfig = AugmentConfig()
    tracking: TrackingConfig = TrackingConfig()
    trainer: TrainerConfig = TrainerConfig()
    detect: DetectConfig = DetectConfig()
    segment: SegmentConfig = SegmentConfig()

    @model_validator(mode="before")
    @classmethod
    def _task_monitor(cls, raw: Any) -> Any:
        """Early stopping follows the task's own metric unless another is named.

        The recipe's defaults are filled in first (idempotent: a resolved config
        already holds every key, so they change nothing there)."""
        if isinstance(raw, dict):
            from .recipes import apply_recipe

            raw = apply_recipe(raw)
        if not isinstance(raw, dict) or not isinstance(raw.get("train"), dict):
            return raw
        es = raw["train"].get("early_stopping")
        if isinstance(es, dict) and "monitor" not in es and isinstance(raw.get("task"), str):
            from .tasks import list_tasks, task_info

            if raw["task"] in list_tasks():
                raw = {**raw, "train": {**raw["train"], "early_stopping": {**es}}}
                raw["train"]["early_stopping"]["monitor"] = task_info(raw["task"]).monitor
        return raw

    @model_validator(mode="before")
    @classmethod
    def _task_refit(cls, raw: Any) -> Any:
        """Test predictions follow the protocol CV ranks by, unless the config says otherwise.

        CV scores one model per out-of-fold row; the mean of K fold models on the test set is
        a bag, which CV never saw (docs/cv-protocol.md). So ``train.refit_full`` defaults to
        the task's protocol (classify: refit) and the resolved config states it.
        """
        if not isinstance(raw, dict) or not isinstance(raw.get("train", {}), dict):
            return raw
        train, task = raw.get("train", {}), raw.get("task", "classify")
        if "refit_full" in train or not isinstance(task, str):
            return raw
        from .tasks import list_tasks, task_info

        if task not in list_tasks():
            return raw  # _known_task says what exists
        return {**raw, "train": {**train, "refit_full": task_info(task).refit_full}}

    @field_validator("task")
    @classmethod
    def _known_task(cls, v: str) -> str:
        from .tasks import task_info

        task_info(v)  # an unknown task fails with the known ones and close matches
        return v

    @model_validator(mode="after")
    def _monitor_of_task(self) -> ExperimentConfig:
        from .tasks import task_info

        es, info = self.train.early_stopping, task_info(self.task)
        if es is not None and es.monitor not in info.val_metrics:
            raise ValueError(
                f"train.early_stopping.monitor {es.monitor!r} is not logged by task "
                f"{self.task!r}; choose one of {', '.join(info.val_metrics)}"
            )
        return self

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str | None) -> str | None:
        if v is not None and (
            not v.strip() or any(c in v for c in '/\\:*?"<>|') or v.startswith(".")
        ):
            raise ValueError(
                "must be a plain folder name (no / \\ : * ? \" < > |, not starting with '.')"
            )
        return v

    @property
    def run_name(self) -> str:
        return self.name or self.model.name.replace("/", "_").replace(":", "_")

    @field_validator("tracking", mode="before")
    @classmethod
    def _tracking_off(cls, v: Any) -> Any:
        # `tracking: none` (or null) is the short way to switch tracking off.
        if (
            v is None
            or v is False
            or (isinstance(v, str) and v.lower() in ("none", "off", "false"))
        ):
            return {"backend": "none"}
        return v


def parse_override(text: str) -> tuple[list[str], Any]:
    """``'train.lr=0.01'`` → (['train', 'lr'], 0.01); values are parsed as YAML scalars/lists."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"Override {text!r} must look like key.sub=value (e.g. train.lr=0.01).")
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        parsed = value
    return key.split("."), parsed


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Return a copy of ``raw`` with each ``key.sub=value`` set (intermediate dicts created)."""
    import copy

    out = copy.deepcopy(raw)
    for text in overrides:
        keys, value = parse_override(text)
        node = out
        for k in keys[:-1]:
            if not isinstance(node.get(k), dict):
                # `tracking: none` is shorthand for a section; a sub-key override expands it.
                if k in node and node[k] not in (None, False, "none", "off"):
                    raise ConfigError(f"Override {text!r}: {k!r} is a value, not a section.")
                node[k] = {}
            node = node[k]
        node[keys[-1]] = value
    return out


def _model_in(ann: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation such as ``X | None``."""
    for cand in (ann, *typing.get_args(ann)):
        if isinstance(cand, type) and issubclass(cand, BaseModel):
            return cand
    return None


def _allowed_keys(loc: tuple) -> list[str]:
    model: type[BaseModel] | None = ExperimentConfig
    for part in loc[:-1]:
        field = model.model_fields.get(str(part)) if model else None
        ann = field.annotation if field else None
        model = _model_in(ann)
    return sorted(model.model_fields) if model else []


def _format_errors(exc: ValidationError, source: str) -> str:
    lines = []
    for err in exc.errors():
        loc = tuple(
            p
            for p in err["loc"]
            if not (isinstance(p, str) and p.startswith(("literal[", "function")))
        )
        key = ".".join(str(p) for p in loc) or "(top level)"
        if err["type"] == "extra_forbidden":
            allowed = _allowed_keys(loc)
            close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            hint = f" Did you mean {'.'.join([*map(str, loc[:-1]), close[0]])!r}?" if close else ""
            lines.append(f"unknown key {key!r}.{hint} Allowed here: {', '.join(allowed)}")
        elif err["type"] == "missing":
            lines.append(f"missing required key {key!r}")
        else:
            lines.append(f"{key}: {err['msg']} (got {err.get('input')!r})")
    unique = list(dict.fromkeys(lines))
    return f"Invalid config {source}:\n" + "\n".join(f"  - {line}" for line in unique)


def validate_config(raw: dict, source: str = "") -> ExperimentConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"Config {source} must be a mapping of sections (data:, model:, ...).")
    from .recipes import apply_recipe

    raw = apply_recipe(raw)  # an unknown recipe fails here, listing the known ones
    try:
        return ExperimentConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, source)) from None


def load_config(
    path: str | Path | None = None, overrides: list[str] | None = None, base: dict | None = None
) -> ExperimentConfig:
    """Read YAML at ``path`` (or start from ``base``), apply overrides, validate."""
    raw: dict = dict(base or {})
    source = "(overrides)"
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"Config file {path} does not exist.")
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path} is not valid YAML: {exc}") from None
        source = str(path)
        if isinstance(raw, dict) and "workspace" not in raw:
            raw["workspace"] = str(Path("runs") / path.stem)
    return validate_config(apply_overrides(raw, overrides or []), source)


def to_yaml(config: ExperimentConfig) -> str:
    """The resolved config as YAML (what each run saves as ``config.yaml``).

    ``recipe`` is written only when one is named (first, then the merged values), so
    runs without one save exactly what they saved before recipes existed.
    """
    data = config.model_dump(mode="json")
    if data.get("recipe") is None:
        data.pop("recipe", None)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
