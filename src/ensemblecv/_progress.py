"""Progress bars with rate and ETA, for library code and the CLI alike.

Library stages (scan, decode, jobs) show progress without importing the CLI
layer; ``ensemblecv.cli._console`` re-exports these for the commands.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext

from rich.console import Console

#: Bars and warnings go to stderr, so stdout stays clean for tables and piped output.
err_console = Console(stderr=True)


@contextmanager
def progress_bar(
    description: str, total: int, unit: str = "images"
) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n)``; shows count, rate and time remaining."""
    # Imported here: rich.progress is a sizeable import that `ensemblecv --help` never needs.
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

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


def maybe_progress(enabled: bool, description: str, total: int, unit: str = "images"):
    """:func:`progress_bar` when ``enabled``, else a context yielding a callable that does
    nothing: callers advance it unconditionally (a ``None`` here once crashed ``predict
    --no-progress`` after the whole segmentation demo had trained)."""
    return progress_bar(description, total, unit) if enabled else nullcontext(_no_bar)


def _no_bar(n: int = 1) -> None:
    """The advance of a disabled bar."""


__all__ = ["err_console", "maybe_progress", "progress_bar"]
