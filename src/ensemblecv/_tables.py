"""A display frame as a rich table: the leaderboard looks the same from the CLI and a demo."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.table import Table

if TYPE_CHECKING:
    import pandas as pd
    from rich.console import Console


def print_leaderboard(
    view: pd.DataFrame, metric: str | None, console: Console, max_rows: int = 25
) -> None:
    """A task's :meth:`~ensemblecv.tasks.base.Task.leaderboard_view`, best row in bold."""
    by = f", by {metric}" if metric else ""
    table = Table("#", *view.columns, title=f"Leaderboard (honest CV{by})")
    for i, row in enumerate(view.head(max_rows).itertuples(index=False)):
        table.add_row(str(i + 1), *map(str, row), style="bold" if i == 0 else None)
    console.print(table)
