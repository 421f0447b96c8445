"""``ensemblecv demo --task segment [--fast]``: shapes and digits → 3 models × 3 folds → map ensembles.

Offline by construction: the dataset is generated here (:mod:`.synthetic`),
the models train from scratch — a tiny U-Net, and smp's U-Net and FPN on
timm's ResNet-10t encoder (``tu-resnet10t``) — each storing flip-TTA maps
as an extra member. The best map ensemble (by honest nested CV mIoU)
predicts the held-out test images, and its test mIoU is printed beside the
best single model's.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

# Small on purpose: they train from scratch on 2 CPU cores. smp decoders are slimmed
# (default U-Net decoder channels 256..16 cost 5x the encoder at 64 px).
DEMO_SEGMENTERS = (
    {"name": "tiny_unet"},
    {
        "name": "unet",
        "backbone": "tu-resnet10t",
        "kwargs": {"decoder_channels": [64, 32, 16, 16, 16]},
    },
    {
        "name": "fpn",
        "backbone": "tu-resnet10t",
        "kwargs": {"decoder_pyramid_channels": 64, "decoder_segmentation_channels": 32},
    },
)


def demo_configs(workspace: Path, data: Path, fast: bool, epochs: int | None = None) -> list:
    from ...config import load_config

    configs = []
    for model in DEMO_SEGMENTERS:
        model = {**model, "kwargs": dict(model.get("kwargs", {}))}
        base = {
            "workspace": str(workspace),
            "task": "segment",
            "name": model["name"],
            "data": {
                "train": str(data / "train"),
                "test": str(data / "test"),
                "image_size": 32 if fast else 64,
                "folds": 3,
                "resize": "letterbox",
                "normalize": "dataset",
            },
            "model": model,
            "train": {
                "epochs": epochs or (8 if fast else 20),
                "batch_size": 8,
                "optimizer": "adamw",
                "lr": 0.01,
                "weight_decay": 1e-4,
                "scheduler": "poly",
                "seed": 0,
            },
            "augment": {"preset": "light"},
            "segment": {"loss": {"cross_entropy": 1.0, "dice": 0.5}, "tta": ["hflip"]},
            "tracking": {"backend": "none"},
        }
        configs.append(load_config(None, [], base=base))
    return configs


def run_segment_demo(
    workspace: Path,
    fast: bool = False,
    console: Console | None = None,
    progress: bool = True,
    epochs: int | None = None,
    **_: object,
) -> dict:
    """Run the chain; returns the test mIoU of the best ensemble and of the best single model."""
    from ..._tables import print_leaderboard
    from ...training import train
    from ...training.inputs import open_workspace
    from . import task as seg_task
    from .synthetic import make_shapes_dataset

    console = console or Console()
    workspace = Path(workspace)
    data = workspace / "data"
    if not (data / "train").is_dir():
        n_train, n_test = (120, 45) if fast else (360, 120)
        size = (32, 40) if fast else (48, 64)  # --fast: a quarter of the pixels
        make_shapes_dataset(data, n_train, n_test, size=size, seed=0)
    configs = demo_configs(workspace, data, fast, epochs)
    console.rule("[bold]ensemblecv demo --task segment[/]" + (" (fast)" if fast else ""))
    console.print(f"dataset: shapes and digits on texture, {data} (images/ + masks/, void 255)")
    open_workspace(configs[0], progress=progress)
    for cfg in configs:
        console.rule(f"train {cfg.run_name}: {cfg.data.folds} folds × {cfg.train.epochs} epochs")
        train(cfg, progress=progress)
    console.rule("map ensembles")
    task = seg_task.TASK
    board = task.build_ensembles(workspace, None, "miou", None)
    print_leaderboard(task.leaderboard_view(board), "mIoU", console)
    ensembles = board[board["kind"] == "ensemble"]
    singles = board[board["kind"] == "model"]
    best = ensembles.iloc[0]
    best_single = singles.sort_values("miou", ascending=False).iloc[0]
    ens, single = float(best["test_miou"]), float(best_single["test_miou"])
    lines = task.predict(
        workspace, str(data / "test" / "images"), workspace / "predictions", str(best["name"]),
        {}, progress,
    )  # fmt: skip
    for line in lines:
        console.print(line)
    console.print(
        f"Test mIoU: best ensemble [bold]{best['name']}[/] = [bold green]{ens:.4f}[/]; best single "
        f"model [bold]{best_single['name']}[/] = {single:.4f} "
        f"({'+' if ens >= single else ''}{(ens - single) * 100:.2f} points)."
    )
    # The honest-CV side of the same comparison: the leaderboard ranks by it, so say when the
    # test set and CV disagree instead of letting the test line speak alone.
    cv_ens, cv_single = float(best["miou"]), float(best_single["miou"])
    console.print(
        f"Honest CV mIoU: {best['name']} {cv_ens:.4f}, {best_single['name']} {cv_single:.4f}"
        + ("" if (cv_ens >= cv_single) == (ens >= single) else " (CV and test disagree: "
           "the difference is within what this many images can tell apart)")
        + "."
    )  # fmt: skip
    return {
        "ensemble": str(best["name"]),
        "ensemble_test_miou": ens,
        "best_single": str(best_single["name"]),
        "best_single_test_miou": single,
        "ensemble_cv_miou": cv_ens,
        "best_single_cv_miou": cv_single,
    }


__all__ = ["DEMO_SEGMENTERS", "demo_configs", "run_segment_demo"]
