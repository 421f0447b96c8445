"""COCO metrics: parity with pycocotools on the same detections, crowd and empty images included."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from ensemblecv.tasks.detect.metrics import STAT_NAMES, coco_scores, to_coco

pytestmark = pytest.mark.usefixtures("one_thread")


def _random_case(seed: int, n_images: int = 30, num_classes: int = 3):
    """Ground truth with crowd boxes and background images; detections near and far from it."""
    rng = np.random.default_rng(seed)
    truth, dets = [], []
    for i in range(n_images):
        n = 0 if i % 6 == 0 else int(rng.integers(1, 5))
        xy = rng.uniform(0, 200, (n, 2))
        wh = rng.uniform(4, 120, (n, 2))  # spans COCO small, medium and large
        boxes = np.hstack([xy, xy + wh])
        labels = rng.integers(0, num_classes, n)
        crowd = (rng.random(n) < 0.15).astype(int)
        truth.append({"image": f"im{i}", "boxes": boxes, "labels": labels, "iscrowd": crowd})
        keep = rng.random(n) < 0.7
        hits = boxes[keep] + rng.normal(0, 4, (int(keep.sum()), 4))
        m = int(rng.integers(0, 4))
        noise_xy = rng.uniform(0, 200, (m, 2))
        noise = np.hstack([noise_xy, noise_xy + rng.uniform(4, 80, (m, 2))])
        pred = np.vstack([hits, noise]) if n or m else np.zeros((0, 4))
        pred[:, 2:] = np.maximum(pred[:, 2:], pred[:, :2] + 1)
        plabels = np.r_[labels[keep], rng.integers(0, num_classes, m)].astype(int)
        wrong = rng.random(len(pred)) < 0.2  # some hits with the wrong class
        plabels[wrong] = rng.integers(0, num_classes, int(wrong.sum()))
        k = len(pred)
        dets.append({"image": f"im{i}", "boxes": pred, "labels": plabels, "scores": rng.random(k)})
    return truth, dets


def _pycocotools(truth, dets, num_classes):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt, results = to_coco(truth, dets, num_classes)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(results)
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    precision = ev.eval["precision"]
    per_class = []
    for k in range(num_classes):
        p = precision[:, :, k, 0, -1]
        per_class.append(float(p[p > -1].mean()) if (p > -1).any() else -1.0)
    return dict(zip(STAT_NAMES, ev.stats)), per_class


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_parity_with_pycocotools_including_crowd_and_empty_images(seed):
    truth, dets = _random_case(seed)
    assert any(t["iscrowd"].any() for t in truth) and any(len(t["boxes"]) == 0 for t in truth)
    ours = coco_scores(truth, dets, 3)
    ref, ref_per_class = _pycocotools(truth, dets, 3)
    for key in STAT_NAMES:
        assert ours[key] == pytest.approx(ref[key], abs=1e-4), key
    np.testing.assert_allclose(ours["ap_per_class"], ref_per_class, atol=1e-4)
    assert 0.05 < ours["map50"] < 0.95  # a case that exercises matching, not a trivial 0 or 1


def test_perfect_detections_score_one_and_none_score_zero():
    truth, _ = _random_case(3, n_images=8)
    for t in truth:
        t["iscrowd"] = np.zeros(len(t["boxes"]), int)
    exact = [{**t, "scores": np.ones(len(t["boxes"]))} for t in truth]
    assert coco_scores(truth, exact, 3)["map"] == pytest.approx(1.0)
    assert coco_scores(truth, [], 3)["map"] == 0.0
    background = [{"image": "a", "boxes": np.zeros((0, 4)), "labels": np.zeros(0, int)}]
    assert coco_scores(background, [], 3)["map"] == -1.0  # nothing to find: undefined, as COCO
