"""COCO detection metrics through faster-coco-eval (a maintained COCOeval, same numbers).

:func:`coco_scores` takes ground truth and detections as plain per-image
dicts (boxes ``x1 y1 x2 y2`` in pixels, labels ``0..C-1``) and returns
mAP@[.5:.95] (``map``), mAP@.5 (``map50``), mAP@.75, small/medium/large AP,
AR@1/10/100 with its size split and, optionally, AP per class — the twelve
numbers of ``COCOeval.summarize()`` under stable names. Crowd boxes
(``iscrowd``) are matched but never count as misses, as in COCO; images
without boxes are background images whose detections are false positives.
``tests/test_detect_metrics.py`` checks parity with pycocotools to 1e-4.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pandas as pd

#: Names of COCOeval's ``stats`` vector, in order.
STAT_NAMES = (
    "map", "map50", "map75", "map_small", "map_medium", "map_large",
    "ar1", "ar10", "ar100", "ar_small", "ar_medium", "ar_large",
)  # fmt: skip


def to_coco(truth: list[dict], dets: list[dict], num_classes: int) -> tuple[dict, list[dict]]:
    """Ground truth as a COCO dataset dict and detections as a COCO result list (1-based ids)."""
    ids = {}
    images, annotations, results = [], [], []
    for t in truth:
        ids.setdefault(t["image"], len(ids) + 1)
        images.append(
            {"id": ids[t["image"]], "width": t.get("width", 0), "height": t.get("height", 0)}
        )
        boxes = np.asarray(t["boxes"], np.float64).reshape(-1, 4)
        crowd = np.asarray(t.get("iscrowd", np.zeros(len(boxes))), dtype=int).reshape(-1)
        for box, label, c in zip(boxes, np.asarray(t["labels"]).reshape(-1), crowd):
            w, h = box[2] - box[0], box[3] - box[1]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": ids[t["image"]],
                    "category_id": int(label) + 1,
                    "bbox": [float(box[0]), float(box[1]), float(w), float(h)],
                    "area": float(w * h),
                    "iscrowd": int(c),
                }
            )
    for d in dets:
        if d["image"] not in ids:
            continue  # a detection on an image outside the ground truth is not scored
        boxes = np.asarray(d["boxes"], np.float64).reshape(-1, 4)
        for box, label, score in zip(boxes, np.asarray(d["labels"]).reshape(-1), d["scores"]):
            results.append(
                {
                    "image_id": ids[d["image"]],
                    "category_id": int(label) + 1,
                    "bbox": [
                        float(box[0]),
                        float(box[1]),
                        float(box[2] - box[0]),
                        float(box[3] - box[1]),
                    ],
                    "score": float(score),
                }
            )
    categories = [{"id": k + 1, "name": str(k)} for k in range(num_classes)]
    return {"images": images, "annotations": annotations, "categories": categories}, results


def coco_scores(
    truth: list[dict], dets: list[dict], num_classes: int, per_class: bool = True
) -> dict:
    """COCO box metrics (see the module docstring); ``ap_per_class`` is a list, -1 for no truth."""
    gt, results = to_coco(truth, dets, num_classes)
    empty = {k: 0.0 for k in STAT_NAMES}
    if not gt["annotations"]:
        out = {k: -1.0 for k in STAT_NAMES}  # nothing to find: undefined, as COCOeval says
        return {**out, "ap_per_class": [-1.0] * num_classes} if per_class else out
    if not results:
        return {**empty, "ap_per_class": [0.0] * num_classes} if per_class else empty
    from faster_coco_eval import COCO, COCOeval_faster

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(gt)
        coco_dt = coco_gt.loadRes(results)
        ev = COCOeval_faster(coco_gt, coco_dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    out = {k: float(v) for k, v in zip(STAT_NAMES, ev.stats)}
    if per_class:
        out["ap_per_class"] = _ap_per_class(ev.eval["precision"], num_classes)
    return out


def _ap_per_class(precision: np.ndarray, num_classes: int) -> list[float]:
    """AP@[.5:.95] per class from COCOeval's precision array (T, R, K, area=all, maxDets=100)."""
    out = []
    for k in range(num_classes):
        p = precision[:, :, k, 0, -1]
        valid = p[p > -1]
        out.append(float(valid.mean()) if valid.size else -1.0)
    return out


def detections_to_dicts(frame: pd.DataFrame, image_ids) -> list[dict]:
    """A detections table (sample_id, label, score, x1..y2) → per-image dicts for every id."""
    groups = {sid: part for sid, part in frame.groupby("sample_id", sort=False)}
    out = []
    for sid in image_ids:
        part = groups.get(sid)
        if part is None:
            out.append({"image": sid, "boxes": np.zeros((0, 4)), "labels": [], "scores": []})
            continue
        out.append(
            {
                "image": sid,
                "boxes": part[["x1", "y1", "x2", "y2"]].to_numpy(np.float64),
                "labels": part["label"].to_numpy(),
                "scores": part["score"].to_numpy(),
            }
        )
    return out


def truth_to_dicts(boxes: pd.DataFrame, images: pd.DataFrame) -> list[dict]:
    """The box table + image table → per-image ground-truth dicts (background images included)."""
    groups = {sid: part for sid, part in boxes.groupby("sample_id", sort=False)}
    out = []
    for sid, w, h in zip(images["sample_id"], images["width"], images["height"]):
        part = groups.get(sid)
        entry = {"image": sid, "width": int(w), "height": int(h)}
        if part is None:
            entry.update(boxes=np.zeros((0, 4)), labels=np.zeros(0, int), iscrowd=np.zeros(0, int))
        else:
            crowd = part["iscrowd"] if "iscrowd" in part else pd.Series(0, index=part.index)
            entry.update(
                boxes=part[["x1", "y1", "x2", "y2"]].to_numpy(np.float64),
                labels=part["label"].to_numpy(),
                iscrowd=crowd.fillna(0).astype(int).to_numpy(),
            )
        out.append(entry)
    return out


__all__ = ["STAT_NAMES", "coco_scores", "detections_to_dicts", "to_coco", "truth_to_dicts"]
