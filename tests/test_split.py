"""Writing train/val/test folders: right proportions, group-safe, and the source never touched."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ensemblecv.data.samples import from_builtin, from_csv, from_folder
from ensemblecv.data.split import assign_splits, parse_ratios, write_split
from ensemblecv.errors import DataError

CLASSES = ["cat", "dog", "고양이 사진"]


def _png(path: Path, color, size=(8, 8)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


def _folder(root: Path, per_class: int = 10) -> Path:
    """3 classes (one Korean, with a space) × ``per_class`` distinct PNGs, one nested."""
    for c, name in enumerate(CLASSES):
        for i in range(per_class):
            rel = Path("nested dir") / f"{i}.png" if i == 0 else Path(f"img {i}.png")
            _png(root / name / rel, (40 * c, 20 * i, 7))
    return root


def _snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every entry under ``root``: bytes and mtime for files, a marker for folders."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            p = Path(dirpath) / d
            out[p.relative_to(root).as_posix() + "/"] = (b"", p.stat().st_mtime_ns)
        for f in filenames:
            p = Path(dirpath) / f
            out[p.relative_to(root).as_posix()] = (p.read_bytes(), p.stat().st_mtime_ns)
    return out


# --- parse_ratios ---------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [("0.8,0.1,0.1", [0.8, 0.1, 0.1]), ("0.7,0.3", [0.7, 0.3]), (" 0.5, 0.5 ", [0.5, 0.5]),
     ("1,0", [1.0, 0.0]), ("0.7,0.2,0.1", [0.7, 0.2, 0.1])],
)  # fmt: skip
def test_parse_ratios_good(text, expected):
    assert parse_ratios(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["a,b", "0.8;0.2", "", "0.8,,0.2", "80%,20%"])
def test_parse_ratios_not_numbers(text):
    with pytest.raises(DataError, match=r"comma-separated numbers like 0\.8,0\.1,0\.1"):
        parse_ratios(text)


@pytest.mark.parametrize("text", ["1", "0.5,0.6", "0.25,0.25,0.25,0.25", "-0.2,1.2", "0.8,0.1"])
def test_parse_ratios_bad_values(text):
    with pytest.raises(
        DataError, match=r"2 or 3 non-negative numbers summing to 1, got " + repr(text)
    ):
        parse_ratios(text)


# --- assign_splits ----------------------------------------------------------


@pytest.fixture(scope="module")
def digits():
    return from_builtin("digits")


@pytest.mark.parametrize("ratios", [[0.8, 0.1, 0.1], [0.7, 0.3], [0.6, 0.2, 0.2]])
def test_assign_splits_proportions_and_stratification(digits, ratios):
    splits = assign_splits(digits, ratios, seed=0)
    names = ["train", "val", "test"][: len(ratios)]
    assert splits.shape == (len(digits),)
    assert set(splits) == set(names)
    n = len(digits)
    for name, ratio in zip(names, ratios, strict=True):
        assert abs((splits == name).sum() / n - ratio) < 0.01, name
    # Per class, each split's share is close to its ratio.
    labels = digits.frame["label"].to_numpy()
    for c in range(10):
        in_class = splits[labels == c]
        for name, ratio in zip(names, ratios, strict=True):
            assert abs((in_class == name).mean() - ratio) < 0.04, (c, name)


def test_assign_splits_deterministic(digits):
    a = assign_splits(digits, [0.8, 0.1, 0.1], seed=1)
    assert (a == assign_splits(digits, [0.8, 0.1, 0.1], seed=1)).all()
    assert (a != assign_splits(digits, [0.8, 0.1, 0.1], seed=2)).any()


def test_assign_splits_keeps_groups_together(digits):
    table = digits.subset(np.ones(len(digits), dtype=bool))
    # Groups of 1..4 consecutive samples (mixed labels: the majority label stratifies).
    sizes = np.resize([1, 2, 3, 4], len(table))
    group_id = np.repeat(np.arange(len(sizes)), sizes)[: len(table)]
    table.frame["group"] = pd.Series([f"g{g}" for g in group_id], dtype=object)
    splits = assign_splits(table, [0.6, 0.2, 0.2], seed=0)
    per_group = pd.Series(splits).groupby(group_id).nunique()
    assert (per_group == 1).all()
    for name, ratio in zip(["train", "val", "test"], [0.6, 0.2, 0.2], strict=True):
        assert abs((splits == name).mean() - ratio) < 0.05


def test_assign_splits_tiny_classes_fall_back(tmp_path):
    # One class with a single image cannot be stratified; every sample is still assigned.
    root = _folder(tmp_path / "src", per_class=4)
    _png(root / "solo" / "only.png", (1, 2, 3))
    table = from_folder(root)
    splits = assign_splits(table, [0.5, 0.25, 0.25], seed=0)
    assert len(splits) == len(table) == 13
    assert set(splits) <= {"train", "val", "test"}


def test_assign_splits_zero_ratio_split_is_empty(digits):
    splits = assign_splits(digits, [0.8, 0.0, 0.2], seed=0)
    assert set(splits) == {"train", "test"}
    assert abs((splits == "train").mean() - 0.8) < 0.01


# --- write_split --------------------------------------------------------------


def test_write_split_copy(tmp_path):
    src = _folder(tmp_path / "src")
    before = _snapshot(src)
    table = from_folder(src)
    splits = assign_splits(table, [0.6, 0.2, 0.2], seed=0)
    out = tmp_path / "out"
    index = write_split(table, out, splits, mode="copy")
    assert len(index) == len(table) == 30
    assert index["sample_id"].tolist() == table.frame["sample_id"].tolist()
    assert index["split"].tolist() == splits.tolist()
    written = sorted(p for p in out.rglob("*.png"))
    assert len(written) == 30
    for (_, sample), split in zip(table.frame.iterrows(), splits, strict=True):
        rel = Path(sample["sample_id"]).relative_to(sample["class_name"])
        dest = out / split / sample["class_name"] / rel
        assert dest.is_file() and not dest.is_symlink()
        assert dest.read_bytes() == Path(sample["path"]).read_bytes()
    assert (out / "split_index.csv").is_file()
    assert pd.read_csv(out / "split_index.csv")["sample_id"].tolist() == index["sample_id"].tolist()
    # Each class folder of the output is readable as a dataset again, same classes.
    assert from_folder(out / "train").classes == CLASSES
    assert _snapshot(src) == before


def test_write_split_link(tmp_path):
    src = _folder(tmp_path / "src")
    before = _snapshot(src)
    table = from_folder(src)
    splits = assign_splits(table, [0.5, 0.5], seed=0)
    out = tmp_path / "out"
    write_split(table, out, splits, mode="link")
    for (_, sample), split in zip(table.frame.iterrows(), splits, strict=True):
        rel = Path(sample["sample_id"]).relative_to(sample["class_name"])
        dest = out / split / sample["class_name"] / rel
        assert dest.is_symlink()
        assert os.readlink(dest) == os.path.abspath(sample["path"])
        assert dest.read_bytes() == Path(sample["path"]).read_bytes()
    assert _snapshot(src) == before


def test_write_split_korean_class_name(tmp_path):
    src = _folder(tmp_path / "src", per_class=4)
    table = from_folder(src)
    write_split(table, tmp_path / "out", np.array(["train"] * len(table)))
    korean = tmp_path / "out" / "train" / "고양이 사진"
    assert sorted(p.name for p in korean.rglob("*.png")) == [
        "0.png",
        "img 1.png",
        "img 2.png",
        "img 3.png",
    ]
    assert (korean / "nested dir" / "0.png").is_file()


def test_write_split_refuses_output_inside_source(tmp_path):
    src = _folder(tmp_path / "src", per_class=2)
    before = _snapshot(src)
    table = from_folder(src)
    splits = np.array(["train"] * len(table))
    with pytest.raises(DataError, match=r"Refusing to write into .*overlaps the source dataset"):
        write_split(table, src / "splits", splits)
    with pytest.raises(DataError, match=r"overlaps the source dataset"):
        write_split(table, src / "cat", splits)
    assert _snapshot(src) == before


def test_write_split_refuses_source_inside_output(tmp_path):
    outer = tmp_path / "outer"
    src = _folder(outer / "data", per_class=2)
    before = _snapshot(src)
    table = from_folder(src)
    with pytest.raises(DataError, match=r"overlaps the source dataset"):
        write_split(table, outer, np.array(["train"] * len(table)))
    assert _snapshot(src) == before
    assert sorted(p.name for p in outer.iterdir()) == ["data"]


def test_write_split_refuses_non_empty_output(tmp_path):
    src = _folder(tmp_path / "src", per_class=2)
    table = from_folder(src)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("user file")
    with pytest.raises(DataError, match=r"Output folder .* is not empty; refusing to overwrite"):
        write_split(table, out, np.array(["train"] * len(table)))
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert (out / "keep.txt").read_text() == "user file"


def test_write_split_into_existing_empty_folder(tmp_path):
    src = _folder(tmp_path / "src", per_class=2)
    table = from_folder(src)
    out = tmp_path / "out"
    out.mkdir()
    write_split(table, out, np.array(["val"] * len(table)))
    assert len(list((out / "val").rglob("*.png"))) == 6


def test_write_split_bad_mode_and_unlabelled(tmp_path):
    src = _folder(tmp_path / "src", per_class=2)
    table = from_folder(src)
    splits = np.array(["train"] * len(table))
    with pytest.raises(DataError, match=r"mode must be 'copy' or 'link', got 'move'"):
        write_split(table, tmp_path / "o1", splits, mode="move")
    flat = tmp_path / "flat"
    for i in range(3):
        _png(flat / f"{i}.png", (i, 0, 0))
    unlabelled = from_folder(flat)
    with pytest.raises(DataError, match=r"needs a labelled dataset"):
        write_split(unlabelled, tmp_path / "o2", np.array(["train"] * 3))
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


def test_write_split_csv_source(tmp_path):
    root = tmp_path / "csvdata"
    rows = []
    for i in range(6):
        _png(root / "images" / f"{i}.png", (i * 30, 0, 0))
        rows.append({"image_path": f"images/{i}.png", "class_name": "ab"[i % 2]})
    pd.DataFrame(rows).to_csv(root / "train.csv", index=False)
    table = from_csv(root / "train.csv")
    write_split(table, tmp_path / "out", np.array(["train"] * 6), mode="copy")
    out = tmp_path / "out"
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == [
        "train/a/images/0.png", "train/a/images/2.png", "train/a/images/4.png",
        "train/b/images/1.png", "train/b/images/3.png", "train/b/images/5.png",
    ]  # fmt: skip


@pytest.mark.parametrize("mode", ["copy", "link"])
def test_write_split_builtin_writes_pngs(tmp_path, digits, mode):
    table = digits.subset(np.arange(len(digits)) < 60)
    splits = assign_splits(table, [0.5, 0.5], seed=0)
    out = tmp_path / "out"
    write_split(table, out, splits, mode=mode)
    files = sorted(out.rglob("*.png"))
    assert len(files) == 60
    for (_, sample), split in zip(table.frame.iterrows(), splits, strict=True):
        dest = out / split / sample["class_name"] / f"{Path(sample['sample_id']).name}.png"
        assert dest.is_file() and not dest.is_symlink()
        with Image.open(dest) as img:
            assert img.format == "PNG" and img.mode == "L" and img.size == (8, 8)
            idx = int(sample["sample_id"].split("/")[1])
            np.testing.assert_array_equal(np.asarray(img), _digits_images()[idx])
    again = from_folder(out / "train")
    assert set(again.classes) <= {str(i) for i in range(10)}


def _digits_images() -> np.ndarray:
    from ensemblecv.data import builtin

    return builtin.load_split("digits", "train").images
