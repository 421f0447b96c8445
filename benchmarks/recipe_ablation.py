"""Ablation of the small-cpu recipe: each ingredient switched off in turn.

Every row trains the plain-loop version of the recipe (benchmarks/_plain_recipe.py:
same network, augmentation, EMA, schedule and TTA as ``recipe: small-cpu``) on the
same images for the same epochs, with one ingredient removed, and reports test
accuracy and training speed next to the full recipe. Rows run in subprocesses one
after another, each with the same torch thread count.

    python benchmarks/recipe_ablation.py --n 60000 --epochs 4    # full data
    python benchmarks/recipe_ablation.py --n 6000 --epochs 3     # a short look
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROWS = [
    ("full recipe", []),
    ("- EMA weights", ["--no-ema"]),
    ("- flip TTA", ["--no-tta"]),
    ("- random erasing", ["--erasing", "0"]),
    ("- crop + flip + erasing", ["--pad", "0", "--no-flip", "--erasing", "0"]),
    ("- label smoothing", ["--smoothing", "0"]),
    ("- channels_last", ["--no-channels-last"]),
    ("AdamW instead of SGD", ["--optimizer", "adamw", "--lr", "0.003", "--wd", "0.05"]),
    ("width 24 instead of 16", ["--width", "24"]),
    ("twice the epochs", ["--epochs", "{twice}"]),  # what more compute buys
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=6000)
    ap.add_argument("--test-n", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--only", nargs="*", help="row numbers to run (default all)")
    args = ap.parse_args()
    script = Path(__file__).with_name("_plain_recipe.py")
    base = ["--n", str(args.n), "--test-n", str(args.test_n), "--epochs", str(args.epochs)]
    print(f"{args.n} training images, {args.test_n} test images, {args.epochs} epochs")
    print(f"{'#':>2} {'variant':<26} {'test acc':>8} {'img/s':>7} {'img/cpu-s':>9}  load")
    for i, (name, extra) in enumerate(ROWS):
        if args.only and str(i) not in args.only:
            continue
        out = subprocess.run(
            [sys.executable, str(script), *base, *(a.format(twice=2 * args.epochs) for a in extra)],
            capture_output=True,
            text=True,
        )
        if out.returncode:
            print(f"{i:>2} {name:<26} failed: {out.stderr[-300:]}")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        load = " ".join(f"{v:.1f}" for v in os.getloadavg())
        print(
            f"{i:>2} {name:<26} {r['test_acc']:>8.4f} {r['img_per_s']:>7.0f} "
            f"{r['img_per_cpu_s']:>9.0f}  {load}",
            flush=True,
        )


if __name__ == "__main__":
    main()
