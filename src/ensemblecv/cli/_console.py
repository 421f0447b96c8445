"""One rich console for the CLI, plus progress bars with rate and ETA."""

from __future__ import annotations

from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=False)
err_console = Console(stderr=True)


def error(message: str) -> None:
    err_console.print(f"[bold red]error:[/] {escape(message)}")


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    err_console.print(f"[yellow]warning:[/] {escape(str(message))}")


@contextmanager
def progress_bar(description: str, total: int, unit: str = "images"):
    """Yield ``advance(n)``; shows count, rate and time remaining."""
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=err_console, transient=False) as progress:
        task = progress.add_task(description, total=total, rate="")

        def advance(n: int) -> None:
            progress.advance(task, n)
            speed = progress.tasks[task].speed
            if speed:
                # Slow items (jobs, trials) read better as seconds per item.
                rate = (
                    f"{speed:,.0f} {unit}/s"
                    if speed >= 1
                    else f"{1 / speed:,.1f} s/{unit.rstrip('s')}"
                )
                progress.update(task, rate=rate)

        yield advance
