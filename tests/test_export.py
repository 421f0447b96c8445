"""Exporting a built-in dataset as real PNG files that load back as the same dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ensemblecv.data import builtin
from ensemblecv.data.export import balanced_subset, export_builtin
from ensemblecv.data.imageio import load_image
from ensemblecv.data.samples import load_samples
from ensemblecv.errors import DataError

DIGIT_CLASSES = [str(i) for i in range(10)]


def _digits(split: str = "train") -> builtin.ArraySplit:
    return builtin.load_split("digits", split)


def test_export_folder_layout(tmp_path):
    out = tmp_path / "digits"
    result = export_builtin("digits", out, layout="folder", limit=50)
    assert result == out
    files = sorted(out.rglob("*.png"))
    assert len(files) == 50
    per_class = pd.Series([f.parent.name for f in files]).value_counts()
    assert sorted(per_class.index) == DIGIT_CLASSES
    assert (per_class == 5).all()
    table = load_samples(out)
    assert table.classes == DIGIT_CLASSES
    assert len(table) == 50
    assert table.class_counts().tolist() == [5] * 10
    assert table.ignored == []
    # Pixels and labels survive the round trip.
    data = _digits()
    for _, row in table.frame.iterrows():
        index = int(Path(row["path"]).stem.split("_")[1])
        assert data.labels[index] == row["label"]
        np.testing.assert_array_equal(
            load_image(row["path"], channels=1)[:, :, 0], data.images[index]
        )


def test_export_csv_layout_train(tmp_path):
    out = tmp_path / "sketch"
    path = export_builtin("digits", out, layout="csv", limit=40)
    assert path == out / "train.csv"
    df = pd.read_csv(path)
    assert list(df.columns) == ["class_name", "image_path", "target"]
    assert len(df) == 40
    assert df["image_path"].str.startswith("images/").all()
    table = load_samples(path)
    assert table.classes == DIGIT_CLASSES
    data = _digits()
    chosen = balanced_subset(data.labels, 40)
    assert table.frame["label"].tolist() == data.labels[chosen].tolist()
    assert table.frame["class_name"].tolist() == [DIGIT_CLASSES[i] for i in data.labels[chosen]]
    for (_, row), i in zip(table.frame.iterrows(), chosen, strict=True):
        np.testing.assert_array_equal(load_image(row["path"], channels=1)[:, :, 0], data.images[i])


def test_export_csv_layout_test_split(tmp_path):
    out = tmp_path / "sketch_test"
    path = export_builtin("digits:test", out, layout="csv", limit=20)
    assert path == out / "test.csv"
    df = pd.read_csv(path, dtype=str)
    assert list(df.columns) == ["ID", "image_path", "class_name", "target"]
    assert df["ID"].str.fullmatch(r"test_\d{5}").all()
    assert df["ID"].is_unique
    assert len(list((out / "images").glob("test_*.png"))) == 20
    table = load_samples(path)
    assert table.extra is not None and table.extra["ID"].tolist() == df["ID"].tolist()
    data = _digits("test")
    assert table.frame["label"].tolist() == data.labels[balanced_subset(data.labels, 20)].tolist()


def test_export_without_limit_writes_everything(tmp_path):
    path = export_builtin("digits:test", tmp_path / "all", layout="csv")
    assert len(pd.read_csv(path)) == len(_digits("test").labels) == 360


def test_export_refuses_non_empty_output(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match=r"Output folder .* is not empty; refusing to overwrite"):
        export_builtin("digits", out, limit=10)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_export_unknown_dataset(tmp_path):
    with pytest.raises(DataError, match=r"Unknown built-in dataset 'digitz'; available: .*digits"):
        export_builtin("digitz", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_export_bad_split_and_layout(tmp_path):
    with pytest.raises(DataError, match=r"split must be 'train' or 'test', got 'digits:val'"):
        export_builtin("digits:val", tmp_path / "a")
    with pytest.raises(DataError, match=r"--layout must be 'folder' or 'csv', got 'zip'"):
        export_builtin("digits", tmp_path / "b", layout="zip")


def test_balanced_subset_takes_classes_in_turn():
    labels = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2])
    chosen = balanced_subset(labels, 6)
    assert np.bincount(labels[chosen]).tolist() == [2, 2, 2]
    assert (np.diff(chosen) > 0).all()
    # A class that runs out leaves room for the others.
    assert np.bincount(labels[balanced_subset(labels, 8)]).tolist() == [3, 2, 3]
    assert balanced_subset(labels, None).tolist() == list(range(9))
    assert balanced_subset(labels, 100).tolist() == list(range(9))
