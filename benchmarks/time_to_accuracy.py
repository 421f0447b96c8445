"""Time to accuracy: ``recipe: small-cpu`` on full Fashion-MNIST, against the clock.

What a user runs — ``ensemblecv train`` of ``{recipe: small-cpu, data: {train:
fashion-mnist, test: fashion-mnist:test}}`` then ``ensemblecv ensemble`` — timed from
the first line. While the folds train, each finished fold adds its test
prediction to the fold average, so test accuracy is known at every moment; the
table reads it at the checkpoints (5, 10, 20, 30 min by default). Beside it: the
same network and recipe as a plain PyTorch loop on all 60,000 images (no CV),
and the published Fashion-MNIST table's rows. At the end: the run's honest CV
accuracy (out-of-fold) against its test accuracy, and with ``--runs N`` an
ensemble of N runs (``train.repeats``) chosen by the existing engine.

Epochs are fitted to the budget: a few timed steps measure this machine's
training speed now, and each side gets as many epochs as fit ``--minutes``
(prediction time reserved). Runs on CUDA unchanged (the recipe picks its batch
size and precision there).

    python benchmarks/time_to_accuracy.py                 # 30 minutes, the target
    python benchmarks/time_to_accuracy.py --minutes 10    # a shorter budget
    python benchmarks/time_to_accuracy.py --quick         # a ~3 min smoke run on 2,500 images

Load average is printed beside every figure: on a shared machine the budget buys
fewer epochs, and the table says so.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

#: Published Fashion-MNIST results (zalandoresearch/fashion-mnist benchmark table;
#: Zhong et al., Random Erasing, 2017), each after hours of GPU training.
PUBLISHED = [
    ("ResNet18 (zalando benchmark table)", 0.949),
    ("WRN-28-10 + random erasing (Zhong et al.)", 0.963),
    ("ensemblecv full demo before recipes (12k images, 37 min)", 0.9109),
]


def _load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def probe_rate(batch: int, seconds: float = 8.0) -> float:
    """Training images/s of resnet9_small with the recipe's step, measured now."""
    import timm
    import torch

    import ensemblecv.models  # noqa: F401

    model = timm.create_model("resnet9_small", num_classes=10, in_chans=1)
    model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))
    done, start = -1, 0.0
    while True:
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        done += 1
        if done == 0:
            start = time.perf_counter()  # the first step warms up
        elif time.perf_counter() - start > seconds and done >= 3:
            return done * batch / (time.perf_counter() - start)


def fit_epochs(budget_s: float, rate: float, images_per_epoch: int, passes: int) -> int:
    """Epochs such that ``passes`` × ``images_per_epoch`` training images fit the budget.

    The engine's end-to-end rate (validation every epoch, OOF and test prediction with TTA,
    start-up per fold) came out at 0.64 × the probe's training-step rate on the 2-core
    machine (5 folds × 4 epochs in 33 min at a 757 images/s probe), hence the 0.6."""
    return max(1, int(0.6 * budget_s * rate / (images_per_epoch * passes)))


def _test_accuracy(run_dirs: list[Path], targets: np.ndarray) -> float | None:
    probs = []
    for run in run_dirs:
        for fold in sorted(run.glob("fold_*")):
            f = fold / "test_tta_probs.npy"
            f = f if f.is_file() else fold / "test_probs.npy"
            if (fold / "done.json").is_file() and f.is_file():
                probs.append(np.load(f))
    if not probs:
        return None
    return float((np.mean(probs, axis=0).argmax(1) == targets).mean())


def _oof_accuracy(run: Path) -> float:
    import pandas as pd

    correct = total = 0
    for fold in sorted(run.glob("fold_*")):
        f = fold / "oof_tta_probs.npy"
        p = np.load(f if f.is_file() else fold / "oof_probs.npy")
        y = pd.read_parquet(fold / "oof_samples.parquet")["target"].to_numpy()
        correct += int((p.argmax(1) == y).sum())
        total += len(y)
    return correct / total


