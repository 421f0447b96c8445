"""Dedup at 100,000 images: time, peak memory, precision/recall on planted copies.

    PYTHONPATH=src python benchmarks/dedup_scale.py                     # 100k, 2 workers
    PYTHONPATH=src python benchmarks/dedup_scale.py --filler 0 --no-imagededup
    PYTHONPATH=src python benchmarks/dedup_scale.py --imagededup-python /tmp/idvenv/bin/python

The set (written once as PNGs in ImageFolder layout under ``--root``):
Fashion-MNIST train + test (70,000), plus planted copies of random originals —
500 exact, 500 horizontally flipped, 500 resized (28 → 20 → 28), 200 cross-class
(same picture with ±2 noise, filed under another class) — plus filler images
(vertically flipped, intensity-inverted Fashion-MNIST: new content, a duplicate
of nothing) up to 100,000 in all.

Our ``find_duplicates`` (flip-invariant; then flip- and resize-invariant) and imagededup's
PHash ``find_duplicates`` (its default threshold 10; installed in a separate
venv, ``python -m venv --system-site-packages /tmp/idvenv && /tmp/idvenv/bin/pip
install imagededup``) each run in a fresh child process, timed with their
peak RSS (process and its workers). Recall: planted pairs whose two images
end up as duplicates. Precision: of the reported pairs that involve a planted
copy, the share that are its planted pair (Fashion-MNIST's own duplicates
among the originals are counted separately, not as errors).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

N_PLANT = {"exact": 500, "flip": 500, "resize": 500, "cross": 200}


def build(root: Path, total: int, filler: bool, seed: int = 0) -> list[tuple[str, str, str]]:
    """Write the benchmark folder (unless complete) and return the planted (orig, copy, kind)."""
    truth_path = root.with_suffix(".truth.json")
    if root.is_dir() and truth_path.is_file():
        return [tuple(t) for t in json.loads(truth_path.read_text())]
    from ensemblecv.data.builtin import load_split

    tmp = root.with_name(root.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tr, te = load_split("fashion-mnist", "train"), load_split("fashion-mnist", "test")
    images = np.concatenate([tr.images, te.images])
    labels = np.concatenate([tr.labels, te.labels])
    classes = tr.classes
    names = [f"train_{i:05d}.png" for i in range(len(tr.labels))]
    names += [f"test_{i:05d}.png" for i in range(len(te.labels))]
    for c in classes:
        (tmp / c).mkdir(parents=True)
    rel = [f"{classes[y]}/{n}" for y, n in zip(labels, names)]
    for r, img in zip(rel, images):
        Image.fromarray(img).save(tmp / r)
    rng = np.random.default_rng(seed)
    picks = iter(rng.permutation(len(images)))
    truth = []
    for kind, n in N_PLANT.items():
        for m in range(n):
            k = next(picks)
            img, y = images[k], labels[k]
            target = classes[y]
            if kind == "exact":
                out = img
            elif kind == "flip":
                out = img[:, ::-1]
            elif kind == "resize":
                out = np.asarray(
                    Image.fromarray(img)
                    .resize((20, 20), Image.BILINEAR)
                    .resize((28, 28), Image.BILINEAR)
                )
            else:
                target = classes[(y + 1 + rng.integers(len(classes) - 1)) % len(classes)]
                out = np.clip(img.astype(int) + rng.integers(-2, 3, img.shape), 0, 255)
            q = f"{target}/copy_{kind}_{m:04d}.png"
            if kind == "exact":
                shutil.copyfile(tmp / rel[k], tmp / q)
            else:
                Image.fromarray(np.ascontiguousarray(out).astype(np.uint8)).save(tmp / q)
            truth.append((rel[k], q, kind))
    n_fill = max(0, total - len(images) - len(truth)) if filler else 0
    for m, k in enumerate(rng.permutation(len(images))[:n_fill]):
        Image.fromarray(255 - images[k][::-1]).save(
            tmp / classes[labels[k]] / f"filler_{m:05d}.png"
        )
    tmp.rename(root)
    truth_path.write_text(json.dumps(truth))
    return truth


_OURS = r"""
import json, resource, sys, time
from ensemblecv.data.samples import load_samples
from ensemblecv.dedup import find_duplicates, write_outputs
root, out, workers, resize = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
t0 = time.perf_counter()
table = load_samples(root)
res = find_duplicates(table, flip_invariant=True, resize_invariant=resize, workers=workers)
write_outputs(res, table, out, {"flip_invariant": True, "resize_invariant": resize})
dt = time.perf_counter() - t0
ids = table.frame["sample_id"].tolist()
groups = [g["sample_id"].tolist() for _, g in res.members.groupby("group")]
ru = lambda who: resource.getrusage(who).ru_maxrss / 1024
print(json.dumps({"seconds": dt, "rss_main_mb": ru(resource.RUSAGE_SELF),
                  "rss_workers_mb": ru(resource.RUSAGE_CHILDREN), "groups": groups,
                  "stats": res.stats}))
