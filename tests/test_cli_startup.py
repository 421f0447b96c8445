"""`ensemblecv --help`, `VERB --help` and config errors answer at once (issue 16, item 7).

Every verb imports what it needs when it runs; importing the CLI, or validating a config, must
not pull in the heavy libraries (seconds on a 2-core machine). The checks look at
``sys.modules`` in a fresh interpreter rather than at a clock, so they fail on the cause.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("torch", "pandas", "sklearn", "lightning", "timm", "matplotlib")
SRC = str(Path(__file__).resolve().parents[1] / "src")


def _heavy_after(code: str) -> list[str]:
    """The heavy top-level packages a fresh interpreter holds after running ``code``."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True
    ).stdout
    loaded = set(json.loads(out.strip().splitlines()[-1]))
    return sorted(loaded.intersection(HEAVY))


def test_importing_the_cli_loads_no_heavy_library():
    assert _heavy_after("import ensemblecv.cli") == []


def test_the_probe_sees_heavy_imports():
    # The check above can fail: a module that imports pandas is seen.
    assert _heavy_after("import ensemblecv.cli, pandas") == ["pandas"]


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["train", "--help"], ["ensemble", "--help"], ["demo", "--help"]],
    ids=" ".join,
)
def test_help_loads_no_heavy_library(argv):
    code = f"import ensemblecv.cli as c\ntry:\n    c.main({argv!r})\nexcept SystemExit:\n    pass"
    assert _heavy_after(code) == []


def test_config_validation_loads_no_heavy_library(tmp_path):
    bad, good = tmp_path / "bad.yaml", tmp_path / "good.yaml"
    bad.write_text("data: {train: digits}\ntrain: {lrr: 0.1}\n", encoding="utf-8")
    good.write_text("data: {train: digits}\nmodel: {name: resnet18}\n", encoding="utf-8")
    code = (
        "from ensemblecv import ConfigError, load_config\n"
        f"try:\n    load_config({str(bad)!r})\nexcept ConfigError as e:\n    assert 'train.lr' in str(e)\n"
        "else:\n    raise SystemExit('no error')\n"
        f"load_config({str(good)!r}, ['train.lr=0.01', 'train.early_stopping={{patience: 2}}'])"
    )
    assert _heavy_after(code) == []
