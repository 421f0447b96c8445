"""Segmentation readers: every layout gives the exact masks, every bad input is listed with its reason."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from segment_fakes import (
    H,
    W,
    make_coco,
    make_csv,
    make_folders,
    make_voc,
    save_palette_png,
    save_rgb_png,
    tree_hash,
)

from ensemblecv.errors import DataError
from ensemblecv.tasks.segment.masks import VOC_CLASSES, MaskError, voc_palette
from ensemblecv.tasks.segment.read import detect_format, read_segmentation


def _assert_exact(data, truth):
    assert sorted(data.images["sample_id"]) == sorted(truth)
    for i, sid in enumerate(data.images["sample_id"]):
        np.testing.assert_array_equal(data.load_mask(i), truth[sid], err_msg=sid)
    counts = np.stack(
        [np.bincount(truth[s].ravel(), minlength=256) for s in data.images["sample_id"]]
    )
    np.testing.assert_array_equal(data.pixel_counts(), counts[:, : data.num_classes])
    np.testing.assert_array_equal(data.ignored, counts[:, data.ignore_index])
    np.testing.assert_array_equal(data.presence(), counts[:, : data.num_classes] > 0)


def test_voc_layout_classes_palette_and_splits(tmp_path):
    truth = make_voc(tmp_path, n=8)
    assert detect_format(tmp_path) == "voc"
    data = read_segmentation(tmp_path)
    assert data.format == "voc" and data.classes == list(VOC_CLASSES)
    np.testing.assert_array_equal(data.palette, voc_palette(21))
    assert data.ignore_index == 255 and data.ignored.sum() > 0  # the void border
    assert data.bad.empty
    _assert_exact(data, truth)
    assert data.images["split"].value_counts().to_dict() == {"train": 4, "val": 4}
    row = data.images.iloc[0]
    assert row["image_path"] == str(tmp_path / row["sample_id"])
    assert row["mask_path"].endswith("SegmentationClass/2007_000000.png")


def test_voc_split_list_reads_that_split_only(tmp_path):
    make_voc(tmp_path, n=8)
    val = tmp_path / "ImageSets" / "Segmentation" / "val.txt"
    assert detect_format(val) == "voc"
    data = read_segmentation(val)
    assert len(data) == 4 and set(data.images["split"]) == {"val"}
    assert data.root == tmp_path


def test_voc_classes_txt_overrides_the_default(tmp_path):
    truth = make_voc(tmp_path, n=6, n_classes=3)
    (tmp_path / "classes.txt").write_text("# comment\nbg\nroad\n\ncar\n", encoding="utf-8")
    data = read_segmentation(tmp_path)
    assert data.classes == ["bg", "road", "car"]
    _assert_exact(data, truth)


def test_voc_without_lists_reads_every_mask(tmp_path):
    make_voc(tmp_path, n=5, lists=False)
    data = read_segmentation(tmp_path)
    assert len(data) == 5 and "split" not in data.images


@pytest.mark.parametrize("mode", ["P", "L", "RGB"])
def test_folders_layout_in_each_mask_mode(tmp_path, mode):
    truth = make_folders(tmp_path, n=6, n_classes=4, mode=mode, subdir="a")
    colours = "\n".join(f"c{k} {r} {g} {b}" for k, (r, g, b) in enumerate(voc_palette(4)))
    if mode == "RGB":  # RGB masks need each class's colour; VOC's void colour maps to ignore
        (tmp_path / "classes.txt").write_text(colours + "\n", encoding="utf-8")
    assert detect_format(tmp_path) == "folders"
    data = read_segmentation(tmp_path, ignore_index=255)
    assert data.format == "folders" and data.bad.empty
    if mode == "RGB":
        assert data.classes == ["c0", "c1", "c2", "c3"]
        assert data.ignore_color == (224, 224, 192)  # VOC's void colour, the default
    else:
        assert data.classes == ["class_0", "class_1", "class_2", "class_3"]  # inferred
    _assert_exact(data, truth)
    assert data.images["sample_id"].iloc[0].startswith("images/a/")
    if mode == "P":  # a palette PNG's palette is the dataset's palette
        np.testing.assert_array_equal(data.palette, voc_palette(4))


def test_folders_grey_saved_as_rgb_reads_as_grey(tmp_path):
    truth = make_folders(tmp_path, n=3, n_classes=3, mode="L")
    for sid, mask in truth.items():
        stem = sid.removeprefix("images/").rsplit(".", 1)[0]
        Image.fromarray(np.repeat(mask[..., None], 3, 2), "RGB").save(
            tmp_path / "masks" / f"{stem}.png"
        )
    data = read_segmentation(tmp_path, classes=["a", "b", "c"])
    _assert_exact(data, truth)


def test_folders_matches_any_image_suffix_and_prefers_png_masks(tmp_path):
    truth = make_folders(tmp_path, n=3, image_ext=".bmp")
    # A stray JPEG preview beside a mask must not be taken for it.
    Image.new("RGB", (W, H), (9, 9, 9)).save(tmp_path / "masks" / "img_000.jpg")
    data = read_segmentation(tmp_path)
    _assert_exact(data, truth)


def test_csv_layout_with_groups(tmp_path):
    truth = make_csv(tmp_path, n=6, groups=True)
    assert detect_format(tmp_path / "index.csv") == "csv"
    data = read_segmentation(tmp_path / "index.csv", classes=["bg", "x", "y", "z"])
    assert data.format == "csv" and data.classes == ["bg", "x", "y", "z"]
    _assert_exact(data, truth)
    assert data.images.set_index("sample_id").loc["pics/p3.png", "group"] == "g1"


def test_csv_needs_both_columns(tmp_path):
    (tmp_path / "i.csv").write_text("image_path,label\na.png,1\n", encoding="utf-8")
    with pytest.raises(DataError, match="lacks the column.*mask_path"):
        read_segmentation(tmp_path / "i.csv", format="csv")


def test_coco_polygons_rle_overlaps_and_crowd(tmp_path):
    truth = make_coco(tmp_path, n=6)
    assert detect_format(tmp_path / "annotations.json") == "coco"
    data = read_segmentation(tmp_path / "annotations.json")
    assert data.classes == ["background", "cat", "dog"]  # category ids 3, 7
    assert data.bad.empty
    _assert_exact(data, truth)
    assert data.ignored[0] == 9  # the 3x3 crowd region is ignore_index
    assert data.images["mask_path"].iloc[0] == str(tmp_path / "annotations.json")


def test_images_format_reads_unlabelled_folders(tmp_path):
    make_folders(tmp_path, n=3)
    data = read_segmentation(tmp_path / "images", format="images")
    assert len(data) == 3 and data.images["mask_path"].isna().all()
    with pytest.raises(MaskError, match="mask_missing"):
        data.load_mask(0)


def test_unknown_layout_and_format_fail_clearly(tmp_path):
    (tmp_path / "x").mkdir()
    with pytest.raises(DataError, match="Cannot tell the segmentation layout"):
        read_segmentation(tmp_path / "x")
    with pytest.raises(DataError, match="Unknown segmentation format 'fodlers'.*folders"):
        read_segmentation(tmp_path, format="fodlers")
    with pytest.raises(DataError, match="does not exist"):
        read_segmentation(tmp_path / "nope")
    with pytest.raises(DataError, match="ignore_index must be 0..255"):
        read_segmentation(tmp_path, ignore_index=300)


# ------------------------------------------------------------------ bad input


def _folders_with_every_bad_file(root):
    make_folders(root, n=4, n_classes=3, mode="P")
    (root / "classes.txt").write_text("bg\na\nb\n", encoding="utf-8")
    img = lambda name, size=(W, H): Image.new("RGB", size, (1, 2, 3)).save(root / "images" / name)  # noqa: E731
    img("big.jpg")
    save_palette_png(np.zeros((H + 2, W), np.uint8), root / "masks" / "big.png")
    img("odd.jpg")
    odd = np.zeros((H, W), np.uint8)
    odd[2:4, 2:4] = 9  # 9 is no class of 3
    save_palette_png(odd, root / "masks" / "odd.png")
    img("nomask.jpg")
    save_palette_png(np.zeros((H, W), np.uint8), root / "masks" / "orphan.png")
    img("colour.jpg")
    save_rgb_png(np.ones((H, W), np.uint8), root / "masks" / "colour.png", voc_palette(3))
    img("broken.jpg")
    (root / "masks" / "broken.png").write_bytes(b"not a png at all")
    (root / "images" / "corrupt.jpg").write_bytes(b"\xff\xd8 nope")
    save_palette_png(np.zeros((H, W), np.uint8), root / "masks" / "corrupt.png")
    return {
        ("masks/big.png", "size_mismatch"),
        ("masks/odd.png", "unknown_value"),
        ("images/nomask.jpg", "mask_missing"),
        ("masks/orphan.png", "image_missing"),
        ("masks/colour.png", "rgb_without_palette"),
        ("masks/broken.png", "unreadable"),
        ("images/corrupt.jpg", "unreadable"),
    }


def test_every_bad_file_is_listed_with_its_reason_and_left_out(tmp_path):
    expected = _folders_with_every_bad_file(tmp_path)
    with pytest.warns(UserWarning, match=r"(?s)7 bad file\(s\).*These images are left out") as rec:
        data = read_segmentation(tmp_path)
    assert len(rec) == 1  # one warning with the list, not one per file
    assert set(zip(data.bad["path"], data.bad["reason"])) == expected
    assert len(data) == 4  # only the good pairs
    detail = data.bad.set_index("reason")["detail"]
    assert "mask 24x18, image 24x16" in detail["size_mismatch"]
    assert (
        "value(s) 9 (4 px) are no class (3 classes, 0..2; ignore_index 255)"
        in detail["unknown_value"]
    )
    assert "masks/nomask.png" in detail["mask_missing"]


def test_strict_aborts_listing_the_bad_files(tmp_path):
    _folders_with_every_bad_file(tmp_path)
    with pytest.raises(DataError, match=r"(?s)7 bad file\(s\).*size_mismatch.*--strict"):
        read_segmentation(tmp_path, strict=True)


def test_csv_bad_rows(tmp_path):
    make_csv(tmp_path, n=3)
    with open(tmp_path / "index.csv", "a", encoding="utf-8") as f:
        f.write(
            ",labels/p0_mask.png\nghost.png,labels/p0_mask.png\npics/p1.png,labels/p1_mask.png\n"
        )
        f.write("pics/p2.png,\n")
    with pytest.warns(UserWarning, match="bad file"):
        data = read_segmentation(tmp_path / "index.csv")
    got = sorted(zip(data.bad["reason"], data.bad["detail"].str.extract(r"line (\d+)")[0]))
    # line 5: no image_path; 6: no such image; 7, 8: images listed before (first row kept)
    assert got == [
        ("image_missing", "6"),
        ("malformed", "5"),
        ("malformed", "7"),
        ("malformed", "8"),
    ]
    assert len(data) == 3


def test_csv_missing_mask(tmp_path):
    make_csv(tmp_path, n=3)
    (tmp_path / "labels" / "p1_mask.png").unlink()
    with pytest.warns(UserWarning, match="mask_missing"):
        data = read_segmentation(tmp_path / "index.csv")
    assert data.bad["path"].tolist() == ["pics/p1.png"] and "not found" in data.bad["detail"][0]


def test_voc_listed_id_without_mask_or_image(tmp_path):
    make_voc(tmp_path, n=4)
    (tmp_path / "SegmentationClass" / "2007_000001.png").unlink()
    with open(tmp_path / "ImageSets/Segmentation/val.txt", "a", encoding="utf-8") as f:
        f.write("2099_999999\n")
    with pytest.warns(UserWarning) as rec:
        data = read_segmentation(tmp_path)
    assert len(rec) == 1
    assert sorted(zip(data.bad["path"], data.bad["reason"])) == [
        ("ImageSets/Segmentation/val.txt", "image_missing"),
        ("JPEGImages/2007_000001.jpg", "mask_missing"),
    ]
    assert len(data) == 3


def test_coco_bad_annotations(tmp_path):
    import json

    make_coco(tmp_path, n=3)
    doc = json.loads((tmp_path / "annotations.json").read_text())
    doc["annotations"] += [
        {"id": 90, "image_id": 1, "category_id": 99, "segmentation": [[0, 0, 2, 0, 2, 2]]},
        {"id": 91, "image_id": 1, "category_id": 3, "bbox": [0, 0, 2, 2]},
        {"id": 92, "image_id": 1, "category_id": 3, "segmentation": [[0, 0, 1]]},
        {
            "id": 93,
            "image_id": 2,
            "category_id": 3,
            "segmentation": {"size": [5, 5], "counts": "0150"},
        },
    ]
    doc["images"].append({"id": 50, "file_name": "gone.png", "width": 4, "height": 4})
    (tmp_path / "annotations.json").write_text(json.dumps(doc))
    with pytest.warns(UserWarning, match="bad file"):
        data = read_segmentation(tmp_path / "annotations.json")
    assert sorted(data.bad["reason"]) == [
        "image_missing", "malformed", "no_segmentation", "size_mismatch", "unknown_class",
    ]  # fmt: skip
    assert len(data) == 2  # im1's RLE is 5x5: that image is left out, the others kept


def test_binary_0_255_masks_are_warned(tmp_path):
    make_folders(tmp_path, n=2, mode="L")
    for p in (tmp_path / "masks").glob("*.png"):
        m = np.asarray(Image.open(p))
        Image.fromarray(np.where(m > 0, 255, 0).astype(np.uint8), "L").save(p)
    with pytest.warns(UserWarning, match="only 0 and 255"):
        read_segmentation(tmp_path)


def test_ignore_index_inside_the_classes_is_refused(tmp_path):
    make_folders(tmp_path, n=2, n_classes=4)
    with pytest.raises(DataError, match="ignore_index 2 is class 'c' of the 4"):
        read_segmentation(tmp_path, classes=["a", "b", "c", "d"], ignore_index=2)


def test_a_mask_changed_after_the_read_raises(tmp_path):
    make_folders(tmp_path, n=2, n_classes=3)
    data = read_segmentation(tmp_path)
    save_palette_png(np.zeros((4, 4), np.uint8), tmp_path / "masks" / "img_000.png")
    with pytest.raises(MaskError, match="size_mismatch"):
        data.load_mask(0)


@pytest.mark.parametrize("maker", [make_voc, make_folders, make_csv, make_coco])
def test_sources_are_never_modified(tmp_path, maker):
    maker(tmp_path)
    if maker is make_folders:
        _folders_with_every_bad_file(tmp_path / "bad")
    before = tree_hash(tmp_path)
    path = {make_csv: tmp_path / "index.csv", make_coco: tmp_path / "annotations.json"}.get(
        maker, tmp_path
    )
    data = read_segmentation(path)
    for i in range(len(data)):
        data.load_mask(i)
    if maker is make_folders:
        with pytest.warns(UserWarning):
            read_segmentation(tmp_path / "bad")
    assert tree_hash(tmp_path) == before
    assert isinstance(data.images, pd.DataFrame)


def test_16bit_grey_masks(tmp_path):
    truth = make_folders(tmp_path, n=3, n_classes=3, mode="L")
    for sid, mask in truth.items():
        stem = sid.removeprefix("images/").rsplit(".", 1)[0]
        Image.fromarray(mask.astype(np.uint16)).save(tmp_path / "masks" / f"{stem}.png")
    assert Image.open(tmp_path / "masks" / "img_000.png").mode.startswith("I")
    _assert_exact(read_segmentation(tmp_path), truth)
    Image.fromarray(np.full((H, W), 1000, np.uint16)).save(tmp_path / "masks" / "img_001.png")
    with pytest.warns(UserWarning, match=r"unknown_value \(I;16 mask holds values up to 1000"):
        read_segmentation(tmp_path)


def test_exif_rotated_image_with_a_stored_size_mask(tmp_path):
    from detect_fakes import EXIF_STORED, exif_image

    make_folders(tmp_path, n=2)
    exif_image(tmp_path / "images" / "turned.jpg")  # stored 40x24, shown 24x40
    save_palette_png(np.zeros(EXIF_STORED[::-1], np.uint8), tmp_path / "masks" / "turned.png")
    with pytest.warns(UserWarning, match="size_mismatch"):
        data = read_segmentation(tmp_path)
    assert (
        "EXIF orientation 6" in data.bad["detail"][0]
        and "mask 40x24, image 24x40" in data.bad["detail"][0]
    )
