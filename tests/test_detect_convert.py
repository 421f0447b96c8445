"""``convert``: lossless between YOLO, COCO and VOC, ids from 1, background kept, safe output."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from detect_fakes import ADD_BAD
from typer.testing import CliRunner

from ensemblecv.cli import app
from ensemblecv.errors import DataError
from ensemblecv.tasks.detect import make_shapes_dataset, read_detection
from ensemblecv.tasks.detect._common import layout_key
from ensemblecv.tasks.detect.convert import convert_detection

XYXY = ["x1", "y1", "x2", "y2"]


def _keyed(data):
    """Boxes keyed by the image's path inside its layout, which conversion keeps."""
    b = data.boxes.copy()
    b["key"] = [layout_key(s).as_posix() for s in b["sample_id"]]
    return b.sort_values(["key", "label", "x1", "y1", "x2", "y2"], kind="stable").reset_index(
        drop=True
    )


def test_round_trip_yolo_coco_voc_yolo_keeps_every_box(tmp_path):
    # Odd sizes so normalised coordinates are not round numbers.
    start = make_shapes_dataset(tmp_path / "yolo", n_images=12, size=(61, 47), classes=4, seed=3)
    convert_detection(tmp_path / "yolo", "coco", tmp_path / "coco")
    convert_detection(tmp_path / "coco", "voc", tmp_path / "voc")
    convert_detection(tmp_path / "voc", "yolo", tmp_path / "back")
    first, last = read_detection(tmp_path / "yolo"), read_detection(tmp_path / "back")
    assert (
        read_detection(tmp_path / "coco").format == "coco"
        and read_detection(tmp_path / "voc").format == "voc"
    )
    assert last.classes == first.classes == start.classes
    assert sorted(layout_key(s).as_posix() for s in last.images["sample_id"]) == sorted(
        layout_key(s).as_posix() for s in first.images["sample_id"]
    )  # background images too
    a, b = _keyed(first), _keyed(last)
    assert len(a) == len(b) == len(start.boxes)
    assert (a["key"] == b["key"]).all() and (a["label"] == b["label"]).all()
    np.testing.assert_allclose(a[XYXY].to_numpy(), b[XYXY].to_numpy(), atol=1e-3)


def test_coco_ids_start_at_one_and_are_unique(tmp_path):
    make_shapes_dataset(tmp_path / "voc", n_images=6, size=32, classes=3, format="voc")
    convert_detection(tmp_path / "voc", "coco", tmp_path / "coco")
    doc = json.loads((tmp_path / "coco" / "annotations.json").read_text())
    for key in ("images", "annotations", "categories"):
        ids = [x["id"] for x in doc[key]]
        assert min(ids) == 1 and len(set(ids)) == len(ids), key
    assert {a["image_id"] for a in doc["annotations"]} <= {i["id"] for i in doc["images"]}
    assert all(a["category_id"] in (1, 2, 3) for a in doc["annotations"])


@pytest.mark.filterwarnings(
    "ignore:.*bad label:UserWarning"
)  # the EXIF image, listed on every read
def test_crowd_and_difficult_survive_coco_voc_and_yolo_warns(tmp_path):
    root = tmp_path / "coco"
    make_shapes_dataset(root, n_images=3, size=32, format="coco")
    ADD_BAD["coco"](root)  # adds a crowd box among the bad ones
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        src = read_detection(root)
        convert_detection(root, "voc", tmp_path / "voc")
        back = read_detection(tmp_path / "voc")
    assert back.boxes["iscrowd"].sum() == src.boxes["iscrowd"].sum() == 1
    with pytest.warns(UserWarning, match=r"1 crowd box\(es\) left out"):
        result = convert_detection(tmp_path / "voc", "yolo", tmp_path / "yolo")
    assert result.n_boxes == len(src.boxes) - 1


def test_refuses_non_empty_or_overlapping_output_and_unknown_target(tmp_path):
    make_shapes_dataset(tmp_path / "src", n_images=2, size=16)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(DataError, match="not empty"):
        convert_detection(tmp_path / "src", "coco", tmp_path / "out")
    with pytest.raises(DataError, match="overlaps the source"):
        convert_detection(tmp_path / "src", "coco", tmp_path / "src" / "converted")
    with pytest.raises(DataError, match=r"Unknown target format 'labelme'"):
        convert_detection(tmp_path / "src", "labelme", tmp_path / "new")
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"


def test_hard_links_and_the_cli(tmp_path):
    make_shapes_dataset(tmp_path / "lm", n_images=3, size=16, format="labelme")
    result = CliRunner().invoke(
        app,
        ["convert", str(tmp_path / "lm"), "--to", "yolo", "--out", str(tmp_path / "y"), "--link"],
    )
    assert result.exit_code == 0, result.output
    assert "from labelme to yolo" in result.output
    image = next((tmp_path / "y" / "images").glob("*.png"))
    assert image.stat().st_nlink == 2  # hard-linked, not copied
    again = CliRunner().invoke(
        app, ["convert", str(tmp_path / "lm"), "--to", "coco", "--out", str(tmp_path / "y")]
    )
    assert again.exit_code != 0


def test_split_folders_become_data_yaml_entries_and_stem_clashes_are_refused(tmp_path):
    import yaml
    from PIL import Image

    src = tmp_path / "coco"
    (src / "images" / "train").mkdir(parents=True)
    (src / "images" / "valid").mkdir()
    for name in ("train/a.png", "valid/b.png"):
        Image.new("RGB", (8, 8)).save(src / "images" / name)
    doc = {"images": [{"id": 1, "file_name": "train/a.png"}, {"id": 2, "file_name": "valid/b.png"}],
           "annotations": [], "categories": [{"id": 1, "name": "x"}]}  # fmt: skip
    (src / "annotations.json").write_text(json.dumps(doc))
    convert_detection(src, "yolo", tmp_path / "yolo")
    spec = yaml.safe_load((tmp_path / "yolo" / "data.yaml").read_text())
    assert spec["train"] == "images/train" and spec["val"] == "images/valid" and "path" not in spec
    assert spec["names"] == {0: "x"}
    Image.new("RGB", (8, 8)).save(src / "images" / "train" / "a.jpg")
    doc["images"].append({"id": 3, "file_name": "train/a.jpg"})
    (src / "annotations.json").write_text(json.dumps(doc))
    with pytest.raises(DataError, match=r"(?s)differ only in their extension.*images/train/a\.jpg"):
        convert_detection(src, "voc", tmp_path / "voc")


def test_round_trip_keeps_fractional_pixels_on_a_large_image(tmp_path):
    from PIL import Image

    src = tmp_path / "coco"
    (src / "images").mkdir(parents=True)
    Image.new("RGB", (3001, 2003), "white").save(src / "images" / "big.png")
    box = [1234.5678, 987.6543, 765.4321, 512.3456]  # x, y, w, h with 4 decimals
    doc = {"images": [{"id": 1, "file_name": "big.png", "width": 3001, "height": 2003}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": box, "iscrowd": 0}],
           "categories": [{"id": 1, "name": "x"}]}  # fmt: skip
    (src / "annotations.json").write_text(json.dumps(doc))
    convert_detection(src, "voc", tmp_path / "voc", link=True)
    convert_detection(tmp_path / "voc", "yolo", tmp_path / "yolo", link=True)
    convert_detection(tmp_path / "yolo", "coco", tmp_path / "back", link=True)
    back = json.loads((tmp_path / "back" / "annotations.json").read_text())["annotations"][0]
    np.testing.assert_allclose(back["bbox"], box, atol=1e-3)
