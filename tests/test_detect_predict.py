"""``ensemblecv predict`` on a detection workspace: two tiny trained runs (one with its hflip
TTA view) → box ensembles → CSV, COCO and YOLO outputs that keep every image and read back
through part 1's readers; the stored TTA view is the mirrored prediction mapped back."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from ensemblecv.config import load_config
from ensemblecv.errors import EnsembleCVError

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]

BASE = [
    "task=detect", "data.image_size=64", "data.folds=2", "model.name=tiny_fcos",
    "train.batch_size=8", "train.epochs=1", "train.lr=0.003", "tracking=none",
    "data.num_workers=0", "detect.score_threshold=0.05", "detect.max_detections=20",
]  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from ensemblecv.tasks.detect.ensembles import build_box_ensembles
    from ensemblecv.tasks.detect.synthetic import make_objects_dataset
    from ensemblecv.training import train

    root = tmp_path_factory.mktemp("detpred")
    make_objects_dataset(root / "train", 16, 64, seed=0, scale=(14, 30))
    make_objects_dataset(root / "test", 6, 64, seed=1, split="test", scale=(14, 30))
    ws = root / "ws"
    for name, extra in (("a", ["train.tta=[hflip]"]), ("b", ["train.seed=1"])):
        cfg = load_config(None, [*BASE, f"data.train={root / 'train'}",
                                 f"data.test={root / 'test'}", f"workspace={ws}",
                                 f"name={name}", *extra], base={})  # fmt: skip
        train(cfg, progress=False)
    small = {"iou_thrs": (0.55,), "skip_box_thrs": (0.0,), "max_rounds": 1}
    build_box_ensembles(ws, methods=["wbf"], params={"wbf": small})
    return root, ws


def test_tta_view_is_stored_in_original_pixels(trained):
    root, ws = trained
    fold = ws / "runs" / "a" / "fold_0"
    plain = pd.read_parquet(fold / "oof_detections.parquet")
    flipped = pd.read_parquet(fold / "oof_detections_hflip.parquet")
    assert len(flipped) and set(flipped["sample_id"]) <= set(plain["sample_id"]) | set(
        pd.read_parquet(fold / "oof_samples.parquet")["sample_id"]
    )
    assert (flipped["x2"] <= 64 + 1e-3).all() and (flipped["x1"] >= 0).all()
    assert (ws / "runs" / "a" / "fold_0" / "test_detections_hflip.parquet").is_file()
    assert not (ws / "runs" / "b" / "fold_0" / "oof_detections_hflip.parquet").exists()


def test_predict_writes_every_format_and_reads_back(trained, tmp_path):
    from ensemblecv.tasks.detect.predict import write_detections
    from ensemblecv.tasks.detect.read import read_detection

    root, ws = trained
    test = root / "test"
    n_images = len(list((test / "images").glob("*.png")))
    lines = write_detections(ws, str(test), tmp_path / "p.csv", "wbf", {})
    assert "images" in lines[0]
    csv = pd.read_csv(tmp_path / "p.csv", keep_default_na=False)
    assert list(csv.columns) == ["image_path", "class_name", "score", "x1", "y1", "x2", "y2"]
    assert csv["image_path"].nunique() == n_images  # also images with no detection
    assert csv["image_path"].str.startswith("images/").all()
    dets = csv[csv["class_name"] != ""]
    assert len(dets) and (dets["score"].astype(float) <= 1).all()

    write_detections(ws, str(test), tmp_path / "p.json", "wbf", {})
    doc = json.loads((tmp_path / "p.json").read_text())
    assert len(doc["images"]) == n_images and len(doc["annotations"]) == len(dets)
    # The COCO file beside the images reads back as a dataset with the same boxes.
    coco_root = tmp_path / "coco"
    shutil.copytree(test / "images", coco_root / "images")
    (coco_root / "annotations.json").write_text(json.dumps({**doc, "images": doc["images"]}))
    back = read_detection(coco_root / "annotations.json")
    assert len(back.images) == n_images
    got = back.boxes.sort_values(["sample_id", "x1", "y1"])[["x1", "y1", "x2", "y2"]].to_numpy()
    want = dets.sort_values(["image_path", "x1", "y1"])[["x1", "y1", "x2", "y2"]].to_numpy(float)
    np.testing.assert_allclose(got, want, atol=1e-3)

    out = tmp_path / "yolo"
    write_detections(ws, str(test), out, "best", {"format": "yolo"})
    assert len(list((out / "labels").glob("*.txt"))) == n_images
    shutil.copytree(test / "images", out / "images")
    back = read_detection(out)
    assert len(back.boxes) == len(dets) and len(back.bad) == 0
    np.testing.assert_allclose(
        np.sort(back.boxes["x1"].to_numpy()), np.sort(dets["x1"].to_numpy(float)), atol=1e-3
    )


def test_predict_refuses_what_it_cannot_do(trained, tmp_path):
    from ensemblecv.tasks.detect.predict import write_detections

    root, ws = trained
    with pytest.raises(EnsembleCVError, match="Cannot tell the output format"):
        write_detections(ws, str(root / "test"), tmp_path / "p.txt", "wbf", {})
    with pytest.raises(EnsembleCVError, match="TTA views are ensemble members"):
        write_detections(ws, str(root / "test"), tmp_path / "p.csv", "wbf", {"tta": "hflip"})
    with pytest.raises(EnsembleCVError, match="No ensemble 'nope'"):
        write_detections(ws, str(root / "test"), tmp_path / "p.csv", "nope", {})
