"""Box ensembles: what tuned fusion gains over the best single detector, and how fast it fuses.

1. mAP (``--workspace`` with >= 3 finished detection runs, e.g. the full
   ``ensemblecv demo --task detect`` workspace): the pooled OOF mAP of every member,
   the untuned baselines (every member, equal weights, default thresholds: what
   "concatenate the weights and run NMS" does), and NMS / soft-NMS / WBF / NMW
   tuned on OOF detections and scored nested (fitted without the fold they score).
2. Time: fusing 10,000 images × 5 members (``--boxes`` per member and image, 4
   classes) with ``ensemblecv.ensemble.fuse`` (all images at once) vs ensemble-boxes
   (one call per image, its documented use), same input, with the largest
   difference of their outputs on the images both fused.

    python benchmarks/box_ensembles.py --workspace runs/demo-detect
    python benchmarks/box_ensembles.py --skip-map --ref-images 2000   # time only
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np


def map_table(workspace: str, small: bool) -> None:
    from ensemblecv.ensemble import fuse
    from ensemblecv.ensemble.boxes import MapScorer, pack
    from ensemblecv.tasks.detect.ensembles import fit_box_method
    from ensemblecv.tasks.detect.store import DetectionStore

    store = DetectionStore(workspace)
    names = store.names
    plain = [n for n in names if "+" not in n]
    if len(plain) < 3:
        print(f"note: {workspace} has {len(plain)} detectors (the issue asks for >= 3)")
    truth = store.truth()
    scorer = MapScorer(truth)
    images = truth.images.reset_index(drop=True)
    print(f"workspace {workspace}: {len(images)} OOF images, {len(store.boxes)} boxes, "
          f"members {', '.join(names)}")  # fmt: skip
    print(f"{'entry':34s} {'mAP':>7s} {'mAP@.5':>7s}  protocol")
    singles = {}
    for n in names:
        s = scorer.scores(pack(store.oof(n).sort_values(["sample_id", "score"],
                               ascending=[True, False]), images))  # fmt: skip
        singles[n] = s
        print(f"{n:34s} {s['map']:7.4f} {s['map50']:7.4f}  single, pooled OOF")
    best = max(singles, key=lambda n: singles[n]["map"])
    packed = [pack(store.oof(n), images) for n in names]
    for method, iou in (("nms", 0.5), ("wbf", 0.55)):
        s = scorer.scores(fuse(packed, method, None, iou))
        print(f"{method + ' untuned (all, equal)':34s} {s['map']:7.4f} {s['map50']:7.4f}  "
              f"iou {iou}, no fit")  # fmt: skip
    params = {"iou_thrs": (0.5, 0.6), "skip_box_thrs": (0.0,), "max_rounds": 2} if small else None
    for method in ("nms", "soft_nms", "wbf", "nmw"):
        t0 = time.perf_counter()
        res = fit_box_method(store, method, names, "map", params)
        cv, opt = res["cv"], res["optimistic"]
        kept = [f"{n}:{w:.2f}" for n, w in zip(names, res["fitted"].weights_) if w > 0]
        print(f"{method + ' tuned':34s} {cv['map']:7.4f} {cv['map50']:7.4f}  nested "
              f"(optimistic {opt['map']:.4f}; {time.perf_counter() - t0:.0f}s; {' '.join(kept)})")  # fmt: skip
    print(f"best single member: {best} {singles[best]['map']:.4f}")


def synthetic(n_images: int, n_members: int, per_image: int, seed: int = 0):
    """Members that see the same objects with jitter, plus their own false positives."""
    from ensemblecv.ensemble import Boxes

    rng = np.random.default_rng(seed)
    n_obj = per_image // 2
    centers = rng.random((n_images, n_obj, 2)) * 0.8 + 0.1
    sizes = rng.random((n_images, n_obj, 2)) * 0.15 + 0.03
    labels = rng.integers(0, 4, (n_images, n_obj))
    members = []
    for _ in range(n_members):
        c = centers + rng.normal(0, 0.01, centers.shape)
        s = sizes * rng.normal(1, 0.05, sizes.shape)
        fp_c = rng.random((n_images, per_image - n_obj, 2))
        fp_s = rng.random((n_images, per_image - n_obj, 2)) * 0.1 + 0.01
        c, s = np.concatenate([c, fp_c], 1), np.concatenate([s, fp_s], 1)
        box = np.clip(np.concatenate([c - s / 2, c + s / 2], -1), 0, 1)
        lab = np.concatenate([labels, rng.integers(0, 4, (n_images, per_image - n_obj))], 1)
        score = np.concatenate([rng.uniform(0.4, 1, (n_images, n_obj)),
                                rng.uniform(0, 0.5, (n_images, per_image - n_obj))], 1)  # fmt: skip
        image = np.repeat(np.arange(n_images), per_image)
        members.append(Boxes(image, lab.reshape(-1), score.reshape(-1), box.reshape(-1, 4)))
    return members


def timing(n_images: int, n_members: int, per_image: int, ref_images: int) -> None:
    import ensemble_boxes as eb

    from ensemblecv.ensemble import fuse

    members = synthetic(n_images, n_members, per_image)
    total = sum(len(m) for m in members)
    print(f"\nfusion time: {n_images} images x {n_members} members x {per_image} boxes "
          f"= {total} boxes, 4 classes")  # fmt: skip
    ref_n = min(ref_images, n_images)
    ours_fn = {"wbf": "weighted_boxes_fusion", "nms": "nms", "soft_nms": "soft_nms",
               "nmw": "non_maximum_weighted"}  # fmt: skip
    for method in ("wbf", "nms", "soft_nms", "nmw"):
        t0 = time.perf_counter()
        out = fuse(members, method, None, 0.55 if method in ("wbf", "nmw") else 0.5,
                   rescore=False)  # fmt: skip
        ours = time.perf_counter() - t0
        ref = getattr(eb, ours_fn[method])
        per = [[m.take(m.image == i) for m in members] for i in range(ref_n)]
        kw = {"iou_thr": 0.55 if method in ("wbf", "nmw") else 0.5}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref([p.box for p in per[0]], [p.score for p in per[0]], [p.label for p in per[0]], **kw)
            t0 = time.perf_counter()
            diff = 0.0
            for i, p in enumerate(per):
                b, s, lab = ref(
                    [q.box for q in p], [q.score for q in p], [q.label for q in p], **kw
                )
                got = out.take(out.image == i)
                if len(b) == len(got):
                    o1 = np.lexsort((b[:, 0], s, lab))
                    o2 = np.lexsort((got.box[:, 0], got.score, got.label))
                    diff = max(diff, float(np.abs(b[o1] - got.box[o2]).max(initial=0)),
                               float(np.abs(s[o1] - got.score[o2]).max(initial=0)))  # fmt: skip
                else:
                    diff = float("inf")
            ref_t = (time.perf_counter() - t0) * n_images / ref_n
        extra = "" if ref_n == n_images else f" (timed on {ref_n} images, scaled)"
        print(f"{method:9s} ensemblecv {ours:7.2f}s   ensemble-boxes {ref_t:8.2f}s{extra}   "
              f"x{ref_t / ours:6.1f}   max |diff| {diff:.1e}")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workspace", default="runs/demo-detect")
    ap.add_argument("--skip-map", action="store_true")
    ap.add_argument("--skip-time", action="store_true")
    ap.add_argument("--small", action="store_true", help="the --fast demo's smaller search")
    ap.add_argument("--images", type=int, default=10000)
    ap.add_argument("--members", type=int, default=5)
    ap.add_argument("--boxes", type=int, default=20, help="per member and image")
    ap.add_argument("--ref-images", type=int, default=10000)
    args = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    if not args.skip_map:
        map_table(args.workspace, args.small)
    if not args.skip_time:
        timing(args.images, args.members, args.boxes, args.ref_images)


if __name__ == "__main__":
    main()
