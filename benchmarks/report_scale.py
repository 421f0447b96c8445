"""Time ``build_report`` and the page's opening on a large synthetic workspace.

    PYTHONPATH=src python benchmarks/report_scale.py                  # 500 classes, 20 models
    PYTHONPATH=src python benchmarks/report_scale.py --classes 100 --models 5 --per-class 10

A real workspace is prepared from tiny PNGs (``--per-class`` per class, so
N = classes × per-class out-of-fold rows), then ``--models`` runs are
fabricated the way the trainer writes them (config, 30-epoch history per fold,
OOF probabilities, done.json); the best run also gets randomly initialised
checkpoints so Grad-CAM is part of the timing. ``build_ensembles`` (soft
voting only, to keep the set-up short) writes the leaderboard and a weighted
spec. Targets: report built in < 60 s, page opened in < 3 s. The opening is
measured in headless Chromium twice: the page's own ``performance.now()`` at
its load event (written into the DOM by the report's script) and the wall time
of a whole ``chromium --dump-dom`` process (browser start included). Prints::

    report: 500 classes, 20 models, 10000 OOF rows: built in 21.3 s; 2.9 MB on disk ...
    page: load event at 180 ms (median of 3); chromium --dump-dom wall 1.4 s
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

CHROMIUM = "/usr/bin/chromium"


def make_dataset(root: Path, classes: int, per_class: int) -> Path:
    data = root / "data"
    rng = np.random.default_rng(0)
    for c in range(classes):
        name = f"클래스_{c:03d}" if c % 50 == 7 else f"class_{c:03d}_{'ab'[c % 2]}"
        folder = data / name
        folder.mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.png")
    return data


def _oof(y: np.ndarray, n_classes: int, signal: float, rng) -> np.ndarray:
    logits = rng.standard_normal((len(y), n_classes), dtype=np.float32)
    logits[np.arange(len(y)), y] += signal
    look_alike = y % 7 == 0  # some classes have a look-alike neighbour: real confusions
    logits[np.flatnonzero(look_alike), (y[look_alike] + 1) % n_classes] += 0.8 * signal
    logits *= 2.5  # sharper than N(0, 1) noise: real models are confidently wrong too
    logits -= logits.max(1, keepdims=True)
    np.exp(logits, out=logits)
    return logits / logits.sum(1, keepdims=True)


def _history(epochs: int, rng) -> pd.DataFrame:
    t = np.arange(epochs, dtype=float)
    return pd.DataFrame(
        {
            "epoch": t.astype(int),
            "train_loss": 2 / (t + 1),
            "train_acc": 1 - 0.6 / (t + 1),
            "val_loss": 1 + 0.002 * (t - 12) ** 2 + rng.normal(0, 0.02, epochs),
            "val_acc": 0.6 + 0.01 * np.minimum(t, 15),
            "lr": 1e-3,
            "time_s": t,
            "train_time_s": t,
        }
    )


def _checkpoint(cfg, n_classes: int, path: Path) -> None:
    import torch

    from ensemblecv.training.module import ClassifierModule

    hp = dict(
        config=cfg.model_dump(mode="json"),
        num_classes=n_classes,
        steps_per_epoch=1,
        mean=[0.5] * 3,
        std=[0.25] * 3,
    )
    torch.save({"state_dict": ClassifierModule(**hp).state_dict(), "hyper_parameters": hp}, path)


def make_runs(ws: Path, data: Path, models: int, seed: int = 0) -> None:
    """``models`` complete runs (the first, the strongest, with checkpoints)."""
    from ensemblecv.config import load_config, to_yaml

    folds = pd.read_parquet(ws / "folds.parquet")
    y = folds["label"].to_numpy()
    n_classes = len(json.loads((ws / "classes.json").read_text(encoding="utf-8")))
    n_folds = int(folds["fold"].max()) + 1
    rng = np.random.default_rng(seed)
    for m in range(models):
        name = f"model_{m:02d}"
        base = {
            "workspace": str(ws),
            "name": name,
            "model": {"name": "cnn_small"},
            "data": {"train": str(data), "folds": n_folds, "channels": 3, "image_size": 32},
        }
        cfg = load_config(None, [], base=base)
        run = ws / "runs" / name
        run.mkdir(parents=True)
        (run / "config.yaml").write_text(to_yaml(cfg), encoding="utf-8")
        oof = _oof(y, n_classes, 3.0 - 1.5 * m / max(models - 1, 1), rng)
        for k in range(n_folds):
            fold = run / f"fold_{k}"
            fold.mkdir()
            rows = np.flatnonzero(folds["fold"].to_numpy() == k)
            np.save(fold / "oof_probs.npy", oof[rows])
            ids = pd.DataFrame({"sample_id": folds["sample_id"].to_numpy()[rows]})
            ids.to_parquet(fold / "oof_samples.parquet", index=False)
            _history(30, rng).to_csv(fold / "history.csv", index=False)
            if m == 0:
                _checkpoint(cfg, n_classes, fold / "best.ckpt")
            (fold / "done.json").write_text(json.dumps({"run": name, "fold": k}))


def make_audit(ws: Path, n: int, classes: int) -> None:
    warnings = [{"level": "warning", "message": f"synthetic warning {i}"} for i in range(40)]
    audit = {
        "n_images": n,
        "n_ok": n,
        "n_bad": 0,
        "n_classes": classes,
        "imbalance_ratio": 1.0,
        "duplicates": {"n_within_class_groups": 0, "n_cross_class_groups": 0},
        "warnings": warnings,
    }
    (ws / "audit").mkdir(exist_ok=True)
    (ws / "audit" / "audit.json").write_text(json.dumps(audit), encoding="utf-8")


def open_page(page: Path, profile: Path) -> tuple[float, float, str]:
    """(load event ms inside the page, wall seconds of chromium --dump-dom, body attributes)."""
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--dump-dom",
        page.resolve().as_uri(),
    ]
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    wall = time.perf_counter() - start
    body = re.search(r"<body([^>]*)>", out.stdout)
    attrs = body.group(1) if body else ""
    load = re.search(r'data-load-ms="(\d+)"', attrs)
    return (float(load.group(1)) if load else float("nan")), wall, attrs


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classes", type=int, default=500)
    parser.add_argument("--models", type=int, default=20)
    parser.add_argument("--per-class", type=int, default=20)
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--root", type=Path, default=Path("/tmp/report_scale"))
    parser.add_argument("--keep", action="store_true", help="reuse --root if it exists")
    args = parser.parse_args()
    from ensemblecv.ensemble import build_ensembles
    from ensemblecv.report import build_report
    from ensemblecv.workspace import prepare_workspace

    ws = args.root / "ws"
    if not (args.keep and (ws / "leaderboard.csv").is_file()):
        shutil.rmtree(args.root, ignore_errors=True)
        t0 = time.perf_counter()
        data = make_dataset(args.root, args.classes, args.per_class)
        prepare_workspace(ws, str(data), folds=args.folds, seed=0, workers=2)
        make_runs(ws, data, args.models)
        make_audit(ws, args.classes * args.per_class, args.classes)
        build_ensembles(ws, methods=["soft_voting"])
        print(f"set-up: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    start = time.perf_counter()
    page = build_report(ws)
    built = time.perf_counter() - start
    n = args.classes * args.per_class
    print(
        f"report: {args.classes} classes, {args.models} models, {n} OOF rows: built in "
        f"{built:.1f} s (target < 60 s); {_size(page.parent) / 2**20:.2f} MiB on disk, "
        f"index.html {page.stat().st_size / 2**10:.0f} KiB, "
        f"{len(list(page.parent.rglob('*.png')))} PNGs"
    )
    if not Path(CHROMIUM).is_file():
        print("page: chromium not installed, opening not measured")
        return 0
    runs = [open_page(page, args.root / f"profile{i}") for i in range(3)]
    loads, walls = [r[0] for r in runs], [r[1] for r in runs]
    ok = all('data-images-ok="yes"' in r[2] and 'data-js-errors=""' in r[2] for r in runs)
    print(
        f"page: load event at {statistics.median(loads):.0f} ms (median of 3: "
        f"{', '.join(f'{v:.0f}' for v in loads)}; target < 3000 ms); chromium --dump-dom "
        f"wall {statistics.median(walls):.2f} s; images ok and no script errors: {ok}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
