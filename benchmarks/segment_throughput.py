"""Segmentation training throughput: ensemblecv's engine vs a plain torchvision-style loop.

Same segmenter (``ensemblecv.tasks.segment.models.create_segmenter``, so the
same modules), same images and masks (the built-in shapes dataset, decoded
and letterboxed once), same batch size, fp32, AdamW, cross-entropy with
ignore_index 255, no augmentation. Each side runs in its own subprocess,
``--repeats`` times alternately (a busy shared machine drifts; the best run
of each side is compared). The figure is training images per second over
the timed epochs; ensemblecv's ``train_time_s`` from history.csv covers the
optimisation steps only, as the plain loop's timer does.

    PYTHONPATH=src python benchmarks/segment_throughput.py [--model tiny_unet] [--n 192]
    PYTHONPATH=src python benchmarks/segment_throughput.py --model unet --backbone tu-resnet10t
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _dataset(args) -> Path:
    from ensemblecv.tasks.segment.synthetic import make_shapes_dataset

    root = Path(tempfile.gettempdir()) / f"ecv_segment_bench_{2 * args.n}"
    if not (root / "train" / "classes.txt").is_file():
        make_shapes_dataset(root, n_train=2 * args.n, n_test=1, seed=0)
    return root / "train"


def _config(args, ws: Path):
    from ensemblecv.config import load_config

    overrides = [
        "task=segment", f"workspace={ws}", f"data.train={_dataset(args)}",
        f"data.image_size={args.size}", "data.folds=2", "data.num_workers=0",
        f"model.name={args.model}", "augment.preset=none", "tracking.backend=none",
        f"train.epochs={args.epochs}", f"train.batch_size={args.batch_size}",
        "train.optimizer=adamw", "train.scheduler=none", "train.lr=0.001",
        "segment.loss=cross_entropy", "trainer.accelerator=cpu",
    ]  # fmt: skip
    if args.backbone:
        overrides.append(f"model.backbone={args.backbone}")
    return load_config(None, overrides, base={})


def plain_loop(args) -> dict:
    import numpy as np
    import torch

    from ensemblecv.tasks import get_task, resolve_config
    from ensemblecv.tasks.segment.models import create_segmenter

    torch.manual_seed(0)
    cfg = resolve_config(_config(args, Path(tempfile.mkdtemp()) / "ws"))
    inputs = get_task("segment").prepare_inputs(cfg, progress=False)  # decode + letterbox once
    rows = np.flatnonzero(inputs.folds["fold"].to_numpy() != 0)
    items = [inputs.source.item(int(r)) for r in rows]
    images = torch.from_numpy(np.stack([i for i, _ in items])).permute(0, 3, 1, 2).contiguous()
    masks = torch.from_numpy(np.stack([m for _, m in items]).astype(np.int64))
    model = create_segmenter(cfg.model, inputs.num_classes, inputs.mean, inputs.std)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss(ignore_index=255)
    times = []
    for _ in range(args.epochs):
        model.train()
        order = torch.randperm(len(rows))
        start = time.perf_counter()
        for i in range(0, len(rows), args.batch_size):
            idx = order[i : i + args.batch_size]
            opt.zero_grad(set_to_none=True)
            out = model(images[idx])
            loss = loss_fn(out["out"], masks[idx])
            if "aux" in out:
                loss = loss + 0.5 * loss_fn(out["aux"], masks[idx])
            loss.backward()
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
    ap.add_argument("--model", default="tiny_unet")
    ap.add_argument("--backbone", default=None)
    ap.add_argument("--n", type=int, default=192, help="training images per epoch (about)")
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
    for label, side in (("plain loop", "plain"), ("ensemblecv", "ensemblecv")):
        r = best[side]
        all_runs = ", ".join(f"{d['images_per_s']:.1f}" for d in runs[side])
        print(f"{label:<11}: {r['images_per_s']:.1f} images/s ({r['epoch_s']:.2f} s/epoch; "
              f"runs: {all_runs})")  # fmt: skip
    print(
        f"ratio ensemblecv / plain = {e['images_per_s'] / p['images_per_s']:.3f} (target >= 0.95)"
    )


if __name__ == "__main__":
    main()
