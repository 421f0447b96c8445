"""Config loading: defaults, overrides, and errors that name the key and what is allowed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from ensemblecv.config import (
    ExperimentConfig,
    NormalizeValues,
    load_config,
    parse_override,
    to_yaml,
    validate_config,
)
from ensemblecv.errors import ConfigError

MINIMAL = "data:\n  train: digits\n"

FULL = """\
workspace: runs/custom
data:
  train: data/train.csv
  test: data/test.csv
  image_size: 64
  channels: 1
  folds: 3
  resize: stretch
  normalize: imagenet
model:
  name: resnet18
  pretrained: true
train:
  epochs: 2
  lr: 0.003
  scheduler: step
tracking:
  backend: none
trainer:
  precision: 16-mixed
  max_steps: 5
"""


def _write(tmp_path: Path, text: str, name: str = "exp.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_minimal_config_fills_defaults(tmp_path):
    cfg = load_config(_write(tmp_path, MINIMAL))
    assert cfg.data.train == "digits"
    assert cfg.data.test is None
    # image_size is unset until resolved against the model: built-ins keep their 28 px
    assert (cfg.data.image_size, cfg.data.channels, cfg.data.folds) == (None, 3, 5)
    from ensemblecv.models import resolve_inputs

    assert resolve_inputs(cfg).data.image_size == 28
    assert cfg.data.resize == "letterbox" and cfg.data.normalize == "dataset"
    assert cfg.data.strict is False and cfg.data.num_workers is None
    assert cfg.model.name == "mnist_cnn" and cfg.model.pretrained is False
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.train.lr) == (10, 128, 1e-3)
    assert cfg.train.optimizer == "adamw" and cfg.train.scheduler == "cosine"
    assert cfg.augment.preset == "light"
    assert cfg.tracking.backend == "mlflow"
    assert cfg.trainer.precision == "32"


def test_full_config_values_kept(tmp_path):
    cfg = load_config(_write(tmp_path, FULL))
    assert cfg.workspace == "runs/custom"
    assert cfg.data.channels == 1 and cfg.data.resize == "stretch" and cfg.data.folds == 3
    assert cfg.model.pretrained is True
    assert cfg.train.lr == 0.003
    assert cfg.tracking.backend == "none"
    assert cfg.trainer.precision == "16-mixed"
    # Trainer allows extra keys for Lightning to check.
    assert cfg.trainer.model_dump()["max_steps"] == 5


def test_workspace_defaults_to_config_stem(tmp_path):
    assert load_config(_write(tmp_path, MINIMAL, "fashion_resnet.yaml")).workspace == str(
        Path("runs") / "fashion_resnet"
    )
    # Without a file, the default of the model.
    assert load_config(None, ["data.train=digits"]).workspace == "runs/default"


def test_overrides(tmp_path):
    path = _write(tmp_path, MINIMAL)
    cfg = load_config(
        path,
        ["train.lr=0.01", "data.channels=1", "model.pretrained=/path/w.pth", "tracking=none",
         "train.epochs=3", "data.test=digits:test"],
    )  # fmt: skip
    assert cfg.train.lr == 0.01 and isinstance(cfg.train.lr, float)
    assert cfg.data.channels == 1
    assert cfg.model.pretrained == "/path/w.pth"
    assert isinstance(cfg.model.pretrained, str)
    assert cfg.tracking.backend == "none"
    assert cfg.train.epochs == 3
    assert cfg.data.test == "digits:test"
    # The file itself is not modified.
    assert path.read_text() == MINIMAL


@pytest.mark.parametrize("value", ["none", "None", "NONE", "null", "~"])
def test_tracking_short_switch_off(tmp_path, value):
    text = FULL.replace("tracking:\n  backend: none\n", "")
    assert load_config(_write(tmp_path, text)).tracking.backend == "mlflow"
    assert load_config(_write(tmp_path, text), [f"tracking={value}"]).tracking.backend == "none"


@pytest.mark.parametrize("value", ["off", "false", "no", "OFF"])
def test_tracking_off_as_yaml_boolean(tmp_path, value):
    # YAML reads `off`/`false`/`no` as the boolean False, so the validator's string
    # check for "off"/"false" never sees them: `tracking: off` must still switch it off.
    cfg = load_config(_write(tmp_path, MINIMAL + f"tracking: {value}\n"))
    assert cfg.tracking.backend == "none"
    assert load_config(_write(tmp_path, MINIMAL), [f"tracking={value}"]).tracking.backend == "none"


def test_override_replaces_tracking_section(tmp_path):
    text = MINIMAL + "tracking:\n  backend: mlflow\n  uri: sqlite:///x.db\n"
    assert load_config(_write(tmp_path, text), ["tracking=none"]).tracking.backend == "none"
    assert (
        load_config(_write(tmp_path, text), ["tracking.backend=wandb"]).tracking.uri
        == "sqlite:///x.db"
    )


def test_override_creates_sections(tmp_path):
    cfg = load_config(None, ["data.train=digits", "train.lr=0.5", "model.name=resnet18"])
    assert (cfg.data.train, cfg.train.lr, cfg.model.name) == ("digits", 0.5, "resnet18")


def test_unknown_key_suggests_close_match(tmp_path):
    with pytest.raises(
        ConfigError, match=r"unknown key 'train\.lrr'\. Did you mean 'train\.lr'\?"
    ) as info:
        load_config(_write(tmp_path, MINIMAL), ["train.lrr=0.01"])
    msg = str(info.value)
    assert "Allowed here:" in msg and "batch_size" in msg and "weight_decay" in msg
    assert "exp.yaml" in msg


def test_unknown_key_in_file_and_top_level(tmp_path):
    with pytest.raises(
        ConfigError, match=r"unknown key 'data\.image_sise'\. Did you mean 'data\.image_size'\?"
    ):
        load_config(_write(tmp_path, MINIMAL + "  image_sise: 32\n"))
    with pytest.raises(ConfigError, match=r"unknown key 'trian'\. Did you mean 'train'\?"):
        load_config(_write(tmp_path, MINIMAL + "trian:\n  lr: 0.1\n"))


def test_unknown_key_without_close_match(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, MINIMAL), ["model.zzzz=1"])
    msg = str(info.value)
    assert "unknown key 'model.zzzz'." in msg and "Did you mean" not in msg
    allowed = msg.split("Allowed here: ")[1].split(", ")
    assert {"drop_rate", "name", "pretrained"} <= set(allowed)
    assert allowed == sorted(allowed)


def test_unknown_key_in_optional_section_suggests_close_match(tmp_path):
    # `train.early_stopping` is `EarlyStoppingConfig | None`: the suggestion must still work.
    with pytest.raises(
        ConfigError,
        match=r"unknown key 'train\.early_stopping\.patiense'\. Did you mean "
        r"'train\.early_stopping\.patience'\? Allowed here: .*monitor",
    ):
        load_config(_write(tmp_path, MINIMAL), ["train.early_stopping.patiense=3"])


@pytest.mark.parametrize(
    "override, pattern",
    [("train.epochs=abc", r"train\.epochs: .*integer.*\(got 'abc'\)"),
     ("train.epochs=0", r"train\.epochs: .*greater than or equal to 1"),
     ("train.lr=-1", r"train\.lr: .*greater than 0"),
     ("data.channels=2", r"data\.channels: .*1 or 3"),
     ("data.image_size=big", r"data\.image_size: .*integer")],
)  # fmt: skip
def test_wrong_value_names_the_key(tmp_path, override, pattern):
    with pytest.raises(ConfigError, match=pattern):
        load_config(_write(tmp_path, MINIMAL), [override])


def test_bad_literal_lists_allowed_values(tmp_path):
    with pytest.raises(ConfigError, match=r"data\.resize: .*\(got 'squash'\)") as info:
        load_config(_write(tmp_path, MINIMAL), ["data.resize=squash"])
    msg = str(info.value)
    for allowed in ("stretch", "letterbox", "center_crop"):
        assert allowed in msg
    # Internal pydantic location tags are not shown to the user.
    assert "literal[" not in msg


@pytest.mark.parametrize(
    "text", ["trainlr", "train.lr", "=0.1", "train..lr=1", ".lr=1", "train.=1"]
)
def test_malformed_override(text):
    with pytest.raises(
        ConfigError, match=re.escape(f"Override {text!r} must look like key.sub=value")
    ):
        parse_override(text)
    with pytest.raises(
        ConfigError, match=r"must look like key\.sub=value \(e\.g\. train\.lr=0\.01\)"
    ):
        load_config(None, ["data.train=digits", text])


def test_override_into_a_value_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"'lr' is a value, not a section"):
        load_config(_write(tmp_path, MINIMAL + "train:\n  lr: 0.1\n"), ["train.lr.x=1"])


def test_parse_override_values():
    assert parse_override("train.lr=0.01") == (["train", "lr"], 0.01)
    assert parse_override("trainer.devices=[0, 1]") == (["trainer", "devices"], [0, 1])
    assert parse_override("data.test=") == (["data", "test"], None)
    assert parse_override("model.name=a=b") == (["model", "name"], "a=b")


def test_missing_data_section(tmp_path):
    with pytest.raises(ConfigError, match=r"missing required key 'data'"):
        load_config(_write(tmp_path, "model:\n  name: resnet18\n"))
    with pytest.raises(ConfigError, match=r"missing required key 'data\.train'"):
        load_config(_write(tmp_path, "data:\n  folds: 3\n"))


def test_not_a_mapping_and_bad_yaml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=r"must be a mapping of sections"):
        load_config(_write(tmp_path, "- a\n- b\n"))
    with pytest.raises(ConfigError, match=r"is not valid YAML"):
        load_config(_write(tmp_path, "data: [unclosed\n"))
    with pytest.raises(ConfigError, match=r"Config file .*nope\.yaml does not exist"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match=r"must be a mapping"):
        validate_config("data", "x")


def test_empty_file_reports_missing_data(tmp_path):
    with pytest.raises(ConfigError, match=r"missing required key 'data'"):
        load_config(_write(tmp_path, ""))


@pytest.mark.parametrize("text", [MINIMAL, FULL])
def test_to_yaml_round_trip(tmp_path, text):
    cfg = load_config(
        _write(tmp_path, text),
        ["model.pretrained=/w/x.pth", "data.normalize={mean: [0.5], std: [0.25]}"],
    )
    dumped = to_yaml(cfg)
    again = load_config(_write(tmp_path, dumped, "resolved.yaml"))
    assert again == cfg
    assert again.workspace == cfg.workspace  # saved workspace wins over the new file's stem
    assert to_yaml(again) == dumped
    assert isinstance(yaml.safe_load(dumped), dict)


def test_normalize_values(tmp_path):
    path = _write(
        tmp_path, MINIMAL + "  normalize:\n    mean: [0.5, 0.4, 0.3]\n    std: [0.2, 0.2, 0.2]\n"
    )
    cfg = load_config(path)
    assert isinstance(cfg.data.normalize, NormalizeValues)
    assert cfg.data.normalize.mean == [0.5, 0.4, 0.3]
    gray = load_config(path, ["data.normalize={mean: [0.5], std: [0.25]}"])
    assert gray.data.normalize.std == [0.25]
    for name in ("imagenet", "dataset", "none"):
        assert load_config(path, [f"data.normalize={name}"]).data.normalize == name


@pytest.mark.parametrize(
    "value, pattern",
    [("{mean: [0.5, 0.5, 0.5], std: [0.2]}", r"same length"),
     ("{mean: [0.5], std: [0]}", r"std must be > 0"),
     ("{mean: [0.1, 0.2, 0.3, 0.4], std: [1, 1, 1, 1]}", r"at most 3"),
     ("{mean: [0.5]}", r"missing required key 'data\.normalize\.[A-Za-z]*\.?std'"),
     ("imagenett", r"data\.normalize: .*'imagenet', 'dataset' or 'none'")],
)  # fmt: skip
def test_normalize_values_rejected(tmp_path, value, pattern):
    with pytest.raises(ConfigError, match=pattern) as info:
        load_config(_write(tmp_path, MINIMAL), [f"data.normalize={value}"])
    assert "data.normalize" in str(info.value)


def test_experiment_config_direct_validation():
    cfg = ExperimentConfig.model_validate({"data": {"train": "digits"}, "tracking": None})
    assert cfg.tracking.backend == "none"
    with pytest.raises(ValueError):
        cfg.train.lr = -1.0  # assignment is validated too
