"""Dedup vs imagededup PHash: time, peak memory, precision/recall on planted copies.

    PYTHONPATH=src python benchmarks/dedup_scale.py      # 10k, 20k, 50k, 100k; one table
    PYTHONPATH=src python benchmarks/dedup_scale.py --sizes 100000 --no-imagededup
    PYTHONPATH=src python benchmarks/dedup_scale.py --imagededup-method bktree --sizes 2000

The set (written once as PNGs in ImageFolder layout under ``--root``):
Fashion-MNIST train + test (70,000), plus planted copies of random originals —
500 exact, 500 horizontally flipped, 500 resized (28 → 20 → 28), 200 cross-class
(same picture with ±2 noise, filed under another class) — plus filler images
(vertically flipped, intensity-inverted Fashion-MNIST: new content, a duplicate
of nothing) up to 100,000 in all. Smaller sizes are random subsets (hard links)
with the same share of each kind of planted pair.

Per size: our ``find_duplicates`` (flip-invariant, resize invariance on — the
default — and off) and imagededup's PHash (``encode_images``, then
``find_duplicates(encoding_map=..., max_distance_threshold=D,
search_method='brute_force_cython')`` with its default D = 10 and a stricter
D = 4; 2 workers; installed in a separate venv: ``python -m venv
--system-site-packages /tmp/idvenv && /tmp/idvenv/bin/pip install imagededup``),
each in a fresh child process with a time limit, timed with its peak RSS (the
larger of the process and its workers). imagededup's search is quadratic with
per-query Python work (about 1 s at 2,000 images, 25× that per 5× images), so
it is skipped above ``--imagededup-max`` (default 50,000); its ``bktree`` is
~20× slower still here (distance 10 on 28-px images matches many images).
Recall: planted pairs whose two images end up as duplicates (ours: in one
group; imagededup: a reported pair). Precision: of the reported pairs that
involve a planted copy, the share that are its planted pair (pairs among the
originals — Fashion-MNIST's own near-duplicates — are counted apart).
imagededup is not flip-invariant and has no label notion.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
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


def subset(full: Path, truth: list, size: int, seed: int = 0) -> tuple[Path, list]:
    """A ``size``-image folder (hard links into ``full``) with the same share of planted copies."""
    root = full.parent / f"sub{size}"
    truth_path = root.with_suffix(".truth.json")
    if root.is_dir() and truth_path.is_file():
        return root, [tuple(t) for t in json.loads(truth_path.read_text())]
    rng = np.random.default_rng(seed)
    all_files = sorted(p.relative_to(full).as_posix() for p in full.rglob("*.png"))
    frac = size / len(all_files)
    chosen = []
    for kind in N_PLANT:
        rows = [t for t in truth if t[2] == kind]
        k = max(1, round(len(rows) * frac))
        chosen += [rows[m] for m in sorted(rng.permutation(len(rows))[:k])]
    copies = {t[1] for t in truth}
    keep = {x for t in chosen for x in t[:2]}
    others = [f for f in all_files if f not in copies and f not in keep]
    keep |= {others[m] for m in rng.permutation(len(others))[: max(0, size - len(keep))]}
    tmp = root.with_name(root.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    for f in sorted(keep):
        (tmp / f).parent.mkdir(parents=True, exist_ok=True)
        os.link(full / f, tmp / f)
    tmp.rename(root)
    truth_path.write_text(json.dumps(chosen))
    return root, [tuple(t) for t in chosen]


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
root, method, thr = sys.argv[1], sys.argv[2], int(sys.argv[3])
t0 = time.perf_counter()
ph = PHash(verbose=False)
enc = ph.encode_images(image_dir=root, recursive=True, num_enc_workers=2)
t1 = time.perf_counter()
d = ph.find_duplicates(encoding_map=enc, max_distance_threshold=thr, search_method=method,
                       num_dist_workers=2)
t2 = time.perf_counter()
groups = [[k, x] for k, v in d.items() for x in v]  # the pairs it reports
ru = lambda who: resource.getrusage(who).ru_maxrss / 1024
print(json.dumps({"seconds": t2 - t0, "encode_s": t1 - t0, "search_s": t2 - t1,
                  "rss_main_mb": ru(resource.RUSAGE_SELF),
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


def run_child(cmd: list[str], env_src: bool = True, timeout: float | None = None) -> dict:
    """Run ``cmd`` in its own session; on timeout kill its process group (pool workers too)."""
    env = dict(os.environ)
    if env_src:
        env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1] / "src")
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        start_new_session=True,
    )  # fmt: skip
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return {"error": f"timeout after {timeout:.0f} s"}
    if proc.returncode != 0:
        return {"error": err[-1500:]}
    return json.loads(out.strip().splitlines()[-1])


def _fmt(r: dict | None) -> list[str]:
    if r is None:
        return ["-"] * 9
    if "error" in r:
        return [r["error"].strip().splitlines()[-1][:40]] + [""] * 8
    mem = max(r["rss_main_mb"], r["rss_workers_mb"])
    return (
        [f"{r['seconds']:.0f}", f"{mem:.0f}"]
        + [
            f"{r[k]:.3f}"
            for k in ("recall_exact", "recall_flip", "recall_resize", "recall_cross", "recall_all")
        ]
        + [f"{r['precision_planted']:.3f}", str(r["pairs_reported"])]
    )


def print_table(results: dict) -> None:
    head = ["images", "tool", "time s", "peak MiB", "R exact", "R flip", "R resize", "R cross",
            "R all", "precision", "pairs"]  # fmt: skip
    rows = [head]
    for size, by_tool in results.items():
        for tool, r in by_tool.items():
            rows.append([str(size), tool] + _fmt(r))
    widths = [max(len(r[c]) for r in rows) for c in range(len(head))]
    for k, r in enumerate(rows):
        print(" | ".join(x.ljust(w) for x, w in zip(r, widths)))
        if k == 0:
            print("-|-".join("-" * w for w in widths))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=Path("/tmp/dedup_bench/data"))
    ap.add_argument("--total", type=int, default=100_000)
    ap.add_argument("--filler", type=int, default=1, help="0: no filler images (71,700 in all)")
    ap.add_argument("--sizes", default="10000,20000,50000,100000", help="subsets to measure")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--imagededup-python", default="/tmp/idvenv/bin/python")
    ap.add_argument("--imagededup-method", default="brute_force_cython", help="or bktree (slower)")
    ap.add_argument(
        "--imagededup-threshold", default="10,4", help="max Hamming distances (its default: 10)"
    )
    ap.add_argument("--imagededup-timeout", type=float, default=900.0, help="seconds per run")
    ap.add_argument("--imagededup-max", type=int, default=50_000, help="skip it above this")
    ap.add_argument("--no-imagededup", action="store_true")
    ap.add_argument(
        "--no-resize-run", action="store_true", help="skip the --no-resize-invariant run"
    )
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args()
    t0 = time.perf_counter()
    truth = build(args.root, args.total, bool(args.filler))
    n = sum(1 for p in args.root.rglob("*.png"))
    print(f"dataset: {n} images, {len(truth)} planted pairs ({time.perf_counter() - t0:.0f} s)")
    results: dict = {}
    for size in [int(x) for x in args.sizes.split(",") if x]:
        root, tr = (args.root, truth) if size >= n else subset(args.root, truth, size)
        size = min(size, n)
        res = results[size] = {}
        configs = [("ensemblecv", "1")] + (
            [] if args.no_resize_run else [("ensemblecv no-resize", "0")]
        )
        for name, resize in configs:
            out_dir = args.root.parent / f"dedup_out_{size}_{resize}"
            shutil.rmtree(out_dir, ignore_errors=True)
            cmd = [sys.executable, "-c", _OURS, str(root), str(out_dir), str(args.workers), resize]
            r = run_child(cmd)
            if "error" not in r:
                r.update(score(r.pop("groups"), tr))
            res[name] = r
            print(size, name, json.dumps(r), flush=True)
        if args.no_imagededup or size > args.imagededup_max:
            continue
        if not Path(args.imagededup_python).is_file():
            res["imagededup PHash"] = {"error": f"{args.imagededup_python} not found"}
            continue
        for thr in args.imagededup_threshold.split(","):
            cmd = [args.imagededup_python, "-c", _IMAGEDEDUP, str(root), args.imagededup_method,
                   thr]  # fmt: skip
            r = run_child(cmd, False, args.imagededup_timeout)
            if "error" not in r:
                r.update(score(r.pop("groups"), tr))
            res[f"imagededup PHash d<={thr}"] = r
            print(size, "imagededup", thr, json.dumps(r), flush=True)
    print()
    print_table(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
