"""Detection training throughput: ensemblecv's engine vs a plain torchvision training loop.

Same detector (built by ``ensemblecv.tasks.detect.models.create_detector``, so
the same torchvision modules), same images (a synthetic YOLO-layout dataset of
coloured rectangles, decoded and letterboxed once), same batch size, fp32,
AdamW, no augmentation. Each side runs in its own subprocess, ``--repeats``
times alternately (a busy shared machine drifts; the best run of each side is
compared). The figure is training images per second over the timed epochs:
ensemblecv's ``train_time_s`` from history.csv covers the optimisation steps
only, as the plain loop's timer does.

    PYTHONPATH=src python benchmarks/detect_throughput.py [--model tiny_fcos] [--n 256]
    PYTHONPATH=src python benchmarks/detect_throughput.py --model fcos --backbone resnet18
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _dataset(args) -> Path:
    """The synthetic dataset (2n images: fold 0 of 2 trains on about n), made once."""
    sys.path.insert(0, str(ROOT / "tests"))
    import detect_standin  # the data-side modules, until the real readers are installed

    detect_standin.install()
    root = Path(tempfile.gettempdir()) / f"ecv_detect_bench_{2 * args.n}"
    if not (root / "data.yaml").is_file():
        detect_standin.make_yolo_dataset(root, n=2 * args.n, size=args.size)
    return root


def _config(args, ws: Path):
    from ensemblecv.config import load_config

    overrides = [
        "task=detect",
        f"workspace={ws}",
        f"data.train={_dataset(args)}",
        f"data.image_size={args.size}",
        "data.folds=2",
        "data.num_workers=0",
        f"model.name={args.model}",
        "augment.ops=[]",
        "tracking=none",
        f"train.epochs={args.epochs}",
        f"train.batch_size={args.batch_size}",
        "train.optimizer=adamw",
        "train.scheduler=none",
        "train.lr=0.001",
    ]
    if args.backbone:
        overrides.append(f"model.backbone={args.backbone}")
    return load_config(None, overrides, base={})


def plain_loop(args) -> dict:
    import numpy as np
    import torch

    from ensemblecv.tasks import get_task
    from ensemblecv.tasks.detect.models import create_detector

    torch.manual_seed(0)
    cfg = _config(args, Path(tempfile.mkdtemp()) / "ws")
    inputs = get_task("detect").prepare_inputs(cfg, progress=False)  # decode + letterbox once
    rows = np.flatnonzero(inputs.folds["fold"].to_numpy() != 0)
    images = torch.from_numpy(np.stack([inputs.source.image(int(r)) for r in rows]))
    images = images.permute(0, 3, 1, 2).float().div(255)
    targets = []
    for r in rows:
        boxes, labels = inputs.source.targets(int(r))
        targets.append({"boxes": torch.from_numpy(boxes), "labels": torch.from_numpy(labels + 1)})
    model = create_detector(cfg.model, 3, args.size, inputs.mean, inputs.std, cfg.detect)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    times = []
    for _ in range(args.epochs):
        model.train()
        order = torch.randperm(len(rows))
        start = time.perf_counter()
        for i in range(0, len(rows), args.batch_size):
            idx = order[i : i + args.batch_size]
            opt.zero_grad(set_to_none=True)
            losses = model(list(images[idx]), [targets[j] for j in idx.tolist()])
            sum(losses.values()).backward()
            opt.step()
        times.append(time.perf_counter() - start)
    per_epoch = min(times[1:]) if len(times) > 1 else times[0]  # the first epoch warms up
    return {"images_per_s": len(rows) / per_epoch, "epoch_s": per_epoch, "n_train": len(rows)}


def ensemblecv_run(args) -> dict:
    import pandas as pd

    from ensemblecv.training import train

    ws = Path(tempfile.mkdtemp()) / "ws"
    cfg = _config(args, ws)
    train(cfg, folds=[0], progress=False)
    history = pd.read_csv(ws / "runs" / cfg.run_name / "fold_0" / "history.csv")
    n_train = int((pd.read_parquet(ws / "folds.parquet")["fold"] != 0).sum())
    times = history["train_time_s"].tolist()
    per_epoch = min(times[1:]) if len(times) > 1 else times[0]
    return {"images_per_s": n_train / per_epoch, "epoch_s": per_epoch, "n_train": n_train}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="tiny_fcos")
    ap.add_argument("--backbone", default=None)
    ap.add_argument("--n", type=int, default=256, help="training images per epoch (about)")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--side", choices=["plain", "ensemblecv"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.side:
        import torch

        torch.set_num_threads(args.threads)
        result = (plain_loop if args.side == "plain" else ensemblecv_run)(args)
        print("RESULT " + json.dumps(result))
        return
    _dataset(args)
    runs: dict[str, list[dict]] = {"plain": [], "ensemblecv": []}
    for _ in range(args.repeats):
        for side in runs:
            cmd = [sys.executable, __file__, "--side", side, *sys.argv[1:]]
            text = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            line = next(x for x in text.splitlines() if x.startswith("RESULT "))
            runs[side].append(json.loads(line[7:]))
    best = {side: max(r, key=lambda d: d["images_per_s"]) for side, r in runs.items()}
    p, e = best["plain"], best["ensemblecv"]
    name = args.model + (f" + {args.backbone}" if args.backbone else "")
    print(
        f"{name}, {args.size}px, batch {args.batch_size}, {p['n_train']} images/epoch, "
        f"fp32, CPU, {args.threads} threads, best of {args.repeats}"
    )
    for label, r in (("plain loop", p), ("ensemblecv", e)):
        all_runs = ", ".join(
            f"{d['images_per_s']:.1f}" for d in runs["plain" if r is p else "ensemblecv"]
        )
        print(
            f"{label:<11}: {r['images_per_s']:.1f} images/s ({r['epoch_s']:.2f} s/epoch; runs: {all_runs})"
        )
    print(
        f"ratio ensemblecv / plain = {e['images_per_s'] / p['images_per_s']:.3f} (target >= 0.95)"
    )


if __name__ == "__main__":
    main()
