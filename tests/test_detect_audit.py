"""Detection audit: the numbers in audit.json, the html page, plots, bad labels and the CLI route."""

from __future__ import annotations

import json
import shutil
import warnings

import pytest
from detect_fakes import ADD_BAD
from PIL import Image
from typer.testing import CliRunner

from ensemblecv.cli import app
from ensemblecv.tasks.detect import make_shapes_dataset, read_detection
from ensemblecv.tasks.detect.audit import audit_detection


@pytest.fixture
def dataset(tmp_path):
    root = tmp_path / "voc"
    truth = make_shapes_dataset(root, n_images=12, size=(120, 80), classes=3, seed=2, format="voc")
    ADD_BAD["voc"](root)
    labelled = truth.boxes["sample_id"].iloc[0]  # an image with boxes; its copy has no XML
    shutil.copy(root / labelled, root / "JPEGImages/copy.png")
    # A header that reads but pixels that do not: only the decode scan can tell.
    whole = (root / "JPEGImages/img_0001.png").read_bytes()
    (root / "JPEGImages/truncated.png").write_bytes(whole[: len(whole) // 2])
    return root, truth


def test_audit_numbers_match_the_data(dataset, tmp_path):
    root, truth = dataset
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        data = read_detection(root)
        result = audit_detection(data, tmp_path / "audit", workers=0)
    audit = json.loads(result.json_path.read_text(encoding="utf-8"))
    b = data.boxes
    assert audit["task"] == "detect" and audit["format"] == "voc"
    assert audit["n_images"] == len(data.images) and audit["n_boxes"] == len(b)
    assert audit["boxes_per_class"] == {
        c: int((b["label"] == i).sum()) for i, c in enumerate(data.classes)
    }
    assert audit["images_per_class"]["class_0"] == b.loc[b["label"] == 0, "sample_id"].nunique()
    area = (b.x2 - b.x1) * (b.y2 - b.y1)
    assert audit["box_sizes"]["coco"] == {
        "small": int((area < 32**2).sum()),
        "medium": int(((area >= 32**2) & (area < 96**2)).sum()),
        "large": int((area >= 96**2).sum()),
    }
    assert sum(audit["box_sizes"]["coco"].values()) == len(b)
    assert audit["background"]["sample_ids"] == sorted(data.background())
    assert sum(audit["boxes_per_image"]["histogram"].values()) == len(data.images)
    assert audit["bad_labels"]["n"] == len(data.bad) == 7
    assert audit["n_difficult"] == 1
    dup = audit["duplicates"]
    pair = sorted(["JPEGImages/copy.png", truth.boxes["sample_id"].iloc[0]])
    assert [g["sample_ids"] for g in dup] == [pair]
    assert dup[0]["same_box_count"] is False  # the copy has no XML: a background image
    assert [(b["sample_id"], b["reason"]) for b in audit["bad_files"]] == [
        ("JPEGImages/truncated.png", "truncated")
    ]
    codes = {w["code"] for w in audit["warnings"]}
    assert {"bad_labels", "duplicates", "bad_files"} <= codes
    # Files: json, html, every plot, bad_labels.csv, all under the audit folder.
    for name in ("class_counts", "boxes_per_image", "box_sizes", "sample_grid"):
        assert (tmp_path / "audit" / "plots" / f"{name}.png").stat().st_size > 1000
    assert (tmp_path / "audit" / "bad_labels.csv").exists()
    page = result.html_path.read_text(encoding="utf-8")
    assert "Detection dataset audit" in page and "data:image/png;base64" in page
    assert "Bad labels (7)" in page and "Exact duplicate images (1 group(s))" in page
    assert not any(
        p.name.startswith("audit") for p in root.rglob("*")
    )  # nothing written next to the data


@pytest.mark.filterwarnings("ignore:.*bad label:UserWarning")
def test_cli_audit_routes_detection_data(dataset, tmp_path):
    root, _ = dataset
    result = CliRunner().invoke(
        app, ["audit", str(root), "--out", str(tmp_path / "a"), "--workers", "0"]
    )
    assert result.exit_code == 0, result.output
    assert "Detection dataset audit" in result.output
    assert (
        json.loads((tmp_path / "a" / "audit.json").read_text(encoding="utf-8"))["task"] == "detect"
    )


@pytest.mark.slow  # the classification audit draws its own plots (seconds on a shared CPU)
def test_cli_audit_keeps_the_classification_audit(tmp_path):
    classify = tmp_path / "folder"
    for name in ("cat/1.png", "cat/2.png", "dog/1.png"):
        (classify / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8), "red" if "cat" in name else "blue").save(classify / name)
    result = CliRunner().invoke(
        app, ["audit", str(classify), "--out", str(tmp_path / "c"), "--workers", "0"]
    )
    assert result.exit_code == 0, result.output
    audit = json.loads((tmp_path / "c" / "audit.json").read_text(encoding="utf-8"))
    assert "task" not in audit and audit["class_counts"] == {"cat": 2, "dog": 1}


def test_sample_grid_shows_every_class(tmp_path):
    classes = ["cat", "dog", "고양이", "<b>&", "e"]  # user strings: Hangul, markup
    data = make_shapes_dataset(tmp_path / "y", n_images=30, size=32, classes=classes, seed=0)
    result = audit_detection(data, tmp_path / "audit", grid_images=6, workers=0)
    page = result.html_path.read_text(encoding="utf-8")
    assert "고양이" in page and "&lt;b&gt;&amp;" in page and "<b>&" not in page
    shown = set(result.audit["sample_grid"]["sample_ids"])
    assert len(shown) == 6
    assert set(data.boxes.loc[data.boxes["sample_id"].isin(shown), "label"]) == set(range(5))
