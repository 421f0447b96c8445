"""The end-to-end demo: audit → small CNNs × 3 folds (+ refit) → ensembles → predict.

It is the README's main command and the smoke test of the whole chain, so it
uses only what works offline: a built-in dataset and built-in CNNs.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from ._registry import Registry
from .config import ExperimentConfig, load_config
from .data import builtin

#: One demo per task; a detection or segmentation demo registers here too.
_demos: Registry = Registry("demo task")

#: Both classification demos train two seeds of one network, each refitted on all training
#: images (the default protocol), with flips on whole batches and flip TTA: members of equal
#: strength that are differently wrong, so the ensemble beats every one of them on honest CV
#: and on the whole test set. Measured on 2 idle cores (docs/recipes.md, "The fast demo"):
#: the old members (cnn_small, which trains at 300 images/s here, beside weaker CNNs) let
#: cnn_small dominate every ensemble and took 12.8 minutes for the fast demo; a model trained
#: without flips scored 2.4 points lower with flip TTA.
DEMO_MODEL = "resnet9_small"
DEMO_SEEDS = 2

#: ``fast`` → (training images, epochs, resnet9_small width). Width 8 trains at about 1,100
#: images/s end to end, which buys the fast demo 8 epochs in under 5 minutes; the full demo
#: spends its time on width 16 and 10 epochs over 12,000 images.
DEMO_SIZES = {True: (5000, 8, 8), False: (12000, 10, 16)}


def demo_dataset() -> str:
    """Fashion-MNIST when its files are installed, else scikit-learn's digits."""
    return "fashion-mnist" if builtin.fashion_mnist_available() else "digits"


def demo_configs(
    workspace: Path,
    fast: bool,
    dataset: str | None = None,
    epochs: int | None = None,
    limit: int | None = None,
) -> list[ExperimentConfig]:
    """The demo's config (one run of ``DEMO_SEEDS`` seeds; a list, as other demos have several).

    ``epochs`` and ``limit`` shrink the demo (tests); everything else is what the demo runs.
    """
    dataset = dataset or demo_dataset()
    small = dataset == "digits"
    images, default_epochs, width = DEMO_SIZES[fast]
    data = {
        "train": dataset,
        "test": f"{dataset}:test",
        "image_size": 16 if small else 28,
        "channels": 1,
        "folds": 3,
        "resize": "stretch",
        "limit": limit or (None if small else images),
        "test_limit": None,  # the whole test set: 10,000 Fashion-MNIST images
    }
    # A mirrored garment is the same garment; a mirrored digit is another digit (or none).
    flips = not small
    train = {
        "epochs": epochs or default_epochs,
        "batch_size": 128,
        "lr": 0.002,
        "weight_decay": 0.01,
        "scheduler": "cosine",
        "seed": 0,
        "repeats": DEMO_SEEDS,
        "channels_last": True,
        "tta": ["hflip"] if flips else [],
    }
    base = {
        "workspace": str(workspace),
        "name": DEMO_MODEL,
        "data": data,
        "model": {"name": DEMO_MODEL, "kwargs": {"width": width}},
        "train": train,
        # Flips on whole batches (no per-image Python); these short schedules need no more.
        "augment": {"preset": "none", "batch": {"hflip": 0.5} if flips else None},
        "tracking": {"backend": "mlflow"},
    }
    return [load_config(None, [], base=base)]


def run_task_demo(task: str, workspace: Path, **kwargs):
    """``ensemblecv demo --task TASK``: the demo registered for ``task`` (default classify)."""
    return _demos.get(task)(workspace, **kwargs)


def list_demo_tasks() -> list[str]:
    return _demos.names()


