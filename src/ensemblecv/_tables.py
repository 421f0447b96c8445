"""A display frame as a rich table: the leaderboard looks the same from the CLI and a demo."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.table import Table

if TYPE_CHECKING:
    import pandas as pd
    from rich.console import Console


def board_view(board: pd.DataFrame, columns: dict[str, str]) -> pd.DataFrame:
    """A leaderboard as display strings, the frame every task's ``leaderboard_view`` returns.

    ``columns`` maps a display header to a score column of ``board``; a score column the
    board lacks (no labelled test split, no optimistic score) is left out, a missing value
    shows as ``-``, and long member lists are cut, so every task's board reads alike."""
    import pandas as pd

    view = pd.DataFrame(
        {
            "name": board["name"].astype(str),
            "kind": board["kind"].astype(str),
            "members": [m if len(m) < 40 else m[:37] + "..." for m in board["members"].astype(str)],
        }
    )
    for header, column in columns.items():
        if column in board.columns:
            view[header] = ["-" if pd.isna(v) else f"{v:.4f}" for v in board[column]]
    return view


def print_leaderboard(
    view: pd.DataFrame, metric: str | None, console: Console, max_rows: int = 25
) -> None:
    """A task's :meth:`~ensemblecv.tasks.base.Task.leaderboard_view`, best row in bold."""
    by = f", by {metric}" if metric else ""
    table = Table("#", *view.columns, title=f"Leaderboard (honest CV{by})")
    for i, row in enumerate(view.head(max_rows).itertuples(index=False)):
        table.add_row(str(i + 1), *map(str, row), style="bold" if i == 0 else None)
    console.print(table)