def engine_side(args, epochs: int, ws: Path) -> dict:
    """``ensemblecv train`` of the recipe (a subprocess, like a user's), polled for accuracy."""
    import pandas as pd
    import yaml

    cfg = {
        "recipe": "small-cpu",
        "workspace": str(ws),
        "data": {"train": "fashion-mnist", "test": "fashion-mnist:test"},
        "train": {"epochs": epochs, "repeats": args.runs},
        "tracking": "none",
    }
    if args.n:
        cfg["data"].update(limit=args.n, test_limit=args.test_n)
    ws.parent.mkdir(parents=True, exist_ok=True)
    path = ws.parent / "time_to_accuracy.yaml"
    path.write_text(yaml.safe_dump(cfg))
    start = time.perf_counter()
    cmd = [sys.executable, "-m", "ensemblecv", "train", str(path), "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    curve: list[tuple[float, float, str]] = []
    targets = None
    seen = 0
    while proc.poll() is None or seen < len(list(ws.glob("runs/*/fold_*/done.json"))):
        time.sleep(2)
        done = sorted(ws.glob("runs/*/fold_*/done.json"))
        if len(done) == seen:
            continue
        seen = len(done)
        if targets is None:
            sample = next(ws.glob("runs/*/fold_*/test_samples.parquet"))
            targets = pd.read_parquet(sample)["target"].to_numpy()
        acc = _test_accuracy(sorted((ws / "runs").iterdir()), targets)
        curve.append(((time.perf_counter() - start) / 60, acc, _load()))
        print(
            f"  engine: {seen} fold(s) done at {curve[-1][0]:.1f} min, test {acc:.4f}", flush=True
        )
    if proc.returncode:
        raise SystemExit(f"ensemblecv train failed:\n{proc.stderr.read()[-3000:]}")
    train_min = (time.perf_counter() - start) / 60
    runs = sorted((ws / "runs").iterdir())
    out = {"curve": curve, "train_min": train_min, "epochs": epochs}
    out["cv"] = [_oof_accuracy(r) for r in runs]
    out["test"] = _test_accuracy(runs, targets)
    subprocess.run(
        [sys.executable, "-m", "ensemblecv", "ensemble", str(ws)],
        check=True,
        capture_output=True,
    )
    board = pd.read_csv(ws / "leaderboard.csv")
    best = board.sort_values("accuracy", ascending=False).iloc[0]
    out["ensemble"] = {
        "name": str(best["name"]),
        "cv": float(best["accuracy"]),
        "test": float(best.get("test_accuracy", float("nan"))),
        "minutes": (time.perf_counter() - start) / 60,
    }
    return out


def plain_side(args, epochs: int) -> dict:
    sys.path.insert(0, str(Path(__file__).parent))
    from _plain_recipe import parser, train_plain

    batch = 512 if __import__("torch").cuda.is_available() else 256
    argv = ["--epochs", str(epochs), "--batch-size", str(batch)]
    if args.n:
        argv += ["--n", str(args.n), "--test-n", str(args.test_n)]
    a = parser().parse_args([*argv, "--checkpoints", *map(str, args.checkpoints)])
    curve: list[tuple[float, float, str]] = []
    start = time.perf_counter()
    result = train_plain(a, lambda m, acc: curve.append((m, acc, _load())))
    curve.append(((time.perf_counter() - start) / 60, result["test_acc"], _load()))
    return {"curve": curve, "epochs": epochs, "test": result["test_acc"]}


def _at(curve: list[tuple[float, float | None, str]], minute: float) -> str:
    known = [c for c in curve if c[0] <= minute + 1e-9 and c[1] is not None]
    return f"{known[-1][1]:.4f} (load {known[-1][2].split()[0]})" if known else "-"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=30.0, help="budget per side (default 30)")
    ap.add_argument(
        "--quick", action="store_true", help="3 min on 2,500 / 1,000 images (a smoke run)"
    )
    ap.add_argument("--runs", type=int, default=1, help="members trained (train.repeats)")
    ap.add_argument("--epochs", type=int, default=None, help="fix the epochs (no fitting)")
    ap.add_argument("--no-plain", action="store_true", help="skip the plain PyTorch loop")
    ap.add_argument("--workspace", type=Path, default=None, help="default: a temporary folder")
    args = ap.parse_args()
    args.n, args.test_n = (2500, 1000) if args.quick else (None, None)
    if args.quick:  # a smoke run of the whole path: too few steps for a meaningful accuracy
        args.minutes = min(args.minutes, 3.0)
        args.epochs = args.epochs or 3
    args.checkpoints = [m for m in (5, 10, 20, 30) if m < args.minutes] + [args.minutes]
    import torch

    from ensemblecv.recipes import get_recipe

    device = "cuda" if torch.cuda.is_available() else f"CPU ({torch.get_num_threads()} threads)"
    batch = 512 if torch.cuda.is_available() else 256
    rate = probe_rate(batch)
    n = args.n or 60000
    recipe = get_recipe("small-cpu").resolved()
    folds = recipe["data"]["folds"]
    refit = recipe["train"].get("refit_full", True)
    # Images one epoch of every training costs: K folds on (K-1)/K of the data, plus the refit.
    per_epoch = folds * (n * (folds - 1) // folds) + (n if refit else 0)
    # At the 30-minute target the recipe's own epochs are the user path; another budget fits them.
    engine_epochs = args.epochs or (
        recipe["train"]["epochs"]
        if args.minutes == 30 and args.runs == 1
        else fit_epochs(args.minutes * 60, rate, per_epoch, args.runs)
    )
    plain_epochs = args.epochs or fit_epochs(args.minutes * 60, rate, n, 1)
    print(f"device {device}; probe {rate:.0f} train images/s (load {_load()})", flush=True)
    print(f"budget {args.minutes:g} min: engine {engine_epochs} epochs x {folds} folds"
          f"{' + refit' if refit else ''} x {args.runs} run(s), plain loop {plain_epochs} epochs",
          flush=True)  # fmt: skip
    ws = args.workspace or Path(tempfile.mkdtemp()) / "ws"
    engine = engine_side(args, engine_epochs, ws)
    plain = None if args.no_plain else plain_side(args, plain_epochs)

    print(f"\nFashion-MNIST {'(quick subset) ' if args.quick else ''}test accuracy vs wall-clock")
    head = f"{'minutes':>8} | {'ensemblecv small-cpu (fold avg)':<32} | plain PyTorch loop"
    print(head + "\n" + "-" * len(head))
    for m in args.checkpoints:
        right = _at(plain["curve"], m) if plain else "-"
        print(f"{m:>8g} | {_at(engine['curve'], m):<32} | {right}")
    print(f"engine: training done at {engine['train_min']:.1f} min, test {engine['test']:.4f}")
    cv = engine["cv"]
    print(f"engine CV (OOF, flip TTA) {np.mean(cv):.4f} vs test {engine['test']:.4f}: "
          f"gap {100 * (engine['test'] - np.mean(cv)):+.2f} points")  # fmt: skip
    e = engine["ensemble"]
    print(f"best ensemble {e['name']}: CV {e['cv']:.4f}, test {e['test']:.4f}, "
          f"gap {100 * (e['test'] - e['cv']):+.2f} points, at {e['minutes']:.1f} min")  # fmt: skip
    if plain:
        print(f"plain loop (no CV): test {plain['test']:.4f} after {plain['curve'][-1][0]:.1f} min")
    print("published (hours on a GPU):")
    for name, acc in PUBLISHED:
        print(f"  {name:<58} {acc:.4f}")
    print(f"load average at the end {_load()}")
    print("RESULT " + json.dumps({"engine": engine, "plain": plain}, default=str))


if __name__ == "__main__":
    main()
