"""Issue 11's table, as a new user meets it: each (model, image size) trained for one epoch.

    PYTHONPATH=src python benchmarks/model_sizes.py                    # every row
    PYTHONPATH=src python benchmarks/model_sizes.py --only eva02_tiny_patch14_224

Each row trains ``pretrained: false`` on the built-in ``digits`` (60 images, 2 folds,
1 epoch, 1 torch thread) in a fresh workspace under ``--out`` and prints one Markdown
table row: the outcome (``trains`` with each fold's validation accuracy, or the error's
first line) and the wall time, e.g.::

    | `eva02_tiny_patch14_224` | 32 | ConfigError: eva02_tiny_patch14_224 cannot take ... | 4s |
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings

ROWS = [
    ("vit_tiny_patch16_224", 32),
    ("vit_tiny_patch16_224", 64),
    ("deit_tiny_patch16_224", 32),
    ("eva02_tiny_patch14_224", 32),
    ("eva02_tiny_patch14_224", 28),
    ("swin_tiny_patch4_window7_224", 32),
    ("swin_tiny_patch4_window7_224", 64),
    ("vit_small_r26_s32_224", 32),
    ("vit_small_r26_s32_224", 64),
    ("inception_resnet_v2", 64),
    ("inception_resnet_v2", 75),
]


def _row(name: str, size: int, out: str) -> str:
    from ensemblecv.config import load_config
    from ensemblecv.training import train

    cfg = load_config(
        None,
        [],
        base={
            "workspace": f"{out}/{name}_{size}",
            "data": {
                "train": "digits",
                "image_size": size,
                "limit": 60,
                "folds": 2,
                "num_workers": 0,
            },
            "model": {"name": name, "pretrained": False},
            "train": {"epochs": 1, "batch_size": 32},
            "tracking": "none",
        },
    )
    start = time.perf_counter()
    try:
        results = train(cfg, progress=False)
        outcome = "trains: " + ", ".join(
            f"fold {r.fold} {r.status} val_acc={r.val_acc:.2f}" for r in results
        )
    except Exception as exc:  # the row's outcome is the error the user would see
        first = (str(exc).strip().splitlines() or [""])[0]
        outcome = f"{type(exc).__name__}: {first}"
    return f"| `{name}` | {size} | {outcome} | {time.perf_counter() - start:.0f}s |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="model names to run (default: all rows)")
    parser.add_argument("--out", default=None, help="folder for the workspaces (default: temp)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    import torch

    torch.set_num_threads(1)
    out = args.out or tempfile.mkdtemp(prefix="model_sizes_")
    print("| model | image_size | outcome | time |\n|---|---|---|---|")
    for name, size in ROWS:
        if not args.only or name in args.only:
            print(_row(name, size, out), flush=True)


if __name__ == "__main__":
    main()
