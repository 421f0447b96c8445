"""Fold invariants: a partition, stratified, group-safe, reproducible, and checked on reuse."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ensemblecv.data.folds import check_fold_feasible, load_folds, make_folds, save_folds
from ensemblecv.data.samples import from_builtin, from_csv, from_folder
from ensemblecv.data.scan import duplicate_groups, scan_table
from ensemblecv.errors import DataError


def _png(path: Path, color, size=(8, 8)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


@pytest.fixture(scope="module")
def digits():
    return from_builtin("digits")


def _assert_partition(folds: pd.DataFrame, table, k: int) -> None:
    """Each sample of ``table`` appears exactly once, with a fold in 0..k-1."""
    assert len(folds) == len(table)
    assert not folds["sample_id"].duplicated().any()
    assert set(folds["sample_id"]) == set(table.frame["sample_id"])
    assert folds["fold"].between(0, k - 1).all()
    assert set(folds["fold"]) == set(range(k))


@pytest.mark.parametrize("k", [2, 5, 7])
def test_folds_partition_and_stratify_digits(digits, k):
    folds = make_folds(digits, k=k, seed=0)
    _assert_partition(folds, digits, k)
    assert list(folds.columns) == ["sample_id", "fold", "label", "group"]
    # Rows stay aligned with the table.
    assert folds["sample_id"].tolist() == digits.frame["sample_id"].tolist()
    assert folds["label"].tolist() == digits.frame["label"].tolist()
    counts = pd.crosstab(folds["label"], folds["fold"])
    assert counts.shape == (10, k)
    spread = counts.max(axis=1) - counts.min(axis=1)
    assert (spread <= 1).all(), counts
    # Fold sizes are balanced too.
    sizes = folds["fold"].value_counts()
    assert sizes.max() - sizes.min() <= 10


def test_folds_deterministic_per_seed(digits):
    a = make_folds(digits, k=5, seed=3)
    b = make_folds(digits, k=5, seed=3)
    c = make_folds(digits, k=5, seed=4)
    pd.testing.assert_frame_equal(a, b)
    assert (a["fold"].to_numpy() != c["fold"].to_numpy()).mean() > 0.3


def _grouped_csv(tmp_path: Path, n_classes=3, groups_per_class=6, per_group=3) -> Path:
    root = tmp_path / "csvdata"
    rows = []
    n = 0
    for c in range(n_classes):
        for g in range(groups_per_class):
            # Uneven group sizes make a naive split more likely to cut a group.
            for _j in range(per_group + (g % 2)):
                rel = f"img/{n:04d}.png"
                _png(root / rel, (n % 256, (7 * n) % 256, c * 60))
                rows.append({"image_path": rel, "class_name": f"class{c}", "group": f"c{c}g{g}"})
                n += 1
    # A few ungrouped samples (empty group = alone) must still be placed.
    for c in range(n_classes):
        rel = f"img/solo{c}.png"
        _png(root / rel, (1, 2, c))
        rows.append({"image_path": rel, "class_name": f"class{c}", "group": ""})
    path = root / "train.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_csv_groups_never_straddle_folds(tmp_path, seed):
    table = from_csv(_grouped_csv(tmp_path))
    assert table.frame["group"].isna().sum() == 3
    k = 4
    folds = make_folds(table, k=k, seed=seed)
    _assert_partition(folds, table, k)
    grouped = folds[folds["group"].notna()]
    per_group = grouped.groupby("group")["fold"].nunique()
    assert len(per_group) == 18
    assert (per_group == 1).all(), per_group[per_group > 1]
    # Every class still reaches every fold.
    assert (pd.crosstab(folds["label"], folds["fold"]) > 0).all().all()


def test_group_folds_deterministic_per_seed(tmp_path):
    table = from_csv(_grouped_csv(tmp_path))
    a = make_folds(table, k=3, seed=0)
    b = make_folds(table, k=3, seed=0)
    pd.testing.assert_frame_equal(a, b)
    differs = [not make_folds(table, k=3, seed=s)["fold"].equals(a["fold"]) for s in range(1, 6)]
    assert any(differs)


def test_exact_duplicates_share_a_fold(tmp_path):
    root = tmp_path / "dups"
    for c, name in enumerate(["a", "b"]):
        for i in range(6):
            _png(root / name / f"{i}.png", (c * 100, i * 30, 5))
    # Byte-identical copies: one within class a (twice), one across classes.
    data = (root / "a" / "0.png").read_bytes()
    (root / "a" / "copy1.png").write_bytes(data)
    (root / "a" / "copy2.png").write_bytes(data)
    (root / "b" / "from_a.png").write_bytes((root / "a" / "3.png").read_bytes())
    table = from_folder(root)
    scan = scan_table(table, workers=0)
    grouped = duplicate_groups(table, scan.stats["hash"])
    dup_ids = {"a/0.png", "a/copy1.png", "a/copy2.png"}
    cross_ids = {"a/3.png", "b/from_a.png"}
    groups = grouped.frame.set_index("sample_id")["group"]
    assert set(groups[list(dup_ids)]) == {"a/0.png"}  # smallest sample id names the group
    assert set(groups[list(cross_ids)]) == {"a/3.png"}
    assert groups.drop(list(dup_ids | cross_ids)).isna().all()
    for seed in range(5):
        folds = make_folds(grouped, k=3, seed=seed).set_index("sample_id")["fold"]
        assert folds[list(dup_ids)].nunique() == 1
        assert folds[list(cross_ids)].nunique() == 1


def _small_class_table(tmp_path: Path, counts: dict[str, int]):
    root = tmp_path / "small"
    n = 0
    for name, count in counts.items():
        for i in range(count):
            _png(root / name / f"{i}.png", (n, 0, 0))
            n += 1
    return from_folder(root)


def test_too_small_class_names_class_and_suggests_fewer_folds(tmp_path):
    table = _small_class_table(tmp_path, {"big": 10, "rare_cat": 3})
    with pytest.raises(DataError, match=r"(?s)'rare_cat': 3 independent.*use folds <= 3"):
        make_folds(table, k=5)
    # The big class is not blamed.
    with pytest.raises(DataError) as info:
        check_fold_feasible(table, 5)
    assert "'big'" not in str(info.value)
    # With the suggested number of folds it works.
    _assert_partition(make_folds(table, k=3), table, 3)


def test_single_image_class_suggests_merging(tmp_path):
    table = _small_class_table(tmp_path, {"big": 10, "lonely": 1})
    with pytest.raises(
        DataError, match=r"(?s)'lonely': 1 independent.*merge or drop these classes"
    ):
        make_folds(table, k=2)


def test_groups_count_once_in_feasibility(tmp_path):
    table = from_csv(_grouped_csv(tmp_path, groups_per_class=2, per_group=3))
    # Each class has 2 groups + 1 solo = 3 independent samples, though 8 images.
    with pytest.raises(DataError, match=r"(?s)fewer than 4 independent.*'class0': 3 independent"):
        make_folds(table, k=4)


@pytest.mark.parametrize("k", [1, 0, -3])
def test_fewer_than_two_folds_refused(digits, k):
    with pytest.raises(DataError, match=rf"folds must be at least 2, got {k}"):
        make_folds(digits, k=k)


def test_unlabelled_table_refused(tmp_path):
    root = tmp_path / "test_images"
    for i in range(6):
        _png(root / f"{i}.png", (i, i, i))
    table = from_folder(root)
    assert not table.labelled
    with pytest.raises(DataError, match=r"Folds need labels.*unlabelled"):
        make_folds(table, k=2)


def test_load_folds_roundtrip_and_changed_dataset(tmp_path, digits):
    small = digits.subset(np.arange(len(digits)) < 300)
    folds = make_folds(small, k=3, seed=0)
    path = tmp_path / "folds.parquet"
    save_folds(folds, path)
    loaded = load_folds(path, small)
    assert loaded["sample_id"].tolist() == folds["sample_id"].tolist()
    assert loaded["fold"].tolist() == folds["fold"].tolist()
    # One sample gone, many new ones: refused, with examples of both.
    changed = digits.subset((np.arange(len(digits)) >= 1) & (np.arange(len(digits)) < 310))
    with pytest.raises(
        DataError,
        match=r"(?s)different set of samples \(10 new, 1 gone\)"
        r".*new: train/00300.*gone: train/00000",
    ):
        load_folds(path, changed)
    # Without a table nothing is checked.
    assert len(load_folds(path)) == 300


def test_load_folds_message_path_and_advice(tmp_path, digits):
    small = digits.subset(np.arange(len(digits)) < 50)
    path = tmp_path / "folds.parquet"
    save_folds(make_folds(small, k=2), path)
    other = digits.subset(np.arange(len(digits)) < 49)
    with pytest.raises(DataError, match=r"(?s)" + re.escape(str(path)) + r".*delete folds.parquet"):
        load_folds(path, other)