def run_demo(
    workspace: Path,
    fast: bool = False,
    console: Console | None = None,
    progress: bool = True,
    dataset: str | None = None,
    epochs: int | None = None,
    limit: int | None = None,
) -> dict:
    """Run the whole chain; returns the test accuracies of the best ensemble and best single model."""
    from .audit import run_audit, summarize
    from .ensemble import build_ensembles
    from .inference import predict
    from .training import train
    from .training.inputs import limited, open_workspace

    console = console or Console()
    configs = demo_configs(workspace, fast, dataset, epochs, limit)
    first = configs[0]
    console.rule(f"[bold]ensemblecv demo[/] on {first.data.train}" + (" (fast)" if fast else ""))
    if first.data.train == "digits":
        console.print(
            "[yellow]Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist); using digits."
        )
    from .data.samples import load_samples

    audit = run_audit(
        limited(load_samples(first.data.train), first.data.limit),
        workspace / "audit",
        progress=progress,
        console=console,
    )
    summarize(audit.audit, console)
    open_workspace(first, progress=progress)
    for cfg in configs:
        console.rule(f"train {cfg.run_name}: {cfg.data.folds} folds × {cfg.train.epochs} epochs")
        train(cfg, progress=progress)
    console.rule("ensembles")
    board = build_ensembles(workspace, metric="accuracy")
    from ._tables import print_leaderboard
    from .tasks import get_task

    print_leaderboard(get_task("classify").leaderboard_view(board), "accuracy", console)
    ensembles = board[board["kind"] == "ensemble"]
    best = ensembles.iloc[0] if len(ensembles) else board.iloc[0]
    console.rule(f"predict {first.data.test} with the best ensemble, '{best['name']}'")
    test_table = limited(load_samples(first.data.test), first.data.test_limit)
    frame, probs, table, _ = predict(workspace, test_table, str(best["name"]))
    frame.to_csv(workspace / "submission.csv", index=False)
    truth = table.frame["label"].to_numpy()
    ensemble_acc = float((probs.argmax(1) == truth).mean())
    singles = board[board["kind"] == "model"]
    best_single = singles.sort_values("accuracy", ascending=False).iloc[0]
    single_acc = float(best_single["test_accuracy"])
    best_on_test = float(singles["test_accuracy"].max())
    console.print(_verdict(best, ensemble_acc, best_single, singles))
    console.print(
        f"Everything is in [bold]{workspace}[/]: audit/, runs/, leaderboard.csv, ensembles/, submission.csv"
    )
    return {
        "ensemble": best["name"],
        "ensemble_test_accuracy": ensemble_acc,
        "ensemble_cv_accuracy": float(best["accuracy"]),
        "best_single": best_single["name"],
        "best_single_test_accuracy": single_acc,
        "best_single_cv_accuracy": float(best_single["accuracy"]),
        "best_member_test_accuracy": best_on_test,
    }


def _verdict(best, ensemble_test: float, best_single, singles) -> str:
    """The demo's last word: the ensemble against every member, on honest CV and on test."""
    cv_gain = (float(best["accuracy"]) - float(best_single["accuracy"])) * 100
    top = singles.sort_values("test_accuracy", ascending=False).iloc[0]
    test_gain = (ensemble_test - float(top["test_accuracy"])) * 100

    def says(gain: float, where: str) -> str:
        if gain > 0:
            return f"beats every member on {where} ({gain:+.2f} points)"
        word = "ties" if gain == 0 else "[red]falls short of[/]"
        return f"{word} the best member on {where} ({gain:+.2f} points)"

    return (
        f"Best ensemble [bold]{best['name']}[/]: honest CV {float(best['accuracy']):.4f}, "
        f"test [bold green]{ensemble_test:.4f}[/]. Best member on CV: {best_single['name']} "
        f"{float(best_single['accuracy']):.4f} (test {float(best_single['test_accuracy']):.4f}); "
        f"best on test: {top['name']} {float(top['test_accuracy']):.4f}. The ensemble "
        f"{says(cv_gain, 'CV')} and {says(test_gain, 'test')}."
    )


@_demos.register("classify")
def _classify_demo(workspace: Path, **kwargs):
    return run_demo(workspace, **kwargs)


@_demos.register("domains")
def _domains_demo(workspace: Path, **kwargs):
    from .domains.demo import run_domains_demo

    return run_domains_demo(workspace, **kwargs)


@_demos.register("segment")
def _segment_demo(workspace: Path, **kwargs):
    from .tasks.segment.demo import run_segment_demo

    return run_segment_demo(workspace, **kwargs)


@_demos.register("detect")
def _detect_demo(workspace: Path, **kwargs):
    from .tasks.detect.demo import run_detect_demo

    return run_detect_demo(workspace, **kwargs)
