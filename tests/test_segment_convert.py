"""Segmentation convert: COCO polygons → PNG masks, folders ↔ VOC ↔ COCO round trips, sources untouched."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from segment_fakes import make_coco, make_csv, make_folders, make_voc, tree_hash
from typer.testing import CliRunner

from ensemblecv.cli import app
from ensemblecv.errors import DataError
from ensemblecv.tasks.segment.convert import convert_segmentation
from ensemblecv.tasks.segment.read import read_segmentation


def _masks(data):
    """Masks by sample id with the layout's image folder dropped (the id a converted layout uses)."""
    out = {}
    for i, sid in enumerate(data.images["sample_id"]):
        out[sid.split("/", 1)[1] if "/" in sid else sid] = data.load_mask(i)
    return out


def _same(a: dict, b: dict):
    assert sorted(a) == sorted(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_coco_polygons_to_png_masks_and_round_trip(tmp_path):
    truth = make_coco(tmp_path / "coco", n=6)
    before = tree_hash(tmp_path / "coco")
    res = convert_segmentation(tmp_path / "coco" / "annotations.json", "folders", tmp_path / "f")
    assert (res.source_format, res.target_format, res.n_images) == ("coco", "folders", 6)
    mask = Image.open(tmp_path / "f" / "masks" / "im0.png")
    assert mask.mode == "P"  # palette PNG of class indices
    np.testing.assert_array_equal(np.asarray(mask), truth["im0.png"])
    folders = read_segmentation(tmp_path / "f")
    assert folders.classes == ["background", "cat", "dog"]  # classes.txt keeps the names
    _same(_masks(folders), truth)
    convert_segmentation(tmp_path / "f", "voc", tmp_path / "v")
    voc = read_segmentation(tmp_path / "v")
    assert voc.format == "voc" and voc.classes == folders.classes
    _same(_masks(voc), truth)
    convert_segmentation(tmp_path / "v", "coco", tmp_path / "c")
    back = read_segmentation(tmp_path / "c" / "annotations.json")
    assert back.classes == ["background", "cat", "dog"]
    _same(_masks(back), truth)  # crowd regions come back as ignore_index
    assert tree_hash(tmp_path / "coco") == before


def test_voc_splits_survive_and_csv_converts(tmp_path):
    make_voc(tmp_path / "voc", n=6)
    convert_segmentation(tmp_path / "voc", "voc", tmp_path / "v2")
    sets = tmp_path / "v2" / "ImageSets" / "Segmentation"
    assert sorted(p.name for p in sets.iterdir()) == ["train.txt", "trainval.txt", "val.txt"]
    assert read_segmentation(sets / "val.txt").images["split"].eq("val").all()
    truth = make_csv(tmp_path / "csv", n=4)
    convert_segmentation(tmp_path / "csv" / "index.csv", "folders", tmp_path / "f")
    # A CSV's ids keep their folders below images/: images/pics/p0.png
    _same(_masks(read_segmentation(tmp_path / "f")), truth)


def test_refuses_overlap_nonempty_out_and_unknown_target(tmp_path):
    make_folders(tmp_path / "d", n=3)
    with pytest.raises(DataError, match="overlaps the source"):
        convert_segmentation(tmp_path / "d", "voc", tmp_path / "d" / "out")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(DataError, match="not empty"):
        convert_segmentation(tmp_path / "d", "voc", tmp_path / "full")
    with pytest.raises(DataError, match="Unknown segmentation target format 'yolo'"):
        convert_segmentation(tmp_path / "d", "yolo", tmp_path / "o")


def test_cli_convert_routes_masks(tmp_path):
    make_coco(tmp_path / "coco", n=3)
    src = str(tmp_path / "coco" / "annotations.json")
    result = CliRunner().invoke(
        app, ["convert", src, "--to", "folders", "--out", str(tmp_path / "f")]
    )
    assert result.exit_code == 0, result.output
    assert "from coco to folders" in result.output
    assert len(list((tmp_path / "f" / "masks").glob("*.png"))) == 3
    # The same COCO file converts as detection labels unless masks are asked for.
    result = CliRunner().invoke(
        app, ["convert", src, "--to", "voc", "--out", str(tmp_path / "det")]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "det" / "Annotations").is_dir()
    result = CliRunner().invoke(
        app, ["convert", src, "--to", "voc", "--task", "segment", "--out", str(tmp_path / "seg")]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "seg" / "SegmentationClass").is_dir()
