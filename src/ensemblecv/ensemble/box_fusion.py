"""Box fusion on whole datasets at once: WBF, NMS, soft-NMS and NMW, vectorised across images.

Every method clusters the boxes of one (image, class) *group* greedily in
descending score order, which is sequential inside a group. Instead of a
Python loop per box (what ensemble-boxes does: per-box prefiltering, and a
cluster average recomputed from the whole list at each match, quadratic in
the cluster size), step ``r`` here handles the ``r``-th box of *every* group
at once: groups are sorted by size and processed in chunks of padded arrays,
so the Python loop runs ``max group size`` times per chunk and numpy does the
rest. Results equal ensemble-boxes' to float precision
(``tests/test_box_fusion.py`` checks 1e-6); ``benchmarks/box_ensembles.py``
times both.

Coordinates are normalised to [0, 1] per image (``x1 y1 x2 y2``); scores must
lie in [0, 1]. Differences from ensemble-boxes, all deliberate: bad input
raises :class:`BoxFusionError` (it prints and calls ``exit()``, or silently
resets weights); fused scores are clipped to 1 (its weighted ``avg`` can exceed
1 when one member puts several boxes into one cluster); soft-NMS returns the
decayed scores (``rescore=True``; ensemble-boxes returns the original score of
every survivor, ``rescore=False`` reproduces that).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import EnsembleCVError

METHODS = ("wbf", "nms", "soft_nms", "nmw")
CONF_TYPES = ("avg", "max", "box_and_model_avg", "absent_model_aware_avg")
#: Padded cells (groups × boxes) per chunk: bounds memory to a few tens of MB.
_CHUNK_CELLS = 1 << 19


class BoxFusionError(EnsembleCVError, ValueError):
    """Bad input to a box fusion (shapes, weights, NaN, scores outside [0, 1])."""


@dataclass
class Boxes:
    """Detections of one member over many images: flat arrays, coordinates normalised to [0, 1]."""

    image: np.ndarray  # int64 image index
    label: np.ndarray  # int64 class
    score: np.ndarray  # float64 in [0, 1]
    box: np.ndarray  # (n, 4) float64 x1 y1 x2 y2

    def __len__(self) -> int:
        return len(self.score)

    @classmethod
    def empty(cls) -> Boxes:
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), np.zeros((0, 4)))

    def take(self, keep) -> Boxes:
        return Boxes(self.image[keep], self.label[keep], self.score[keep], self.box[keep])


def check_boxes(b: Boxes, name: str = "member") -> Boxes:
    """Validated copy: equal lengths, finite values, scores in [0, 1]; coordinates are clipped
    to [0, 1] and ordered, zero-area boxes dropped (as ensemble-boxes does, without printing)."""
    n = len(b.score)
    box = np.asarray(b.box, np.float64).reshape(-1, 4)
    if not (len(b.image) == len(b.label) == n == len(box)):
        raise BoxFusionError(
            f"{name}: {len(box)} boxes, {n} scores, {len(b.label)} labels, {len(b.image)} image "
            "indices; they must be equally long."
        )
    score = np.asarray(b.score, np.float64)
    if not (np.isfinite(box).all() and np.isfinite(score).all()):
        raise BoxFusionError(f"{name}: boxes or scores hold NaN or infinity.")
    if n and (score.min() < 0 or score.max() > 1):
        raise BoxFusionError(
            f"{name}: scores must lie in [0, 1] (found {score.min():.4g}..{score.max():.4g})."
        )
    box = np.clip(box, 0.0, 1.0)
    box = np.concatenate(
        [np.minimum(box[:, :2], box[:, 2:]), np.maximum(box[:, :2], box[:, 2:])], axis=1
    )
    keep = (box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1]) > 0
    return Boxes(
        np.asarray(b.image, np.int64)[keep],
        np.asarray(b.label, np.int64)[keep],
        score[keep],
        box[keep],
    )


def _check_weights(weights, n_members: int) -> np.ndarray:
    if weights is None:
        return np.ones(n_members)
    w = np.asarray(weights, np.float64).reshape(-1)
    if len(w) != n_members:
        raise BoxFusionError(f"{len(w)} weights for {n_members} members; give one per member.")
    if not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise BoxFusionError(f"weights must be finite, >= 0 and not all 0; got {w.tolist()}.")
    return w


def fuse(
    members: list[Boxes],
    method: str = "wbf",
    weights=None,
    iou_thr: float = 0.55,
    skip_box_thr: float = 0.0,
    conf_type: str = "avg",
    sigma: float = 0.5,
    thresh: float = 0.001,
    soft_method: str = "gaussian",
    rescore: bool = True,
    allows_overflow: bool = False,
    weight_norm: str = "sum",
) -> Boxes:
    """Fuse the detections of ``members`` (same images, same classes) with ``method``.

    ``weights`` (one per member, >= 0) scale each member's scores; ``iou_thr`` is
    the IoU above which (strictly) a box joins a cluster (WBF, NMW) or is
    suppressed (NMS; soft-NMS's linear decay threshold); ``skip_box_thr`` drops
    boxes scoring below it first (all methods). WBF's ``conf_type`` is one of
    :data:`CONF_TYPES` (``avg``: the cluster's summed weighted score over the
    summed member weights, so a box seen by one of three equal members keeps a
    third of its score). Soft-NMS: ``soft_method`` ``gaussian`` (``sigma``) or
    ``linear``, survivors score above ``thresh``. NMS and soft-NMS scale scores by
    ``w / sum(w)`` (``weight_norm="sum"``, ensemble-boxes) or ``w / max(w)`` (``"max"``:
    the heaviest member keeps its scores, so fits with different weights stay on one
    scale — what pooled nested scoring needs). Returns fused boxes sorted by image,
    then descending score.
    """
    if method not in METHODS:
        raise BoxFusionError(f"Unknown box fusion {method!r}; choose one of {', '.join(METHODS)}.")
    if conf_type not in CONF_TYPES:
        raise BoxFusionError(
            f"Unknown conf_type {conf_type!r}; choose one of {', '.join(CONF_TYPES)}."
        )
    if soft_method not in ("gaussian", "linear"):
        raise BoxFusionError(f"soft_method must be gaussian or linear, got {soft_method!r}.")
    if not 0 <= iou_thr <= 1:
        raise BoxFusionError(f"iou_thr must lie in [0, 1], got {iou_thr}.")
    if not members:
        raise BoxFusionError("No members to fuse.")
    given = weights is not None
    w = _check_weights(weights, len(members))
    members = [check_boxes(m, f"member {i}") for i, m in enumerate(members)]
    if method == "nmw":
        w = w / w.max()
    if method in ("nms", "soft_nms"):
        # As ensemble-boxes: weights given scale scores by w / sum(w); none given, no scaling.
        if weight_norm not in ("sum", "max"):
            raise BoxFusionError(f"weight_norm must be sum or max, got {weight_norm!r}.")
        factor = (w / (w.sum() if weight_norm == "sum" else w.max())) if given else w
    else:
        factor = w
    parts = []
    for t, (m, f) in enumerate(zip(members, factor)):
        keep = m.score >= skip_box_thr
        if w[t] == 0 or not keep.any():
            continue
        parts.append((m.take(keep), t, f, w[t]))
    if not parts:
        return Boxes.empty()
    image = np.concatenate([p[0].image for p in parts])
    label = np.concatenate([p[0].label for p in parts])
    ws = np.concatenate([p[0].score * p[2] for p in parts])
    raw = np.concatenate([p[0].score for p in parts])
    box = np.concatenate([p[0].box for p in parts])
    model = np.concatenate([np.full(len(p[0]), p[1], np.int64) for p in parts])
    wt = np.concatenate([np.full(len(p[0]), p[3]) for p in parts])
    # Groups = (image, label); inside a group, descending weighted score.
    order = np.lexsort((-ws, label, image))
    image, label, ws, raw, box, model, wt = (
        a[order] for a in (image, label, ws, raw, box, model, wt)
    )
    key = np.r_[True, (image[1:] != image[:-1]) | (label[1:] != label[:-1])]
    starts = np.flatnonzero(key)
    lengths = np.diff(np.r_[starts, len(ws)])
    if method == "soft_nms":
        out = _soft_nms(starts, lengths, box, ws, iou_thr, sigma, thresh, soft_method)
        keep, new_score = out
        result = Boxes(image[keep], label[keep], new_score if rescore else ws[keep], box[keep])
    else:
        result = _cluster(
            starts, lengths, image, label, box, ws, model, wt, method, iou_thr, conf_type,
            w, allows_overflow,
        )  # fmt: skip
    result.score = np.minimum(result.score, 1.0)
    order = np.lexsort((-result.score, result.image))
    return result.take(order)


def _chunks(lengths: np.ndarray):
    """Group indices, longest first, in chunks of at most ``_CHUNK_CELLS`` padded cells."""
    by_len = np.argsort(-lengths, kind="stable")
    i = 0
    while i < len(by_len):
        width = int(lengths[by_len[i]])
        n = max(1, _CHUNK_CELLS // max(width, 1))
        yield by_len[i : i + n], width
        i += n


def _pad(starts, lengths, groups, width, *arrays):
    """(g, width[, ...]) views of ``arrays`` for ``groups``; ``valid`` marks real cells."""
    pos = np.arange(width)
    valid = pos[None, :] < lengths[groups][:, None]
    idx = np.where(valid, starts[groups][:, None] + pos[None, :], 0)
    return idx, valid, [a[idx] for a in arrays]


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes ``a`` (..., 4) and ``b`` (..., 4), broadcast; as ensemble-boxes (no epsilon)."""
    ix = np.maximum(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0)
    iy = np.maximum(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0)
    inter = ix * iy
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    with np.errstate(invalid="ignore", divide="ignore"):
        return inter / (area_a + area_b - inter)


def _cluster(starts, lengths, image, label, box, ws, model, wt, method, iou_thr, conf_type, w,
             allows_overflow) -> Boxes:  # fmt: skip
    """WBF / NMW / NMS: greedy clustering, the r-th box of every group of a chunk per step."""
    out_img, out_lab, out_score, out_box = [], [], [], []
    for groups, width in _chunks(lengths):
        g = len(groups)
        idx, valid, (b, s, m, wgt) = _pad(starts, lengths, groups, width, box, ws, model, wt)
        rep = np.zeros((g, width, 4))  # what a new box is matched against
        sum_sb = np.zeros((g, width, 4))  # WBF: sum of score * box; NMW: score * iou * box
        sum_s = np.zeros((g, width))  # WBF: sum of scores; NMW: sum of score * iou
        max_s = np.zeros((g, width))
        count = np.zeros((g, width))
        sum_w = np.zeros((g, width))
        models = np.zeros((g, width), np.int64)  # bit mask of the members in the cluster
        first = np.zeros((g, width))  # score of the cluster's first (best) box
        n_cl = np.zeros(g, np.int64)
        rows = np.arange(g)
        for r in range(width):
            act = valid[:, r]
            a = int(act.sum())  # groups are longest first: the active ones are a prefix
            nb, ns = b[:a, r], s[:a, r]
            if r == 0:
                target = np.zeros(a, np.int64)
                matched = np.zeros(a, bool)
                iou_best = np.ones(a)
            else:
                ious = _iou(rep[:a, :r], nb[:, None, :])
                ious[np.arange(r)[None, :] >= n_cl[:a, None]] = -1.0
                best = ious.argmax(1)
                iou_best = ious[rows[:a], best]
                matched = iou_best > iou_thr
                target = np.where(matched, best, n_cl[:a])
            ra = rows[:a]
            new = ~matched
            n_cl[:a] += new
            first[ra[new], target[new]] = ns[new]
            weight = ns * (iou_best if method == "nmw" else 1.0)
            if method == "nmw":
                weight = np.where(new, ns, weight)  # the main box: IoU with itself is 1
            sum_sb[ra, target] += weight[:, None] * nb
            sum_s[ra, target] += weight
            max_s[ra, target] = np.maximum(max_s[ra, target], ns)
            count[ra, target] += 1
            sum_w[ra, target] += wgt[:a, r]
            models[ra, target] |= np.left_shift(1, m[:a, r] % 63)
            if method == "wbf":
                rep[ra, target] = sum_sb[ra, target] / sum_s[ra, target][:, None]
            else:
                rep[ra[new], target[new]] = nb[new]
        cl = np.arange(width)[None, :] < n_cl[:, None]
        gi, ci = np.nonzero(cl)
        head = idx[gi, 0]
        out_img.append(image[head])
        out_lab.append(label[head])
        if method == "nms":
            out_box.append(rep[gi, ci])
            out_score.append(first[gi, ci])
            continue
        out_box.append(sum_sb[gi, ci] / sum_s[gi, ci][:, None])
        if method == "nmw":
            out_score.append(first[gi, ci])
            continue
        n, sw = count[gi, ci], sum_w[gi, ci]
        conf = max_s[gi, ci] if conf_type == "max" else sum_s[gi, ci] / n
        if conf_type == "box_and_model_avg":
            mask = models[gi, ci]
            present = sum(((mask >> t) & 1) * w[t] for t in range(len(w)))
            conf = conf * n / sw * present / w.sum()
        elif conf_type == "absent_model_aware_avg":
            mask = models[gi, ci]
            absent = sum((1 - ((mask >> t) & 1)) * w[t] for t in range(len(w)))
            conf = conf * n / (sw + absent)
        elif conf_type == "max":
            conf = conf / w.max()
        elif allows_overflow:
            conf = conf * n / w.sum()
        else:
            conf = conf * np.minimum(len(w), n) / w.sum()
        out_score.append(conf)
    return Boxes(
        np.concatenate(out_img),
        np.concatenate(out_lab),
        np.concatenate(out_score),
        np.concatenate(out_box).reshape(-1, 4),
    )


def _soft_nms(starts, lengths, box, ws, iou_thr, sigma, thresh, soft_method):
    """Soft-NMS per group, all groups of a chunk per step: (kept flat indices, decayed scores)."""
    keep_idx, keep_score = [], []
    for groups, width in _chunks(lengths):
        idx, valid, (b, s) = _pad(starts, lengths, groups, width, box, ws)
        s = np.where(valid, s, -np.inf)
        todo = valid.copy()
        rows = np.arange(len(groups))
        for r in range(width):
            a = int(valid[:, r].sum())
            if a == 0:
                break
            cur = np.where(todo[:a], s[:a], -np.inf)
            pick = cur.argmax(1)
            todo[rows[:a], pick] = False
            ious = _iou(b[:a], b[rows[:a], pick][:, None, :])
            if soft_method == "linear":
                decay = np.where(ious > iou_thr, 1.0 - ious, 1.0)
            else:
                decay = np.exp(-(ious * ious) / sigma)
            with np.errstate(invalid="ignore"):  # padding cells: -inf * 0, never used
                s[:a] = np.where(todo[:a], s[:a] * decay, s[:a])
        kept = valid & (s > thresh)
        keep_idx.append(idx[kept])
        keep_score.append(s[kept])
    return np.concatenate(keep_idx), np.concatenate(keep_score)


# ----------------------------------------------------------- one image, ensemble-boxes' API


def _one_image(boxes_list, scores_list, labels_list) -> list[Boxes]:
    if not (len(boxes_list) == len(scores_list) == len(labels_list)):
        raise BoxFusionError(
            f"{len(boxes_list)} box lists, {len(scores_list)} score lists and "
            f"{len(labels_list)} label lists; give one of each per member."
        )
    out = []
    for i, (b, s, lab) in enumerate(zip(boxes_list, scores_list, labels_list)):
        b = np.asarray(b, np.float64).reshape(-1, 4)
        s, lab = np.asarray(s, np.float64).reshape(-1), np.asarray(lab).reshape(-1)
        if not (len(b) == len(s) == len(lab)):
            raise BoxFusionError(f"member {i}: {len(b)} boxes, {len(s)} scores, {len(lab)} labels.")
        out.append(Boxes(np.zeros(len(s), np.int64), lab.astype(np.int64), s, b))
    return out


def _unpack(b: Boxes):
    return b.box, b.score, b.label.astype(np.float64)


def weighted_boxes_fusion(boxes_list, scores_list, labels_list, weights=None, iou_thr=0.55,
                          skip_box_thr=0.0, conf_type="avg", allows_overflow=False):  # fmt: skip
    """ensemble-boxes' ``weighted_boxes_fusion`` for one image: ``(boxes, scores, labels)``."""
    members = _one_image(boxes_list, scores_list, labels_list)
    return _unpack(fuse(members, "wbf", weights, iou_thr, skip_box_thr, conf_type,
                        allows_overflow=allows_overflow))  # fmt: skip


def nms(boxes_list, scores_list, labels_list, iou_thr=0.5, weights=None):
    """ensemble-boxes' ``nms`` for one image."""
    return _unpack(fuse(_one_image(boxes_list, scores_list, labels_list), "nms", weights, iou_thr))


def soft_nms(boxes_list, scores_list, labels_list, method=2, iou_thr=0.5, sigma=0.5,
             thresh=0.001, weights=None, rescore=True):  # fmt: skip
    """ensemble-boxes' ``soft_nms`` for one image (``method`` 1 linear, 2 gaussian)."""
    kind = {1: "linear", 2: "gaussian"}.get(method)
    if kind is None:
        raise BoxFusionError(f"soft_nms method must be 1 (linear) or 2 (gaussian), got {method}.")
    members = _one_image(boxes_list, scores_list, labels_list)
    return _unpack(fuse(members, "soft_nms", weights, iou_thr, sigma=sigma, thresh=thresh,
                        soft_method=kind, rescore=rescore))  # fmt: skip


def non_maximum_weighted(boxes_list, scores_list, labels_list, weights=None, iou_thr=0.55,
                         skip_box_thr=0.0):  # fmt: skip
    """ensemble-boxes' ``non_maximum_weighted`` for one image."""
    members = _one_image(boxes_list, scores_list, labels_list)
    return _unpack(fuse(members, "nmw", weights, iou_thr, skip_box_thr))


__all__ = [
    "CONF_TYPES", "METHODS", "BoxFusionError", "Boxes", "check_boxes", "fuse", "nms",
    "non_maximum_weighted", "soft_nms", "weighted_boxes_fusion",
]  # fmt: skip
