"""Wall time of 4 small (config, fold) jobs: one after another vs on a local Ray instance.

2 configs (cnn_small, mnist_cnn) × 2 folds of a Fashion-MNIST subset (digits
when it is not installed). The workspace is prepared once beforehand so both
sides time training only. Each mode runs in its own subprocess:

- ``serial-1t``: ``ensemblecv train a.yaml b.yaml`` with 1 torch thread;
- ``serial``: the same with torch's default threads (all cores);
- ``ray``: ``--launcher ray --cpus-per-job 1`` on a local Ray instance
  (its start-up time is included in the wall time and also shown apart).

    python benchmarks/ray_vs_serial.py [--n 4000] [--epochs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml


def _dataset() -> str:
    from ensemblecv.data.builtin import fashion_mnist_available

    return "fashion-mnist" if fashion_mnist_available() else "digits"


def write_configs(root: Path, ws: str, n: int, epochs: int) -> list[Path]:
    paths = []
    for model in ("cnn_small", "mnist_cnn"):
        cfg = {
            "workspace": ws,
            "name": model,
            "data": {
                "train": _dataset(),
                "image_size": 28,
                "folds": 2,
                "limit": n,
                "num_workers": 0,
            },
            "model": {"name": model},
            "train": {"epochs": epochs, "batch_size": 128},
            "tracking": {"backend": "none"},
        }
        path = root / f"{model}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        paths.append(path)
    return paths


def run(mode: str, root: Path, paths: list[Path]) -> dict:
    env = dict(os.environ)
    cmd = [sys.executable, "-m", "ensemblecv", "train", *map(str, paths), "--no-progress"]
    if mode == "serial-1t":
        env["OMP_NUM_THREADS"] = "1"
    if mode == "ray":
        cmd += ["--launcher", "ray", "--cpus-per-job", "1"]
    start = time.perf_counter()
    out = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    ws = next(root.glob("ws_*"))
    train_s = [json.loads(p.read_text())["seconds"] for p in ws.glob("runs/*/fold_*/done.json")]
    return {"mode": mode, "wall_s": wall, "jobs": len(train_s), "sum_job_train_s": sum(train_s)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4000, help="training images (2 folds)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--modes", default="serial-1t,serial,ray")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="ecv_ray_bench_"))
    # Prepare the workspace once (scan, folds) and copy it, so no mode pays for it.
    prep = base / "prep"
    prep.mkdir()
    write_configs(prep, "ws_prep", args.n, args.epochs)
    from ensemblecv.config import load_config
    from ensemblecv.training.inputs import open_workspace

    os.chdir(prep)
    open_workspace(load_config(prep / "cnn_small.yaml", []), progress=False)
    os.chdir(base)
    rows = []
    for mode in args.modes.split(","):
        root = base / mode
        root.mkdir()
        shutil.copytree(prep / "ws_prep", root / f"ws_{mode}")
        paths = write_configs(root, f"ws_{mode}", args.n, args.epochs)
        rows.append(run(mode, root, paths))
        print(f"{mode}: {rows[-1]['wall_s']:.1f} s", flush=True)
    ray_start = _ray_start_seconds() if "ray" in args.modes else None
    print(f"\n{args.n} images, 2 folds, {args.epochs} epochs, 4 jobs, {os.cpu_count()} CPUs")
    print(f"{'mode':<10} {'wall s':>8} {'Σ job train s':>14} {'speed-up vs serial':>19}")
    serial = {r["mode"]: r["wall_s"] for r in rows}
    for r in rows:
        ref = serial.get("serial")
        speed = f"{ref / r['wall_s']:.2f}×" if ref else "-"
        print(f"{r['mode']:<10} {r['wall_s']:>8.1f} {r['sum_job_train_s']:>14.1f} {speed:>19}")
    if "serial-1t" in serial and "ray" in serial:
        print(f"ray vs serial-1t: {serial['serial-1t'] / serial['ray']:.2f}×")
    if ray_start is not None:
        print(f"(ray.init + shutdown alone: {ray_start:.1f} s, included in ray's wall time)")
    shutil.rmtree(base, ignore_errors=True)


def _ray_start_seconds() -> float:
    code = "import ray,time;t=time.perf_counter();ray.init(num_cpus=2,include_dashboard=False);ray.shutdown();print(time.perf_counter()-t)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
