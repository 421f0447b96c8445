"""``demo --task detect``: registered, its configs valid, its built-in set has exact boxes."""

from __future__ import annotations

import numpy as np
from PIL import Image

from ensemblecv.demo import list_demo_tasks
from ensemblecv.tasks.detect.demo import DETECTORS, FAST, detect_demo_configs
from ensemblecv.tasks.detect.read import read_detection
from ensemblecv.tasks.detect.synthetic import make_objects_dataset


def test_detect_demo_is_registered_with_valid_configs(tmp_path):
    assert "detect" in list_demo_tasks()
    fast = detect_demo_configs(tmp_path, True, tmp_path / "train", tmp_path / "test")
    full = detect_demo_configs(tmp_path, False, tmp_path / "train", tmp_path / "test")
    assert len(fast) == FAST["detectors"] and len(full) == len(DETECTORS) == 3
    assert len({c.model.name for c in full}) == 3  # three different detectors
    assert all(c.task == "detect" and c.train.tta == ["hflip"] for c in full)
    assert len({(c.data.folds, c.data.fold_seed, c.data.train) for c in full}) == 1  # one split


def test_objects_dataset_has_exact_boxes(tmp_path):
    data = make_objects_dataset(tmp_path / "d", 12, 64, seed=3, scale=(14, 30))
    back = read_detection(tmp_path / "d")
    assert len(back.images) == 12 and len(back.boxes) == len(data.boxes) > 0
    cols = ["x1", "y1", "x2", "y2"]
    np.testing.assert_allclose(
        back.boxes.sort_values(["sample_id", "x1"])[cols].to_numpy(),
        data.boxes.sort_values(["sample_id", "x1"])[cols].to_numpy(),
        atol=1e-4,
    )
    # Exact: the item's colour reaches every edge of its box (where no other item overlaps).
    first = data.boxes.iloc[0]
    img = np.asarray(Image.open(tmp_path / "d" / first["sample_id"]).convert("RGB"), np.int64)
    x1, y1, x2, y2 = (int(first[c]) for c in cols)
    assert 14 <= max(x2 - x1, y2 - y1) <= 30 and img[y1:y2, x1:x2].std() > 5
    test = make_objects_dataset(tmp_path / "t", 4, 64, seed=3, split="test", scale=(14, 30))
    assert test.classes == data.classes == ["0", "1", "4", "7"]
