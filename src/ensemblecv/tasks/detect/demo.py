"""``ensemblecv demo --task detect [--fast]``: detectors × 3 folds → box ensembles → test mAP.

Offline, on a built-in set made here: scikit-learn's digits pasted at random
scales onto textured canvases (:func:`~.synthetic.make_objects_dataset`, exact
boxes), a training split and a test split drawn from different digit images.
Three different detectors (the built-in ``tiny_fcos``, FCOS and RetinaNet on
small timm backbones) each train over 3 folds with the mirrored view stored as
a TTA member; the box ensembles are tuned on their out-of-fold detections and
scored nested; the best one predicts the test split through ``predict``.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from ...config import ExperimentConfig, load_config

#: (run name, model settings): three different detectors.
DETECTORS = (
    ("tiny_fcos", {"name": "tiny_fcos"}),
    ("fcos_r10", {"name": "fcos", "backbone": "resnet10t"}),
    ("retina_mv3", {"name": "retinanet", "backbone": "mobilenetv3_small_050"}),
)
#: --fast: fewer images and epochs, two detectors, a smaller search (under 6 min on 2 cores).
FAST = {"train": 240, "test": 80, "epochs": 6, "detectors": 2}
FULL = {"train": 480, "test": 160, "epochs": 10, "detectors": 3}
FAST_SEARCH = {"iou_thrs": (0.5, 0.6), "skip_box_thrs": (0.0,), "max_rounds": 2}


def demo_data(workspace: Path, fast: bool) -> tuple[Path, Path]:
    from .synthetic import make_objects_dataset

    sizes = FAST if fast else FULL
    train, test = workspace / "data" / "train", workspace / "data" / "test"
    if not (train / "data.yaml").is_file():
        make_objects_dataset(train, sizes["train"], 96, seed=0, split="train")
    if not (test / "data.yaml").is_file():
        make_objects_dataset(test, sizes["test"], 96, seed=1, split="test")
    return train, test


def detect_demo_configs(workspace: Path, fast: bool, train: Path, test: Path,
                        epochs: int | None = None) -> list[ExperimentConfig]:  # fmt: skip
    sizes = FAST if fast else FULL
    configs = []
    for name, model in DETECTORS[: sizes["detectors"]]:
        base = {
            "task": "detect",
            "workspace": str(workspace),
            "name": name,
            "data": {
                "train": str(train),
                "test": str(test),
                "image_size": 96,
                "folds": 3,
                "num_workers": 0,
            },  # fmt: skip
            "model": model,
            "train": {
                "epochs": epochs or sizes["epochs"],
                "batch_size": 16,
                "lr": 0.003,
                "weight_decay": 0.0001,
                "scheduler": "cosine",
                "seed": 0,
                "tta": ["hflip"],
            },
            "augment": {"preset": "detect"},
            # At most 4 objects per image: 30 boxes keep mAP and make fusion and scoring 3x cheaper.
            "detect": {"max_detections": 30},
            "tracking": {"backend": "none"},
        }
        configs.append(load_config(None, [], base=base))
    return configs


def run_detect_demo(
    workspace: Path,
    fast: bool = False,
    console: Console | None = None,
    progress: bool = True,
    epochs: int | None = None,
    **_,
) -> dict:
    """The whole chain; returns the test mAP of the best box ensemble and of the best single run."""
    from ..._tables import print_leaderboard
    from ..demo_chain import best_pair, print_verdict, train_each
    from .ensembles import build_box_ensembles, leaderboard_view
    from .predict import write_detections

    console = console or Console()
    workspace = Path(workspace)
    console.rule("[bold]ensemblecv demo --task detect[/]" + (" (fast)" if fast else ""))
    train_dir, test_dir = demo_data(workspace, fast)
    configs = detect_demo_configs(workspace, fast, train_dir, test_dir, epochs)
    train_each(configs, console, progress)
    console.rule("box ensembles (tuned on OOF detections, scored nested)")
    params = {m: FAST_SEARCH for m in ("wbf", "nms", "soft_nms", "nmw")} if fast else None
    board = build_box_ensembles(workspace, params=params)
    print_leaderboard(leaderboard_view(board), "map", console)
    best, _ = best_pair(board, "map")
    console.rule(f"predict the test split with the best box ensemble, '{best['name']}'")
    out = workspace / "test_detections.csv"
    for line in write_detections(workspace, str(test_dir), out, str(best["name"]), {}):
        console.print(line)
    verdict = print_verdict(console, board, "map", "mAP@[.5:.95]", "box ensemble")
    console.print(f"Everything is in [bold]{workspace}[/]: data/, runs/, leaderboard.csv, "
                  "ensembles/, test_detections.csv")  # fmt: skip
    return {**verdict, "board": board}


__all__ = ["DETECTORS", "detect_demo_configs", "run_detect_demo"]
