"""One rich console for the CLI; progress bars come from :mod:`ensemblecv._progress`."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

from .._progress import err_console, progress_bar  # noqa: F401  (re-exported for the commands)

console = Console(stderr=False)


def error(message: str) -> None:
    err_console.print(f"[bold red]error:[/] {escape(message)}")


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    err_console.print(f"[yellow]warning:[/] {escape(str(message))}")
