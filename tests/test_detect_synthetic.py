"""The synthetic shapes generator: the boxes it returns are where it drew, in every format."""

from __future__ import annotations

import numpy as np
import pytest

from ensemblecv.data.imageio import load_image
from ensemblecv.tasks.detect import make_shapes_dataset
from ensemblecv.tasks.detect.synthetic import class_color


def test_each_box_is_the_tight_bounding_box_of_its_shape(tmp_path):
    truth = make_shapes_dataset(
        tmp_path / "d", n_images=12, size=(40, 32), classes=4, seed=5, max_boxes=1
    )
    assert len(truth.boxes) >= 8
    for box in truth.boxes.itertuples(index=False):
        path = truth.images.set_index("sample_id").loc[box.sample_id, "path"]
        pixels = load_image(path, 3).astype(int)
        mask = np.abs(pixels - np.array(class_color(box.label, 4))).sum(-1) == 0
        ys, xs = np.nonzero(mask)
        assert [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] == pytest.approx(
            [box.x1, box.y1, box.x2, box.y2], abs=1
        )


def test_same_seed_same_data_and_refuses_a_non_empty_folder(tmp_path):
    a = make_shapes_dataset(tmp_path / "a", n_images=5, size=16, seed=3, format="voc")
    b = make_shapes_dataset(tmp_path / "b", n_images=5, size=16, seed=3, format="voc")
    assert a.boxes.equals(b.boxes)
    assert (tmp_path / "a" / "JPEGImages" / "img_0000.png").read_bytes() == (
        tmp_path / "b" / "JPEGImages" / "img_0000.png"
    ).read_bytes()
    with pytest.raises(FileExistsError, match="not empty"):
        make_shapes_dataset(tmp_path / "a", n_images=1)
    with pytest.raises(ValueError, match="format must be one of"):
        make_shapes_dataset(tmp_path / "c", format="kitti")