"""

_IMAGEDEDUP = r"""
import json, logging, resource, sys, time
logging.disable(logging.CRITICAL)
from imagededup.methods import PHash
t0 = time.perf_counter()
d = PHash(verbose=False).find_duplicates(image_dir=sys.argv[1], recursive=True,
                                          num_enc_workers=2, num_dist_workers=2)
dt = time.perf_counter() - t0
groups = [[k] + v for k, v in d.items() if v]
ru = lambda who: resource.getrusage(who).ru_maxrss / 1024
print(json.dumps({"seconds": dt, "rss_main_mb": ru(resource.RUSAGE_SELF),
                  "rss_workers_mb": ru(resource.RUSAGE_CHILDREN), "groups": groups}))
"""


def score(groups: list[list[str]], truth: list[tuple[str, str, str]]) -> dict:
    """Recall per kind, and precision over reported pairs that involve a planted copy."""
    pred: set[tuple[str, str]] = set()
    for g in groups:
        g = sorted(set(g))
        pred |= {(a, b) for i, a in enumerate(g) for b in g[i + 1 :]}
    want = {tuple(sorted(t[:2])) for t in truth}
    copies = {t[1] for t in truth}
    out = {}
    for kind in N_PLANT:
        kw = {tuple(sorted(t[:2])) for t in truth if t[2] == kind}
        out[f"recall_{kind}"] = round(len(kw & pred) / len(kw), 4)
    out["recall_all"] = round(len(want & pred) / len(want), 4)
    involving = {p for p in pred if p[0] in copies or p[1] in copies}
    out["precision_planted"] = round(len(involving & want) / max(1, len(involving)), 4)
    out["pairs_reported"] = len(pred)
    out["pairs_among_originals"] = len(pred - involving)
    return out


def run_child(cmd: list[str], env_src: bool = True) -> dict:
    import os

    env = dict(os.environ)
    if env_src:
        env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1] / "src")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=Path("/tmp/dedup_bench/data"))
    ap.add_argument("--total", type=int, default=100_000)
    ap.add_argument("--filler", type=int, default=1, help="0: no filler images (71,700 in all)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--imagededup-python", default="/tmp/idvenv/bin/python")
    ap.add_argument("--no-imagededup", action="store_true")
    ap.add_argument("--rerun-imagededup", action="store_true", help="ignore its cached result")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args()
    t0 = time.perf_counter()
    truth = build(args.root, args.total, bool(args.filler))
    n = sum(1 for p in args.root.rglob("*.png"))
    print(
        f"dataset: {n} images, {len(truth)} planted pairs ({time.perf_counter() - t0:.0f} s to build)"
    )
    results = {"images": n}
    for name, resize in (("ensemblecv_flip", "0"), ("ensemblecv_flip_resize", "1")):
        out_dir = args.root.parent / f"dedup_out_{name}"
        shutil.rmtree(out_dir, ignore_errors=True)
        cmd = [sys.executable, "-c", _OURS, str(args.root), str(out_dir), str(args.workers), resize]
        ours = run_child(cmd)
        results[name] = {k: ours[k] for k in ("seconds", "rss_main_mb", "rss_workers_mb", "stats")}
        results[name].update(score(ours["groups"], truth))
        print(name, json.dumps(results[name]), flush=True)
    cache = args.root.parent / "imagededup_raw.json"  # its run is slow: reuse unless --rerun
    if not args.no_imagededup:
        if cache.is_file() and not args.rerun_imagededup:
            theirs = json.loads(cache.read_text())
        elif Path(args.imagededup_python).is_file():
            try:
                theirs = run_child(
                    [args.imagededup_python, "-c", _IMAGEDEDUP, str(args.root)], False
                )
                cache.write_text(json.dumps(theirs))
            except RuntimeError as exc:
                theirs = {"error": str(exc)[-500:]}
        else:
            theirs = {"error": f"{args.imagededup_python} not found"}
        if "error" in theirs:
            results["imagededup_phash"] = theirs
        else:
            results["imagededup_phash"] = {
                k: theirs[k] for k in ("seconds", "rss_main_mb", "rss_workers_mb")
            }
            results["imagededup_phash"].update(score(theirs["groups"], truth))
    print(json.dumps(results, indent=1))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
