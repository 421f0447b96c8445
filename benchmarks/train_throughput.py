"""Training throughput: ensemblecv's engine vs a minimal hand-written PyTorch loop.

Same timm model, same images (a Fashion-MNIST subset, or digits when it is not
installed), same batch size, precision and optimizer. Each side runs in its
own subprocess so peak memory is measured separately. The figure compared is
training images per second over the timed epochs (ensemblecv's per-epoch
``train_time_s`` from history.csv covers the training part of the epoch only,
as the plain loop's timer does).

    python benchmarks/train_throughput.py [--model resnet18] [--n 6000] [--epochs 3]

It then measures the small-image recipe (``recipe: small-cpu``: resnet9_small,
batch tensor augmentation, EMA, channels_last, its batch size) the same way,
beside the same recipe written as a plain loop (benchmarks/_plain_recipe.py);
``--no-recipe`` skips that part.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _dataset() -> str:
    from ensemblecv.data.builtin import fashion_mnist_available

    return "fashion-mnist" if fashion_mnist_available() else "digits"


def plain_loop(args) -> dict:
    import numpy as np
    import timm
    import torch

    from ensemblecv.data.builtin import load_split
    from ensemblecv.data.export import balanced_subset

    torch.manual_seed(0)
    data = load_split(_dataset(), "train")
    idx = balanced_subset(data.labels, args.n)
    x = torch.from_numpy(data.images[idx].astype(np.float32) / 255.0).unsqueeze(1)
    x = (
        torch.nn.functional.interpolate(x, size=args.size, mode="bilinear")
        if x.shape[-1] != args.size
        else x
    )
    x = (x - x.mean()) / x.std()
    y = torch.from_numpy(data.labels[idx]).long()
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, y), batch_size=args.batch_size, shuffle=True
    )
    model = timm.create_model(args.model, num_classes=10, in_chans=1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    times = []
    for _ in range(args.epochs):
        model.train()
        start = time.perf_counter()
        for xb, yb in loader:
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - start)
    per_epoch = min(times[1:]) if len(times) > 1 else times[0]  # first epoch warms up
    return {"images_per_s": len(y) / per_epoch, "epoch_s": per_epoch}


def ensemblecv_run(args) -> dict:
    import pandas as pd

    from ensemblecv.config import load_config
    from ensemblecv.training import train

    ws = Path(tempfile.mkdtemp()) / "ws"
    # folds=2: fold 0 trains on half of `2n` images, i.e. on n, like the plain loop.
    cfg = load_config(
        None,
        [],
        base={
            "workspace": str(ws),
            "data": {
                "train": _dataset(),
                "image_size": args.size,
                "channels": 1,
                "folds": 2,
                "limit": 2 * args.n,
                "resize": "stretch",
                "num_workers": 0,
            },
            "model": {"name": args.model},
            "augment": {"preset": "none"},
            "tracking": "none",
            "train": {
                "epochs": args.epochs,
                "batch_size": args.batch_size,
                "lr": 1e-3,
                "optimizer": "adamw",
                "scheduler": "none",
            },
        },
    )
    train(cfg, folds=[0], progress=False)
    history = pd.read_csv(ws / "runs" / args.model / "fold_0" / "history.csv")
    n_train = int((pd.read_parquet(ws / "folds.parquet")["fold"] != 0).sum())
    times = history["train_time_s"].tolist()
    per_epoch = min(times[1:]) if len(times) > 1 else times[0]
    return {"images_per_s": n_train / per_epoch, "epoch_s": per_epoch, "n_train": n_train}


def recipe_run(args) -> dict:
    """ensemblecv with ``recipe: small-cpu`` (28 px), fold 0 of 2 folds over 2n images."""
    import pandas as pd

    from ensemblecv.config import load_config
    from ensemblecv.training import train

    ws = Path(tempfile.mkdtemp()) / "ws"
    cfg = load_config(
        None,
        [],
        base={
            "recipe": "small-cpu",
            "workspace": str(ws),
            "data": {"train": _dataset(), "folds": 2, "limit": 2 * args.n, "num_workers": 0},
            "tracking": "none",
            "train": {"epochs": args.epochs, "tta": []},
        },
    )
    train(cfg, folds=[0], progress=False)
    history = pd.read_csv(ws / "runs" / cfg.run_name / "fold_0" / "history.csv")
    n_train = int((pd.read_parquet(ws / "folds.parquet")["fold"] != 0).sum())
    times = history["train_time_s"].tolist()
    per_epoch = min(times[1:]) if len(times) > 1 else times[0]
    return {
        "images_per_s": n_train / per_epoch,
        "epoch_s": per_epoch,
        "batch": cfg.train.batch_size,
    }


def plain_recipe(args) -> dict:
    """The same recipe as a hand-written loop (benchmarks/_plain_recipe.py)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from _plain_recipe import parser, train_plain

    batch = 512 if __import__("torch").cuda.is_available() else 256
    a = parser().parse_args(
        ["--n", str(args.n), "--test-n", "1000", "--epochs", str(args.epochs), "--batch-size",
         str(batch)]
    )  # fmt: skip
    r = train_plain(a)
    return {"images_per_s": r["img_per_s"], "epoch_s": r["train_s"] / args.epochs}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--n", type=int, default=6000, help="training images per epoch")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--no-recipe", action="store_true", help="skip the small-cpu recipe part")
    ap.add_argument(
        "--side", choices=["plain", "ensemblecv", "recipe", "plain-recipe"], help=argparse.SUPPRESS
    )
    args = ap.parse_args()
    sides = {
        "plain": plain_loop,
        "ensemblecv": ensemblecv_run,
        "recipe": recipe_run,
        "plain-recipe": plain_recipe,
    }
    if args.side:
        result = sides[args.side](args)
        result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print("RESULT " + json.dumps(result))
        return
    out = {}
    todo = ("plain", "ensemblecv") + (() if args.no_recipe else ("plain-recipe", "recipe"))
    for side in todo:
        cmd = [sys.executable, __file__, "--side", side, *sys.argv[1:]]
        text = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        out[side] = json.loads(
            next(line for line in text.splitlines() if line.startswith("RESULT "))[7:]
        )
    p, e = out["plain"], out["ensemblecv"]
    print(
        f"model {args.model}, {args.size}px, batch {args.batch_size}, {args.n} images/epoch, fp32, CPU"
    )
    print(
        f"plain loop : {p['images_per_s']:.0f} images/s ({p['epoch_s']:.1f} s/epoch), peak RSS {p['peak_rss_mib']:.0f} MiB"
    )
    print(
        f"ensemblecv : {e['images_per_s']:.0f} images/s ({e['epoch_s']:.1f} s/epoch), peak RSS {e['peak_rss_mib']:.0f} MiB"
    )
    print(
        f"ratio ensemblecv / plain = {e['images_per_s'] / p['images_per_s']:.3f} (target >= 0.95)"
    )
    if "recipe" in out:
        p, e = out["plain-recipe"], out["recipe"]
        print(f"recipe small-cpu (resnet9_small, 28 px, batch {e['batch']}, augment+EMA):")
        print(f"  plain loop : {p['images_per_s']:.0f} images/s ({p['epoch_s']:.1f} s/epoch)")
        print(f"  ensemblecv : {e['images_per_s']:.0f} images/s ({e['epoch_s']:.1f} s/epoch)")
        print(f"  ratio ensemblecv / plain = {e['images_per_s'] / p['images_per_s']:.3f}")
    print(f"load average {' '.join(f'{v:.2f}' for v in __import__('os').getloadavg())}")


if __name__ == "__main__":
    main()
