"""Segmentation folds and workspace: presence stratified, groups kept, the tables every run reads."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from segment_fakes import make_coco, make_csv, make_folders, make_voc, save_palette_png, tree_hash

from ensemblecv.config import ExperimentConfig
from ensemblecv.errors import DataError
from ensemblecv.tasks.segment.folds import main_class, segmentation_folds
from ensemblecv.tasks.segment.read import SegmentationData, read_segmentation
from ensemblecv.tasks.segment.workspace import (
    create_segment_workspace,
    load_segment_workspace,
    segment_source_id,
)


def _counts_dataset(n: int, rare_in: int, seed: int = 0, groups=None) -> SegmentationData:
    """Counts only (no files): class 0 everywhere, 1-3 at random, class 4 in ``rare_in`` images."""
    rng = np.random.default_rng(seed)
    counts = np.zeros((n, 5), np.int64)
    counts[:, 0] = 100
    counts[:, 1:4] = rng.integers(0, 2, size=(n, 3)) * rng.integers(1, 50, size=(n, 3))
    counts[rng.choice(n, rare_in, replace=False), 4] = 3
    ids = [f"m{i:03d}.png" for i in range(n)]
    images = pd.DataFrame({"sample_id": ids, "image_path": ids, "mask_path": ids, "width": 8,
                           "height": 8, "group": groups if groups is not None else [None] * n})  # fmt: skip
    return SegmentationData(images, list("abcde"), None, 255, pd.DataFrame(), counts=counts,
                            ignored=np.zeros(n, np.int64))  # fmt: skip


@pytest.mark.parametrize("seed", [0, 1])
def test_rare_class_reaches_every_fold(seed):
    data = _counts_dataset(60, rare_in=5, seed=seed)
    folds = segmentation_folds(data, n_folds=5, seed=seed)
    assert list(folds.columns) == ["sample_id", "fold", "label", "group"]
    present = pd.DataFrame(data.presence(), columns=data.classes).groupby(folds["fold"]).sum()
    assert present["e"].tolist() == [1, 1, 1, 1, 1], present
    assert (present > 0).all().all()
    assert folds["fold"].value_counts().between(9, 15).all()


def test_same_seed_same_folds_other_seed_other_folds():
    data = _counts_dataset(40, rare_in=4)
    a = segmentation_folds(data, 4, seed=3)
    pd.testing.assert_frame_equal(a, segmentation_folds(data, 4, seed=3))
    assert not a["fold"].equals(segmentation_folds(data, 4, seed=4)["fold"])


def test_groups_stay_in_one_fold_and_short_classes_are_warned():
    groups = [f"g{i // 4}" for i in range(40)]  # ten groups of four
    data = _counts_dataset(40, rare_in=3, groups=groups)
    with pytest.warns(UserWarning, match=r"(?s)in fewer than 5 independent images.*'e'"):
        folds = segmentation_folds(data, 5, seed=0)
    assert (folds.groupby("group")["fold"].nunique() == 1).all()
    with pytest.raises(DataError, match="10 independent images.*cannot fill 11 folds"):
        segmentation_folds(data, 11, seed=0)


def test_main_class_skips_background():
    counts = np.array([[90, 0, 10], [100, 0, 0], [5, 30, 40]])
    assert main_class(counts).tolist() == [2, 0, 2]


def test_csv_groups_kept_in_folds(tmp_path):
    make_csv(tmp_path, n=12, groups=True)
    folds = segmentation_folds(read_segmentation(tmp_path / "index.csv"), 3, seed=0)
    assert folds["group"].notna().all()
    assert (folds.groupby("group")["fold"].nunique() == 1).all()


# ------------------------------------------------------------------ workspace


def _config(ws, train, **data):
    return ExperimentConfig.model_validate(
        {"workspace": str(ws), "data": {"train": str(train), "folds": 3, **data}}
    )


def test_workspace_tables_from_voc(tmp_path):
    make_voc(tmp_path / "voc", n=12)
    before = tree_hash(tmp_path / "voc")
    config = _config(tmp_path / "ws", tmp_path / "voc")
    with pytest.warns(UserWarning, match="fewer than 3"):  # 12 images cannot hold 21 classes thrice
        ws = create_segment_workspace(config, tmp_path / "ws", progress=False)
    info = json.loads((ws.root / "workspace.json").read_text())
    assert info["task"] == "segment" and info["format"] == "voc" and info["ignore_index"] == 255
    assert info["source"] == segment_source_id(config.data) == str((tmp_path / "voc").resolve())
    assert len(info["palette"]) == 21
    samples = pd.read_parquet(ws.samples_path)
    assert {"sample_id", "path", "image_path", "mask_path", "width", "height", "group"} <= set(
        samples
    )
    folds = pd.read_parquet(ws.folds_path)
    assert folds["sample_id"].tolist() == samples["sample_id"].tolist()
    assert sorted(folds["fold"].unique()) == [0, 1, 2]
    assert json.loads(ws.classes_path.read_text())[0] == "background"
    assert ws.stats_path.is_file()
    data = load_segment_workspace(ws.root)
    fresh = read_segmentation(tmp_path / "voc")
    np.testing.assert_array_equal(data.pixel_counts(), fresh.pixel_counts())
    np.testing.assert_array_equal(data.load_mask(3), fresh.load_mask(3))
    assert tree_hash(tmp_path / "voc") == before


def test_workspace_lists_bad_masks_and_strict_aborts(tmp_path):
    make_folders(tmp_path / "d", n=9, n_classes=3)
    save_palette_png(np.zeros((3, 3), np.uint8), tmp_path / "d" / "masks" / "img_004.png")
    with pytest.warns(UserWarning, match="size_mismatch"):
        ws = create_segment_workspace(
            _config(tmp_path / "ws", tmp_path / "d"), tmp_path / "ws", False
        )
    bad = pd.read_csv(ws.root / "bad_masks.csv")
    assert bad[["path", "reason"]].values.tolist() == [["masks/img_004.png", "size_mismatch"]]
    assert "meaning" in bad and len(pd.read_parquet(ws.samples_path)) == 8
    with pytest.raises(DataError, match="(?s)size_mismatch.*--strict"):
        create_segment_workspace(
            _config(tmp_path / "ws2", tmp_path / "d", strict=True), tmp_path / "ws2", False
        )


def test_workspace_groups_identical_images(tmp_path):
    make_folders(tmp_path / "d", n=9, n_classes=3)
    shutil.copy(tmp_path / "d/images/img_001.jpg", tmp_path / "d/images/zz_copy.jpg")
    shutil.copy(tmp_path / "d/masks/img_001.png", tmp_path / "d/masks/zz_copy.png")
    ws = create_segment_workspace(_config(tmp_path / "ws", tmp_path / "d"), tmp_path / "ws", False)
    folds = pd.read_parquet(ws.folds_path).set_index("sample_id")
    assert folds.loc["images/zz_copy.jpg", "group"] == "images/img_001.jpg"
    assert folds.loc["images/zz_copy.jpg", "fold"] == folds.loc["images/img_001.jpg", "fold"]


def test_workspace_rasterises_coco_once(tmp_path):
    truth = make_coco(tmp_path / "c", n=9)
    config = _config(tmp_path / "ws", tmp_path / "c" / "annotations.json", classes=None)
    ws = create_segment_workspace(config, tmp_path / "ws", False)
    samples = pd.read_parquet(ws.samples_path)
    assert samples["mask_path"].str.startswith(str(ws.root / "masks")).all()
    data = load_segment_workspace(ws.root)
    for i, sid in enumerate(data.images["sample_id"]):
        np.testing.assert_array_equal(data.load_mask(i), truth[sid])


@pytest.mark.filterwarnings("ignore:.*fewer than 3 independent:UserWarning")
def test_config_keys_reach_the_reader(tmp_path):
    make_folders(tmp_path / "d", n=6, n_classes=3)
    config = _config(tmp_path / "ws", tmp_path / "d", format="folders", classes=["bg", "a", "b"],
                     ignore_index=200)  # fmt: skip
    with pytest.warns(UserWarning, match="unknown_value"):  # the 255 border is no class now
        ws = create_segment_workspace(config, tmp_path / "ws", False)
    assert json.loads(ws.classes_path.read_text()) == ["bg", "a", "b"]
    assert json.loads(ws.info_path.read_text())["ignore_index"] == 200
