"""The demos' shared verdict: best ensemble vs best single model, on test and on honest CV."""

import io

import pandas as pd
from rich.console import Console

from ensemblecv.tasks.demo_chain import best_pair, print_verdict


def _board(ens_cv: float, ens_test: float) -> pd.DataFrame:
    rows = [
        ("a+tta", "model", 0.40, 0.39),
        ("greedy", "ensemble", ens_cv, ens_test),
        ("mean", "ensemble", 0.30, 0.45),
        ("b", "model", 0.36, 0.41),
    ]
    board = pd.DataFrame(rows, columns=["name", "kind", "miou", "test_miou"])
    return board.sort_values("miou", ascending=False).reset_index(drop=True)


def _verdict(board):
    buf = io.StringIO()
    out = print_verdict(Console(file=buf, width=300), board, "miou", "mIoU")
    return out, buf.getvalue()


def test_best_pair_picks_each_kind_by_cv_not_by_test():
    best, single = best_pair(_board(0.38, 0.42), "miou")
    assert (best["name"], single["name"]) == ("greedy", "a+tta")  # not "mean", not "b"


def test_verdict_says_when_cv_and_test_disagree():
    out, text = _verdict(_board(0.38, 0.42))
    assert out["ensemble_test_miou"] == 0.42 and out["best_single_test_miou"] == 0.39
    assert out["ensemble_cv_miou"] == 0.38 and out["best_single_cv_miou"] == 0.40
    assert "(+3.00 points)" in text and "CV and test disagree" in text
    assert "Leaderboard best overall (nested CV): a+tta" in text


def test_verdict_is_quiet_when_they_agree():
    out, text = _verdict(_board(0.45, 0.42))
    assert out["ensemble"] == "greedy" and "disagree" not in text
    assert "best overall (nested CV): greedy" in text
