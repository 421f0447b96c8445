"""The tail every task's demo shares: train each config, then the verdict of the best
ensemble against the best single model, on test and on honest CV.

A demo exists to show what ensembling buys, so its last lines must say both sides:
the test set (what a reader believes) and nested CV (what the leaderboard ranks by),
and say so when they disagree rather than let the test line speak alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd
    from rich.console import Console


def train_each(configs: list, console: Console, progress: bool) -> None:
    """``train`` every config in turn, each under a rule naming its folds and epochs."""
    from ..training import train

    for cfg in configs:
        console.rule(f"train {cfg.run_name}: {cfg.data.folds} folds × {cfg.train.epochs} epochs")
        train(cfg, progress=progress)


def best_pair(board: pd.DataFrame, metric: str) -> tuple[pd.Series, pd.Series]:
    """(best ensemble, best single model) of a leaderboard, each by its honest CV ``metric``;
    the best row overall stands in for the ensemble when there is none."""
    ensembles = board[board["kind"] == "ensemble"].sort_values(metric, ascending=False)
    singles = board[board["kind"] == "model"].sort_values(metric, ascending=False)
    best = ensembles.iloc[0] if len(ensembles) else board.iloc[0]
    return best, singles.iloc[0]


def print_verdict(
    console: Console, board: pd.DataFrame, metric: str, label: str, ensemble_noun: str = "ensemble"
) -> dict:
    """Print and return the test and CV comparison of :func:`best_pair` (``label``: the
    metric as people write it, e.g. ``mIoU``); the test score column is ``test_<metric>``."""
    best, single = best_pair(board, metric)
    ens, one = float(best[f"test_{metric}"]), float(single[f"test_{metric}"])
    cv_ens, cv_one = float(best[metric]), float(single[metric])
    sign = "+" if ens >= one else ""
    console.print(
        f"Test {label}: best {ensemble_noun} [bold]{best['name']}[/] = [bold green]{ens:.4f}[/]; "
        f"best single model [bold]{single['name']}[/] = {one:.4f} ({sign}{(ens - one) * 100:.2f} "
        "points)."
    )
    agree = (cv_ens >= cv_one) == (ens >= one)
    console.print(
        f"Honest CV {label}: {best['name']} {cv_ens:.4f}, {single['name']} {cv_one:.4f}"
        + ("" if agree else " (CV and test disagree: the difference is within what this many "
           "images can tell apart)")
        + f". Leaderboard best overall (nested CV): {board.loc[0, 'name']}."
    )  # fmt: skip
    return {
        "ensemble": str(best["name"]),
        f"ensemble_test_{metric}": ens,
        f"ensemble_cv_{metric}": cv_ens,
        "best_single": str(single["name"]),
        f"best_single_test_{metric}": one,
        f"best_single_cv_{metric}": cv_one,
    }


__all__ = ["best_pair", "print_verdict", "train_each"]
