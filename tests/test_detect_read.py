"""Detection label readers: every format, every kind of bad label, auto-detection, strict mode."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from detect_fakes import ADD_BAD, EXIF_RED, exif_image
from PIL import Image

from ensemblecv.data.imageio import load_image
from ensemblecv.errors import DataError, ImageLoadError
from ensemblecv.tasks.detect import (
    detect_format,
    make_shapes_dataset,
    read_detection,
    write_bad_labels,
)
from ensemblecv.tasks.detect._common import BAD_REASONS

FORMATS = ["yolo", "coco", "voc", "labelme"]
XYXY = ["x1", "y1", "x2", "y2"]


def _read_quiet(path, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return read_detection(path, **kwargs)


@pytest.mark.parametrize("fmt", FORMATS)
def test_reader_gives_the_boxes_that_were_drawn(tmp_path, fmt):
    truth = make_shapes_dataset(
        tmp_path / fmt, n_images=10, size=(48, 40), classes=3, seed=1, format=fmt
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a clean dataset reads without any warning
        data = read_detection(tmp_path / fmt)
    assert data.format == fmt and detect_format(tmp_path / fmt) == fmt
    assert data.classes == truth.classes
    assert data.images["sample_id"].tolist() == truth.images["sample_id"].tolist()
    assert (data.images[["width", "height"]].to_numpy() == [48, 40]).all()
    assert data.images["path"].map(lambda p: p.startswith("/")).all()
    pd.testing.assert_series_equal(data.boxes["sample_id"], truth.boxes["sample_id"])
    assert (data.boxes["label"].to_numpy() == truth.boxes["label"].to_numpy()).all()
    np.testing.assert_allclose(data.boxes[XYXY].to_numpy(), truth.boxes[XYXY].to_numpy(), atol=1e-3)
    assert data.bad.empty and list(data.bad.columns)[:3] == ["file", "line", "reason"]
    # Background images are images, not errors.
    assert len(data.background()) == len(
        set(truth.images["sample_id"]) - set(truth.boxes["sample_id"])
    )


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_bad_label_is_listed_with_file_line_and_reason(tmp_path, fmt):
    root = tmp_path / fmt
    make_shapes_dataset(root, n_images=4, size=32, classes=3, seed=0, format=fmt)
    expected = ADD_BAD[fmt](root)
    with pytest.warns(UserWarning, match=rf"{len(expected)} bad label\(s\)") as record:
        data = read_detection(root)
    assert (
        len([w for w in record if "bad label" in str(w.message)]) == 1
    )  # one warning, not one per label
    got = sorted(
        (f, None if pd.isna(line) else int(line), r)
        for f, line, r in data.bad[["file", "line", "reason"]].itertuples(index=False)
    )
    assert got == sorted(expected, key=lambda t: (t[0], t[1] or -1, t[2]))
    assert set(data.bad["reason"]) <= set(BAD_REASONS)
    # What survives is valid: inside the image, positive size, known classes.
    size = data.images.set_index("sample_id")[["width", "height"]].reindex(data.boxes["sample_id"])
    b = data.boxes
    assert (b.x2 > b.x1).all() and (b.y2 > b.y1).all() and (b.x1 >= 0).all() and (b.y1 >= 0).all()
    assert (b.x2.to_numpy() <= size["width"].to_numpy()).all() and (
        b.y2.to_numpy() <= size["height"].to_numpy()
    ).all()
    assert b["label"].between(0, len(data.classes) - 1).all()
    # The clipped box is kept, clipped to the border.
    assert (b.x2.to_numpy() == size["width"].to_numpy()).any()


@pytest.mark.parametrize("fmt", FORMATS)
def test_strict_raises_with_the_list(tmp_path, fmt):
    root = tmp_path / fmt
    make_shapes_dataset(root, n_images=3, size=32, classes=3, format=fmt)
    ADD_BAD[fmt](root)
    with pytest.raises(DataError, match=r"bad label\(s\).*box_outside_image"):
        read_detection(root, strict=True)


def test_sources_are_never_modified(tmp_path):
    root = tmp_path / "voc"
    make_shapes_dataset(root, n_images=3, size=32, format="voc")
    ADD_BAD["voc"](root)
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    _read_quiet(root)
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("fmt", ["coco", "labelme"])
def test_exif_rotated_boxes_follow_the_picture(tmp_path, fmt):
    """Labels recording the stored size were drawn on the stored pixels: the box must land on the red block."""
    root = tmp_path / fmt
    make_shapes_dataset(root, n_images=2, size=32, format=fmt)
    ADD_BAD[fmt](root)
    data = _read_quiet(root)
    row = data.images[data.images["sample_id"].str.endswith("rotated.jpg")].iloc[0]
    assert (row.width, row.height) == (24, 40)  # shown size, EXIF applied
    box = data.boxes[data.boxes["sample_id"] == row.sample_id][XYXY].to_numpy()[0]
    pixels = load_image(row.path, 3).astype(int)
    red = (pixels[..., 0] > 200) & (pixels[..., 1] < 80)
    ys, xs = np.nonzero(red)
    np.testing.assert_allclose(box, [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], atol=1)
    assert box.tolist() != list(map(float, EXIF_RED))  # it was moved


def test_yolo_names_as_dict_or_classes_txt_and_split_layout(tmp_path):
    root = tmp_path / "yolo"
    for split in ("train", "val"):
        img = root / "images" / split / "a.png"
        img.parent.mkdir(parents=True)
        Image.new("RGB", (20, 10)).save(img)
        (root / "labels" / split).mkdir(parents=True)
        (root / "labels" / split / "a.txt").write_text("1 0.5 0.5 0.5 0.2\n")
    (root / "data.yaml").write_text("names:\n  0: cat\n  1: dog\n")
    data = read_detection(root)
    assert data.classes == ["cat", "dog"]
    assert data.images["sample_id"].tolist() == ["images/train/a.png", "images/val/a.png"]
    np.testing.assert_allclose(data.boxes[XYXY].to_numpy()[0], [5, 4, 15, 6])
    assert data.boxes["class_name"].tolist() == ["dog", "dog"]
    (root / "data.yaml").unlink()
    (root / "classes.txt").write_text("cat\ndog\n")
    assert read_detection(root).classes == ["cat", "dog"]


def test_yolo_roboflow_layout_and_polygon_lines(tmp_path):
    root = tmp_path / "rf"
    img = root / "train" / "images" / "a.png"
    img.parent.mkdir(parents=True)
    Image.new("RGB", (10, 10)).save(img)
    (root / "train" / "labels").mkdir()
    (root / "train" / "labels" / "a.txt").write_text("0 0.1 0.2 0.5 0.2 0.5 0.9 0.1 0.9\n")
    (root / "data.yaml").write_text("names: [note]\n")
    data = read_detection(root)
    assert data.format == "yolo" and data.classes == ["note"]
    np.testing.assert_allclose(data.boxes[XYXY].to_numpy()[0], [1, 2, 5, 9])


def test_coco_category_ids_with_gaps_crowd_and_background(tmp_path):
    (tmp_path / "images").mkdir()
    for name in ("a.png", "b.png"):
        Image.new("RGB", (30, 20)).save(tmp_path / "images" / name)
    doc = {
        "images": [{"id": 7, "file_name": "a.png", "width": 30, "height": 20},
                   {"id": 9, "file_name": "b.png", "width": 30, "height": 20}],
        "categories": [{"id": 12, "name": "coin"}, {"id": 3, "name": "note"}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 12, "bbox": [1, 2, 3, 4], "iscrowd": 0},
            {"id": 2, "image_id": 7, "category_id": 3, "bbox": [5, 5, 10, 10], "iscrowd": 1},
        ],
    }  # fmt: skip
    (tmp_path / "instances.json").write_text(json.dumps(doc))
    data = read_detection(tmp_path / "instances.json")
    assert data.format == "coco"
    assert data.classes == ["note", "coin"]  # category id order: 3, 12
    assert data.boxes["label"].tolist() == [1, 0] and data.boxes["iscrowd"].tolist() == [
        False,
        True,
    ]
    np.testing.assert_allclose(data.boxes[XYXY].to_numpy()[0], [1, 2, 4, 6])
    assert data.background().tolist() == ["b.png"]


def test_voc_difficult_flag_is_kept(tmp_path):
    root = tmp_path / "voc"
    make_shapes_dataset(root, n_images=2, size=32, format="voc")
    ADD_BAD["voc"](root)
    data = _read_quiet(root)
    bad_image = data.boxes[data.boxes["sample_id"] == "JPEGImages/bad.png"]
    assert bad_image["difficult"].tolist() == [
        False,
        True,
    ]  # the clipped box, then the difficult one


def test_labelme_corners_in_any_order_and_four_point_polygons(tmp_path):
    root = tmp_path / "lm"
    make_shapes_dataset(root, n_images=2, size=32, format="labelme")
    ADD_BAD["labelme"](root)
    data = _read_quiet(root)
    boxes = data.boxes[data.boxes["sample_id"] == "bad.png"]
    np.testing.assert_allclose(boxes[XYXY].to_numpy()[:2], [[20, 4, 30, 10], [2, 2, 12, 9]])


def test_labelme_image_found_beside_the_json_when_image_path_is_stale(tmp_path):
    Image.new("RGB", (16, 16)).save(tmp_path / "x.jpg")
    doc = {"shapes": [{"label": "a", "points": [[1, 1], [5, 5]], "shape_type": "rectangle"}],
           "imagePath": "C:\\Users\\me\\old\\x.jpg"}  # fmt: skip
    (tmp_path / "x.json").write_text(json.dumps(doc))
    Image.new("RGB", (16, 16)).save(tmp_path / "empty.png")
    data = read_detection(tmp_path)
    assert data.format == "labelme" and data.images["sample_id"].tolist() == ["empty.png", "x.jpg"]
    assert data.boxes["sample_id"].tolist() == ["x.jpg"]


def test_write_bad_labels_csv(tmp_path):
    root = tmp_path / "yolo"
    make_shapes_dataset(root, n_images=3, size=32, format="yolo")
    ADD_BAD["yolo"](root)
    data = _read_quiet(root)
    out = write_bad_labels(data.bad, tmp_path / "ws" / "bad_labels.csv")
    back = pd.read_csv(out)
    assert list(back.columns) == ["file", "line", "reason", "detail", "meaning"]
    assert len(back) == len(data.bad) and back["meaning"].str.len().gt(0).all()


def test_unknown_format_and_unrecognised_folder(tmp_path):
    (tmp_path / "cat").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "cat" / "a.png")
    assert detect_format(tmp_path) is None  # a classification folder is not detection data
    with pytest.raises(DataError, match="Cannot tell the label format"):
        read_detection(tmp_path)
    with pytest.raises(DataError, match=r"Unknown label format 'yolov5'.*Did you mean yolo"):
        read_detection(tmp_path, format="yolov5")
    with pytest.raises(DataError, match="does not exist"):
        read_detection(tmp_path / "nope")


def test_header_read_matches_decoded_size(tmp_path):
    """Sizes come from headers only, and agree with the decoder, EXIF included."""
    from ensemblecv.data.imageio import read_header

    path = exif_image(tmp_path / "r.jpg", orientation=8)
    width, height, orientation = read_header(path)
    assert orientation == 8 and (height, width, 3) == load_image(path, 3).shape
    # Only the header is read: a PNG cut in half still has its size (the scan catches it later).
    whole = tmp_path / "whole.png"
    Image.effect_noise((64, 48), 40).save(whole)
    (tmp_path / "half.png").write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    assert read_header(tmp_path / "half.png") == (64, 48, 1)
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(ImageLoadError, match="not_an_image"):
        read_header(tmp_path / "x.json")


def test_unlabelled_folder_as_images_and_windows_file_names_in_coco(tmp_path):
    make_shapes_dataset(tmp_path / "coco", n_images=3, size=16, format="coco")
    (tmp_path / "coco" / "images" / "sub").mkdir()
    Image.new("RGB", (16, 16)).save(tmp_path / "coco" / "images" / "sub" / "w.png")
    path = tmp_path / "coco" / "annotations.json"
    doc = json.loads(path.read_text())
    doc["images"].append({"id": 99, "file_name": "sub\\w.png", "width": 16, "height": 16})
    path.write_text(json.dumps(doc))
    data = read_detection(tmp_path / "coco")
    assert "images/sub/w.png" in data.images["sample_id"].tolist() and data.bad.empty
    unlabelled = read_detection(tmp_path / "coco" / "images", format="images")
    assert unlabelled.format == "images" and unlabelled.boxes.empty and unlabelled.classes == []
    assert sorted(unlabelled.images["sample_id"]) == [
        "img_0000.png",
        "img_0001.png",
        "img_0002.png",
        "sub/w.png",
    ]


def test_sample_table_for_the_shared_machinery(tmp_path):
    from ensemblecv.data.scan import scan_table

    truth = make_shapes_dataset(
        tmp_path / "y", n_images=8, size=16, classes=2, seed=4, background=0.4
    )
    data = read_detection(tmp_path / "y")
    table = data.sample_table()
    assert table.frame["sample_id"].tolist() == data.images["sample_id"].tolist()
    assert table.classes == truth.classes and table.frame["group"].isna().all()
    background = table.frame["sample_id"].isin(data.background())
    assert 0 < background.sum() < len(background)
    assert (table.frame.loc[background, "label"] == -1).all()
    assert (table.frame.loc[~background, "label"] >= 0).all()
    assert scan_table(table, workers=0).ok.all()  # the scan reads it like a classification table


def test_coco_split_folders_read_as_one_dataset(tmp_path):
    """Roboflow's COCO export: train/ and valid/ each hold their images and _annotations.coco.json."""
    for split, image_id in (("train", 1), ("valid", 2)):
        (tmp_path / split).mkdir()
        Image.new("RGB", (20, 20)).save(tmp_path / split / "a.jpg")
        doc = {"images": [{"id": image_id, "file_name": "a.jpg", "width": 20, "height": 20}],
               "annotations": [{"id": 1, "image_id": image_id, "category_id": 0, "bbox": [1, 1, 5, 5]}],
               "categories": [{"id": 0, "name": "notes"}, {"id": 1, "name": "won"}]}  # fmt: skip
        (tmp_path / split / "_annotations.coco.json").write_text(json.dumps(doc))
    data = read_detection(tmp_path)
    assert data.format == "coco" and data.classes == ["notes", "won"]
    assert data.images["sample_id"].tolist() == ["train/a.jpg", "valid/a.jpg"]
    assert data.boxes["sample_id"].tolist() == ["train/a.jpg", "valid/a.jpg"]
    (tmp_path / "valid" / "_annotations.coco.json").write_text(
        json.dumps({**doc, "categories": [{"id": 0, "name": "other"}]})
    )
    with pytest.raises(DataError, match="have different categories"):
        read_detection(tmp_path)


def test_config_data_format_names_the_readers():
    from ensemblecv.config import load_config
    from ensemblecv.errors import ConfigError
    from ensemblecv.tasks.detect.read import _READERS

    config = load_config(None, ["data.format=voc"], base={"data": {"train": "x"}})
    assert config.data.format == "voc"
    with pytest.raises(ConfigError, match="format"):
        load_config(None, ["data.format=kitti"], base={"data": {"train": "x"}})
    field = type(config.data).model_fields["format"]
    from ensemblecv.tasks.segment.read import FORMATS as SEGMENT_FORMATS

    # One key for both tasks: every detection reader and every segmentation layout.
    assert set(field.annotation.__args__[0].__args__) == set(_READERS) | set(SEGMENT_FORMATS)
