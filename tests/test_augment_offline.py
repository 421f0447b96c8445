"""Offline augmentation: copies keep their original's group, the source is never touched."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from ensemblecv.augment_offline import augment_offline, parse_ops
from ensemblecv.cli.clean_commands import register
from ensemblecv.data.samples import load_samples
from ensemblecv.errors import ConfigError, DataError
from ensemblecv.workspace import prepare_workspace

CLASSES = ["cat", "dog"]
PER_CLASS = 4


def _image(seed: int) -> np.ndarray:
    """A bright square on a dark noisy background: edges for canny, regions for morphology."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 40, size=(24, 24, 3), dtype=np.uint8)
    lo, hi = 4 + seed % 4, 16 + seed % 5
    img[lo:hi, lo:hi] = (220, 180 - 10 * (seed % 7), 90 + seed)
    return img


@pytest.fixture
def data(tmp_path) -> Path:
    root = tmp_path / "data"
    for c, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        for i in range(PER_CLASS):
            Image.fromarray(_image(10 * c + i)).save(root / name / f"{i}.png")
    return root


def _snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_copies_share_their_originals_group_and_never_straddle_folds(data, tmp_path):
    before = _snapshot(data)
    index = augment_offline(data, tmp_path / "aug", copies=2, ops="canny,motion_blur")
    assert _snapshot(data) == before  # no source file changed, none added

    written = pd.read_csv(index, dtype=str, keep_default_na=False)
    n = len(CLASSES) * PER_CLASS
    assert len(written) == 3 * n and (written["augmented_from"] != "").sum() == 2 * n
    table = load_samples(index)
    frame = table.frame.set_index("sample_id")
    assert table.classes == CLASSES
    for _, copy in written[written["augmented_from"] != ""].iterrows():
        original = "images/" + copy["augmented_from"]
        copy_id = copy["image_path"]
        assert frame.loc[copy_id, "group"] == frame.loc[original, "group"] == copy["augmented_from"]
        assert frame.loc[copy_id, "class_name"] == frame.loc[original, "class_name"]
    # Originals are links to the source, not copies of it.
    links = [p for p in (tmp_path / "aug" / "images").rglob("*.png") if p.is_symlink()]
    assert len(links) == n and all(Path(os.readlink(p)).is_relative_to(data) for p in links)

    ws = prepare_workspace(tmp_path / "ws", str(index), folds=2, seed=0, workers=0)
    folds = ws.load_folds()[["sample_id", "fold"]].merge(
        written.rename(columns={"image_path": "sample_id"}), on="sample_id"
    )
    assert len(folds) == 3 * n
    assert (folds.groupby("group")["fold"].nunique() == 1).all()
    assert folds["group"].nunique() == n
    assert _snapshot(data) == before


def test_copies_are_deterministic_per_seed(data, tmp_path):
    ops = [{"name": "gauss_noise", "std": [0.05, 0.1], "p": 1.0}, {"name": "erode", "p": 1.0}]
    a = augment_offline(data, tmp_path / "a", copies=2, ops=ops, seed=3).parent
    b = augment_offline(data, tmp_path / "b", copies=2, ops=ops, seed=3).parent
    c = augment_offline(data, tmp_path / "c", copies=2, ops=ops, seed=4).parent
    copies = sorted(p.relative_to(a) for p in a.rglob("*__aug*.png"))
    assert len(copies) == 2 * len(CLASSES) * PER_CLASS
    for rel in copies:
        assert np.array_equal(np.asarray(Image.open(a / rel)), np.asarray(Image.open(b / rel)))
    assert any(
        not np.array_equal(np.asarray(Image.open(a / rel)), np.asarray(Image.open(c / rel)))
        for rel in copies
    )
    # Copy 0 and copy 1 of one image differ (each copy has its own seed).
    assert not np.array_equal(
        np.asarray(Image.open(a / "images/cat/0__aug0.png")),
        np.asarray(Image.open(a / "images/cat/0__aug1.png")),
    )


@pytest.mark.parametrize("op", ["canny", "erode", "dilate", "gauss_noise", "motion_blur"])
def test_each_report_op_changes_the_image(data, tmp_path, op):
    augment_offline(data, tmp_path / "out", copies=1, ops=op)
    original = np.asarray(Image.open(data / "dog" / "1.png"))
    copy = np.asarray(Image.open(tmp_path / "out" / "images" / "dog" / "1__aug0.png"))
    assert copy.shape == original.shape and copy.dtype == np.uint8
    assert not np.array_equal(copy, original)


def test_grayscale_stays_grayscale(tmp_path):
    root = tmp_path / "gray" / "a"
    root.mkdir(parents=True)
    Image.fromarray(_image(1)[:, :, 0], mode="L").save(root / "x.png")
    augment_offline(tmp_path / "gray", tmp_path / "out", copies=1, ops="erode")
    assert Image.open(tmp_path / "out" / "images" / "a" / "x__aug0.png").mode == "L"


def test_refuses_overlapping_or_non_empty_output(data, tmp_path):
    with pytest.raises(DataError, match="overlaps the source"):
        augment_offline(data, data / "aug", copies=1, ops="canny")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    with pytest.raises(DataError, match="not empty"):
        augment_offline(data, busy, copies=1, ops="canny")
    assert (busy / "keep.txt").read_text() == "mine" and not (data / "aug").exists()


def test_op_parsing():
    assert parse_ops("canny, erode") == [{"name": "canny", "p": 1.0}, {"name": "erode", "p": 1.0}]
    assert parse_ops("sketch")[0]["name"] == "hflip"  # a preset name gives the preset's list
    with pytest.raises(ConfigError, match="Did you mean canny"):
        parse_ops("cany")
    with pytest.raises(ConfigError, match="No augmentation ops"):
        parse_ops(" , ")


def test_bad_op_params_fail_before_writing(data, tmp_path):
    with pytest.raises(ConfigError, match="unknown parameter"):
        augment_offline(data, tmp_path / "out", copies=1, ops=[{"name": "erode", "size_": 3}])
    assert not (tmp_path / "out").exists()


def test_cli_augment_offline(data, tmp_path):
    app = typer.Typer()
    register(app)
    out = tmp_path / "cli"
    result = CliRunner().invoke(
        app,
        ["augment-offline", str(data), "--out", str(out), "--copies", "2", "--ops", "canny,erode"],
    )
    assert result.exit_code == 0, result.output
    assert "index.csv" in result.output
    assert len(pd.read_csv(out / "index.csv")) == 3 * len(CLASSES) * PER_CLASS
