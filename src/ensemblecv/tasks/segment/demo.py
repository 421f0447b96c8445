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
    from ...training.inputs import open_workspace
    from ..demo_chain import best_pair, print_verdict, train_each
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
    train_each(configs, console, progress)
    console.rule("map ensembles")
    task = seg_task.TASK
    board = task.build_ensembles(workspace, None, "miou", None)
    print_leaderboard(task.leaderboard_view(board), "mIoU", console)
    best, _ = best_pair(board, "miou")
    lines = task.predict(
        workspace, str(data / "test" / "images"), workspace / "predictions", str(best["name"]),
        {}, progress,
    )  # fmt: skip
    for line in lines:
        console.print(line)
    return print_verdict(console, board, "miou", "mIoU")


__all__ = ["DEMO_SEGMENTERS", "demo_configs", "run_segment_demo"]
