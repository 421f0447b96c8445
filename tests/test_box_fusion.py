"""Box fusion: parity with ensemble-boxes to 1e-6, hand-made cases computed directly, errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from ensemblecv.ensemble import box_fusion as bf
from ensemblecv.ensemble.box_fusion import Boxes, BoxFusionError, fuse

eb = pytest.importorskip("ensemble_boxes")


def _member(rng, n, classes=3):
    c = rng.random((n, 2)) * 0.8
    wh = rng.random((n, 2)) * 0.3 + 0.02
    return np.concatenate([c, np.minimum(c + wh, 1)], 1), rng.random(n), rng.integers(0, classes, n)


def _canon(boxes, scores, labels):
    boxes, scores, labels = (np.asarray(a, np.float64) for a in (boxes, scores, labels))
    order = np.lexsort((boxes[:, 0], scores, labels))
    return np.c_[labels[order], scores[order], boxes[order]]


def _ours_soft(*args, **kw):
    return bf.soft_nms(*args, rescore=False, **kw)  # ensemble-boxes keeps the original scores


CASES = [
    ("wbf", eb.weighted_boxes_fusion, bf.weighted_boxes_fusion, {"iou_thr": 0.5, "skip_box_thr": 0.1}),
    ("wbf_max", eb.weighted_boxes_fusion, bf.weighted_boxes_fusion, {"iou_thr": 0.4, "conf_type": "max"}),
    ("wbf_box_model", eb.weighted_boxes_fusion, bf.weighted_boxes_fusion,
     {"iou_thr": 0.4, "conf_type": "box_and_model_avg"}),
    ("wbf_absent", eb.weighted_boxes_fusion, bf.weighted_boxes_fusion,
     {"iou_thr": 0.6, "conf_type": "absent_model_aware_avg"}),
    ("nms", eb.nms, bf.nms, {"iou_thr": 0.5}),
    ("soft_gauss", eb.soft_nms, _ours_soft, {"iou_thr": 0.5, "sigma": 0.3, "thresh": 0.01}),
    ("soft_linear", eb.soft_nms, _ours_soft, {"method": 1, "iou_thr": 0.3, "thresh": 0.01}),
    ("nmw", eb.non_maximum_weighted, bf.non_maximum_weighted, {"iou_thr": 0.5}),
]  # fmt: skip


@pytest.mark.parametrize("name,ref,ours,kw", CASES, ids=[c[0] for c in CASES])
def test_parity_with_ensemble_boxes(name, ref, ours, kw):
    rng = np.random.default_rng(0)
    compared = 0
    for _ in range(40):
        m = int(rng.integers(1, 5))
        members = [_member(rng, int(rng.integers(0, 25))) for _ in range(m)]
        if not sum(len(s) for _, s, _ in members):
            continue
        weights = list(rng.random(m) + 0.5)
        args = [[mem[i] for mem in members] for i in range(3)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = ref(*[[a.copy() for a in arg] for arg in args], weights=weights, **kw)
        got = ours(*args, weights=weights, **kw)
        if name == "wbf" and len(expected[1]) and expected[1].max() > 1:
            continue  # its overflow above 1: ours clips (tested below)
        a, b = _canon(*expected), _canon(*got)
        assert a.shape == b.shape
        np.testing.assert_allclose(b, a, atol=1e-6)
        compared += len(a)
    assert compared > 100


def _one(boxes, scores, labels=None):
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    labels = np.zeros(len(boxes), np.int64) if labels is None else np.asarray(labels)
    return Boxes(np.zeros(len(boxes), np.int64), labels, np.asarray(scores, np.float64), boxes)


A = [[0.1, 0.1, 0.4, 0.4], [0.5, 0.5, 0.9, 0.8]]


@pytest.mark.parametrize("method", ["wbf", "nmw"])
def test_two_identical_members_fuse_to_the_member(method):
    member = _one(A, [0.9, 0.6])
    out = fuse([member, member], method)
    np.testing.assert_allclose(out.box, np.asarray(A), atol=1e-12)
    np.testing.assert_allclose(out.score, [0.9, 0.6], atol=1e-12)


def test_nms_of_identical_members_keeps_the_member_with_scores_times_weight_share():
    member = _one(A, [0.9, 0.6])
    out = fuse([member, member], "nms", weights=[1, 1])
    np.testing.assert_allclose(out.box, np.asarray(A))
    np.testing.assert_allclose(out.score, [0.45, 0.3])  # w / sum(w): ranking is unchanged
    by_max = fuse([member, member], "nms", weights=[2, 2], weight_norm="max")
    np.testing.assert_allclose(by_max.score, [0.9, 0.6])  # the heaviest member keeps its scale
    plain = fuse([member, member], "nms")  # no weights given: scores unscaled, as ensemble-boxes
    np.testing.assert_allclose(plain.score, [0.9, 0.6])
    soft = fuse([member, member], "soft_nms", sigma=0.5)
    # The duplicate survives, decayed by exp(-IoU^2 / sigma) = exp(-2).
    np.testing.assert_allclose(sorted(soft.score)[-2:], [0.6, 0.9])
    assert np.isclose(soft.score, 0.9 * np.exp(-2)).sum() == 1


def test_a_box_seen_by_one_of_three_members_keeps_a_third_of_its_score():
    seen = _one([[0.1, 0.1, 0.3, 0.3]], [0.9])
    out = fuse([seen, _one([], []), _one([], [])], "wbf", conf_type="avg")
    np.testing.assert_allclose(out.score, [0.3])
    out = fuse([seen, _one([], []), _one([], [])], "wbf", weights=[2, 1, 1])
    np.testing.assert_allclose(out.score, [0.9 * 2 / 4])
    both = _one([[0.1, 0.1, 0.3, 0.3]], [0.6])
    out = fuse([seen, both, _one([], [])], "wbf")  # two of three: (0.9 + 0.6) / 3
    np.testing.assert_allclose(out.score, [0.5])
    np.testing.assert_allclose(out.box[0], [0.1, 0.1, 0.3, 0.3])


def test_wbf_box_is_the_score_weighted_mean_and_classes_never_mix():
    a = _one([[0.0, 0.0, 0.4, 0.4], [0.0, 0.0, 0.4, 0.4]], [0.8, 0.5], labels=[0, 1])
    b = _one([[0.1, 0.1, 0.5, 0.5]], [0.2], labels=[0])
    out = fuse([a, b], "wbf", iou_thr=0.3)
    cls0 = out.label == 0
    np.testing.assert_allclose(out.box[cls0][0], [0.02, 0.02, 0.42, 0.42])
    assert (out.label == 1).sum() == 1


def test_scores_never_exceed_one():
    # One heavy member with two boxes in one cluster: ensemble-boxes' avg gives 1.35.
    heavy = _one([[0.1, 0.1, 0.5, 0.5], [0.11, 0.1, 0.5, 0.5]], [0.9, 0.9])
    light = _one([], [])
    out = fuse([heavy, light], "wbf", weights=[3, 1])
    assert len(out) == 1 and out.score.max() <= 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = eb.weighted_boxes_fusion(
            [heavy.box, np.zeros((0, 4))], [heavy.score, np.zeros(0)],
            [heavy.label, np.zeros(0)], weights=[3, 1],
        )[1]  # fmt: skip
    assert ref.max() > 1  # the reference overflows here


def test_many_images_at_once_equal_image_by_image():
    rng = np.random.default_rng(1)
    members = []
    for _ in range(3):
        parts = [_member(rng, int(rng.integers(0, 15))) for _ in range(20)]
        members.append(
            Boxes(
                np.concatenate([np.full(len(p[1]), i) for i, p in enumerate(parts)]),
                np.concatenate([p[2] for p in parts]),
                np.concatenate([p[1] for p in parts]),
                np.concatenate([p[0] for p in parts]),
            )
        )
    for method in ("wbf", "nms", "soft_nms", "nmw"):
        batch = fuse(members, method, iou_thr=0.5)
        for i in range(20):
            single = fuse([m.take(m.image == i) for m in members], method, iou_thr=0.5)
            got = batch.take(batch.image == i)
            np.testing.assert_allclose(_canon(got.box, got.score, got.label),
                                       _canon(single.box, single.score, single.label))  # fmt: skip


def test_bad_input_raises_clear_errors():
    good = _one(A, [0.9, 0.6])
    with pytest.raises(BoxFusionError, match="2 weights for 1 members"):
        fuse([good], weights=[1, 2])
    with pytest.raises(BoxFusionError, match="not all 0"):
        fuse([good, good], weights=[0, 0])
    with pytest.raises(BoxFusionError, match=r"scores must lie in \[0, 1\]"):
        fuse([_one(A, [1.5, 0.2])])
    with pytest.raises(BoxFusionError, match="NaN"):
        fuse([_one([[0, 0, np.nan, 1]], [0.5])])
    with pytest.raises(BoxFusionError, match="Unknown box fusion 'wfb'"):
        fuse([good], "wfb")
    with pytest.raises(BoxFusionError, match="conf_type"):
        fuse([good], conf_type="mean")
    with pytest.raises(BoxFusionError, match="2 boxes, 1 scores"):
        bf.weighted_boxes_fusion([np.asarray(A)], [[0.5]], [[0, 0]])
    with pytest.raises(BoxFusionError, match="one of each per member"):
        bf.nms([np.asarray(A)], [[0.5, 0.4]], [])
    assert len(fuse([_one([], [])])) == 0  # nothing to fuse is no error
