"""The DomainBed-style table: accuracy on each held-out domain and their average.

Read from the sub-workspaces' leaderboards (``test_accuracy`` there is the accuracy
on that sub-experiment's unseen domain), so it never retrains. Two labelled extra
rows: ``selected (training-domain val.)`` — per held-out domain, the run or ensemble
ranked first on training-domain out-of-fold accuracy, which is the honest number —
and ``oracle (test-domain selection, upper bound)``, the best one per domain chosen by looking at
the test domain, an upper bound only.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

SELECTED = "selected (training-domain val.)"
ORACLE = "oracle (test-domain selection, upper bound)"
_SEED_SUFFIX = re.compile(r"_r\d+$")


def domain_table(root: str | Path) -> pd.DataFrame:
    """One row per run/ensemble: ``name, kind, <domain>..., average, train_cv``.

    ``average`` is over held-out domains (NaN unless the row has every domain);
    ``train_cv`` is the mean honest CV accuracy on the training domains.
    """
    from .layout import protocol_domains, sub_workspaces

    subs = sub_workspaces(root)
    test, cv, kinds, selected, oracle = {}, {}, {}, {}, {}
    for domain, ws in subs.items():
        path = ws / "leaderboard.csv"
        if not path.is_file():
            continue
        board = pd.read_csv(path)
        if "test_accuracy" not in board.columns or board.empty:
            continue
        for _, r in board.iterrows():
            test.setdefault(r["name"], {})[domain] = float(r["test_accuracy"])
            cv.setdefault(r["name"], {})[domain] = float(r["accuracy"])
            kinds[r["name"]] = r["kind"]
        selected[domain] = float(board.loc[0, "test_accuracy"])  # leaderboards are ranked
        oracle[domain] = float(board["test_accuracy"].max())
    # Every domain of the protocol is a column; one not trained yet is NaN, and so is the
    # average of any row that lacks a domain (an average over fewer domains misleads).
    domains = protocol_domains(root)
    rows = []
    for name, per in test.items():
        rows.append(
            {"name": name, "kind": kinds[name], **per, "train_cv": np.mean(list(cv[name].values()))}
        )
    rows.append({"name": SELECTED, "kind": "selection", **selected})
    rows.append({"name": ORACLE, "kind": "oracle", **oracle})
    frame = pd.DataFrame(rows, columns=["name", "kind", *domains, "train_cv"])
    values = frame[domains].to_numpy(dtype=float)
    frame.insert(2 + len(domains), "average", values.mean(1) if domains else np.nan)
    return frame


def write_domain_table(root: str | Path) -> pd.DataFrame:
    """Write ``domains.csv`` and the protocol's ``leaderboard.csv`` (ranked by training-domain CV)."""
    root = Path(root)
    frame = domain_table(root)
    frame.to_csv(root / "domains.csv", index=False)
    board = frame[frame["kind"].isin(["model", "ensemble"])]
    board = board.rename(columns={"train_cv": "accuracy", "average": "test_accuracy"})
    board = board.sort_values(["accuracy", "kind"], ascending=[False, False], kind="stable")
    board[["name", "kind", "accuracy", "test_accuracy"]].to_csv(
        root / "leaderboard.csv", index=False
    )
    return frame


def seed_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows grouped by family (run name without ``_rN``): mean and std over seeds.

    Columns ``family, kind, seeds`` then ``<col>`` and ``<col>_std`` for every held-out
    domain and ``average`` (std NaN for a family of one).
    """
    cols = [c for c in frame.columns if c not in ("name", "kind", "train_cv")]
    frame = frame.assign(family=[_SEED_SUFFIX.sub("", str(n)) for n in frame["name"]])
    out = []
    for family, group in frame.groupby("family", sort=False):
        row = {"family": family, "kind": group["kind"].iloc[0], "seeds": len(group)}
        for c in cols:
            v = group[c].to_numpy(dtype=float)
            row[c] = float(np.mean(v))
            row[f"{c}_std"] = float(np.std(v, ddof=1)) if len(v) > 1 else float("nan")
        out.append(row)
    rank = {"model": 0, "ensemble": 1, "selection": 2, "oracle": 3}
    frame = pd.DataFrame(out)
    order = sorted(range(len(frame)), key=lambda i: (rank.get(out[i]["kind"], 4), out[i]["family"]))
    return frame.iloc[order].reset_index(drop=True)


def _cell(mean: float, std: float) -> str:
    if np.isnan(mean):
        return "-"
    return f"{100 * mean:.1f}" + ("" if np.isnan(std) else f"±{100 * std:.1f}")


def format_summary(summary: pd.DataFrame) -> list[list[str]]:
    """Rows of strings ``family, seeds, <domain> mean ± std ..., average``, in percent."""
    cols = [c for c in summary.columns if c not in ("family", "kind", "seeds") and
            not c.endswith("_std")]  # fmt: skip
    return [
        [str(r["family"]), str(r["seeds"]), *(_cell(r[c], r[f"{c}_std"]) for c in cols)]
        for _, r in summary.iterrows()
    ]


def print_domain_table(frame: pd.DataFrame, console=None, title: str | None = None) -> None:
    """The table grouped over seeds (mean ± std, percent), as DomainBed prints it."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    summary = seed_summary(frame)
    cols = [c for c in summary.columns if c not in ("family", "kind", "seeds") and
            not c.endswith("_std")]  # fmt: skip
    table = Table(title=title or "Leave-one-domain-out accuracy (%) on each held-out domain")
    # Numbers never wrap or truncate; long names fold (an 80-column terminal fits 4 domains).
    table.add_column("run / ensemble", max_width=22, overflow="fold")
    table.add_column("n", justify="right", min_width=1)
    for c in cols:
        table.add_column(c, justify="right", no_wrap=True, min_width=len("88.8±8.8"))
    for cells in format_summary(summary):
        table.add_row(*cells)
    console.print(table)
