"""Detection folds: multi-label stratification over groups, every class in every fold, seeded."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ensemblecv.errors import DataError
from ensemblecv.tasks.detect import make_shapes_dataset
from ensemblecv.tasks.detect.folds import content_groups, detection_folds


def _dataset(n_images: int, rare_in: int, seed: int = 0):
    """Images with classes 0-2 at random, class 3 in exactly ``rare_in`` images."""
    rng = np.random.default_rng(seed)
    ids = [f"img_{i:03d}.png" for i in range(n_images)]
    images = pd.DataFrame({"sample_id": ids, "path": ids, "width": 64, "height": 64, "group": ids})
    rows = []
    for i, sid in enumerate(ids):
        n = 0 if i % 7 == 3 else int(rng.integers(1, 3))  # every 7th image a background one
        for label in rng.choice(3, size=n, replace=False):
            rows.append((sid, int(label)))
        if i % (n_images // rare_in) == 0 and sum(r[1] == 3 for r in rows) < rare_in:
            rows.append((sid, 3))
    boxes = pd.DataFrame(rows, columns=["sample_id", "label"])
    boxes[["x1", "y1", "x2", "y2"]] = [1.0, 1.0, 5.0, 5.0]
    return images, boxes


def _classes_per_fold(folds: pd.DataFrame, boxes: pd.DataFrame) -> pd.DataFrame:
    merged = boxes.merge(folds[["sample_id", "fold"]], on="sample_id")
    return pd.crosstab(merged["label"], merged["fold"])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_class_in_every_fold_when_possible(seed):
    images, boxes = _dataset(60, rare_in=5, seed=seed)
    folds = detection_folds(images, boxes, n_folds=5, seed=seed)
    assert list(folds.columns) == [
        "sample_id",
        "fold",
        "label",
        "group",
    ]  # the fold table's columns
    assert sorted(folds["fold"].unique()) == [0, 1, 2, 3, 4]
    table = _classes_per_fold(folds, boxes)
    assert (table > 0).all().all(), table
    assert table.loc[3].tolist() == [1, 1, 1, 1, 1]  # the rare class: one image per fold
    sizes = folds["fold"].value_counts()
    assert sizes.between(0.7 * 12, 1.3 * 12).all(), sizes  # 60 images / 5 folds, roughly


def test_same_seed_same_folds_and_seed_changes_them():
    images, boxes = _dataset(40, rare_in=4)
    a = detection_folds(images, boxes, 4, seed=7)
    pd.testing.assert_frame_equal(a, detection_folds(images, boxes, 4, seed=7))
    # Row order of the input does not matter either.
    shuffled = detection_folds(images.iloc[::-1].reset_index(drop=True), boxes, 4, seed=7)
    assert dict(zip(shuffled.sample_id, shuffled.fold)) == dict(zip(a.sample_id, a.fold))
    assert not a["fold"].equals(detection_folds(images, boxes, 4, seed=8)["fold"])


def test_groups_stay_on_one_side():
    images, boxes = _dataset(40, rare_in=4)
    groups = [f"g{i // 4}" for i in range(len(images))]  # ten groups of four
    with pytest.warns(UserWarning, match="fewer than 5 independent"):  # class 3 is in 4 groups
        folds = detection_folds(images, boxes, 5, seed=0, groups=groups)
    assert (folds.groupby("group")["fold"].nunique() == 1).all()
    assert folds["group"].notna().all()


def test_background_images_spread_and_label_column():
    images, boxes = _dataset(40, rare_in=4)
    folds = detection_folds(images, boxes, 4, seed=0)
    background = ~folds["sample_id"].isin(boxes["sample_id"])
    assert (folds.loc[background, "label"] == -1).all()
    assert folds.loc[background, "fold"].nunique() == min(4, int(background.sum()))
    # label is the most frequent class of the image.
    top = boxes.groupby("sample_id")["label"].agg(lambda s: s.value_counts().sort_index().idxmax())
    assert (folds.set_index("sample_id").loc[top.index, "label"] == top).all()


def test_a_class_too_rare_for_every_fold_is_warned_and_too_few_images_refused():
    images, boxes = _dataset(30, rare_in=2)
    with pytest.warns(
        UserWarning, match=r"(?s)1 class\(es\) are in fewer than 5 independent images.*'3': 2"
    ):
        detection_folds(images, boxes, 5, seed=0)
    with pytest.raises(DataError, match="cannot fill 50 folds"):
        detection_folds(images, boxes, 50, seed=0)


def test_content_groups_put_identical_files_together(tmp_path):
    data = make_shapes_dataset(tmp_path / "d", n_images=6, size=16, seed=0)
    images = data.images.copy()
    images.loc[5, "path"] = images.loc[0, "path"]  # the same bytes under another id
    groups = content_groups(images)
    assert groups[5] == groups[0] == images.loc[0, "sample_id"]
    assert groups.iloc[1:5].tolist() == images["sample_id"].iloc[1:5].tolist()
    folds = detection_folds(images, data.boxes, 2, seed=0, groups=groups)
    assert folds.loc[0, "fold"] == folds.loc[5, "fold"]


def test_one_class_or_background_only_still_splits():
    images, boxes = _dataset(12, rare_in=2)
    only_background = detection_folds(images, boxes.iloc[:0], 3, seed=0)
    assert sorted(only_background["fold"].value_counts().tolist()) == [4, 4, 4]
    one_class = boxes.assign(label=0).drop_duplicates("sample_id")
    both = images[images["sample_id"].isin(one_class["sample_id"])].reset_index(drop=True)
    assert sorted(detection_folds(both, one_class, 2, seed=0)["fold"].unique()) == [0, 1]
