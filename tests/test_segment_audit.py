"""Segmentation audit: pixel shares and image counts per class, coverage, bad masks, the grid, the CLI route."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from segment_fakes import H, W, make_folders, make_voc, save_palette_png, tree_hash
from typer.testing import CliRunner

from ensemblecv.cli import app
from ensemblecv.tasks.segment.audit import audit_segmentation
from ensemblecv.tasks.segment.overlay import overlay
from ensemblecv.tasks.segment.read import read_segmentation


def test_audit_numbers_match_the_masks(tmp_path):
    truth = make_folders(tmp_path / "d", n=8, n_classes=4, mode="P")
    (tmp_path / "d" / "classes.txt").write_text("bg\n<b>&\n고양이\nd\n", encoding="utf-8")
    before = tree_hash(tmp_path / "d")
    result = audit_segmentation(tmp_path / "d", tmp_path / "audit", grid_images=4, workers=0)
    audit = result.audit
    stack = np.stack(list(truth.values()))
    labelled = int((stack != 255).sum())
    assert audit["task"] == "segment" and audit["n_images"] == 8
    for k, name in enumerate(["bg", "<b>&", "고양이", "d"]):
        assert audit["pixels_per_class"][name] == int((stack == k).sum())
        assert audit["pixel_share"][name] == pytest.approx((stack == k).sum() / labelled)
        assert audit["images_per_class"][name] == sum(int((m == k).any()) for m in truth.values())
    assert audit["pixels"]["ignored"] == int((stack == 255).sum())
    fg = [((m != 0) & (m != 255)).mean() for m in truth.values()]
    assert audit["coverage"]["foreground"]["median"] == pytest.approx(np.median(fg), abs=1e-5)
    assert len(audit["sample_grid"]["sample_ids"]) == 4
    on_disk = json.loads(result.json_path.read_text(encoding="utf-8"))
    assert on_disk["pixels_per_class"] == audit["pixels_per_class"]
    page = result.html_path.read_text(encoding="utf-8")
    assert "Segmentation dataset audit" in page and "고양이" in page
    assert "&lt;b&gt;&amp;" in page and "<b>&" not in page  # class names escaped
    assert {p.name for p in (tmp_path / "audit" / "plots").iterdir()} == {
        "class_pixels.png", "coverage.png", "sample_grid.png",
    }  # fmt: skip
    assert tree_hash(tmp_path / "d") == before  # nothing written next to the data


def test_audit_lists_bad_masks_and_warns(tmp_path):
    make_folders(tmp_path / "d", n=6, n_classes=3)
    save_palette_png(np.zeros((3, 3), np.uint8), tmp_path / "d" / "masks" / "img_001.png")
    Image.new("RGB", (W, H)).save(tmp_path / "d" / "images" / "lonely.png")
    with pytest.warns(UserWarning, match="bad file"):
        data = read_segmentation(tmp_path / "d")
    audit = audit_segmentation(data, tmp_path / "a", grid_images=0, workers=0).audit
    assert audit["bad_masks"]["by_reason"] == {"mask_missing": 1, "size_mismatch": 1}
    assert (tmp_path / "a" / "bad_masks.csv").is_file()
    codes = {w["code"] for w in audit["warnings"]}
    assert {"bad_masks", "rare_classes"} <= codes
    assert "sample_grid" not in audit


def test_overlay_leaves_background_and_blends_classes():
    image = np.full((2, 2, 3), 100, np.uint8)
    mask = np.array([[0, 1], [255, 0]], np.uint8)
    out = overlay(image, mask, np.array([[0, 0, 0], [200, 0, 0]], np.uint8), alpha=0.5)
    assert out[0, 0].tolist() == [100, 100, 100]  # background untouched
    assert out[0, 1].tolist() == [150, 50, 50]  # half image, half class colour
    assert out[1, 0].tolist() == [162, 162, 146]  # the void colour (224, 224, 192)


def test_cli_audit_routes_segmentation_data(tmp_path):
    make_voc(tmp_path / "voc", n=6)
    result = CliRunner().invoke(
        app, ["audit", str(tmp_path / "voc"), "--out", str(tmp_path / "a"), "--workers", "0"]
    )
    assert result.exit_code == 0, result.output
    assert "Segmentation dataset audit" in result.output
    assert (
        json.loads((tmp_path / "a" / "audit.json").read_text(encoding="utf-8"))["task"] == "segment"
    )


def test_cli_audit_task_segment_reads_coco_polygons(tmp_path):
    from segment_fakes import make_coco

    make_coco(tmp_path / "c", n=4)
    args = [
        "audit",
        str(tmp_path / "c" / "annotations.json"),
        "--out",
        str(tmp_path / "a"),
        "--workers",
        "0",
    ]
    result = CliRunner().invoke(app, [*args, "--task", "segment"])
    assert result.exit_code == 0, result.output
    audit = json.loads((tmp_path / "a" / "audit.json").read_text(encoding="utf-8"))
    assert audit["task"] == "segment" and audit["classes"] == ["background", "cat", "dog"]
    bad = CliRunner().invoke(app, [*args, "--task", "segmnt"])
    assert bad.exit_code != 0 and "--task must be" in str(bad.exception)
