"""Exceptions that carry a message meant for the user, not a stack trace.

The CLI prints these as a one-paragraph error and exits non-zero; anything else
is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class EnsembleCVError(Exception):
    """Base class for errors caused by the user's input (data, config, paths)."""


class DataError(EnsembleCVError):
    """The dataset, its index or its files are not usable as given."""


class ConfigError(EnsembleCVError):
    """The experiment config is invalid (unknown key, wrong type or value)."""


class ImageLoadError(EnsembleCVError):
    """One image file cannot be decoded; ``reason`` is a short machine-readable tag."""

    def __init__(self, path: str, reason: str, detail: str = "") -> None:
        self.path = path
        self.reason = reason
        self.detail = detail
        super().__init__(f"{path}: {reason}" + (f" ({detail})" if detail else ""))


def unknown_name_message(kind: str, name: str, choices: Iterable[str]) -> str:
    """'Unknown model 'resnet5'; did you mean resnet50? Available: ...' — never guess silently."""
    choices = sorted(choices)
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
    msg = f"Unknown {kind} {name!r}."
    if close:
        msg += f" Did you mean {', '.join(close)}?"
    shown = ", ".join(choices[:30]) + (" ..." if len(choices) > 30 else "")
    return msg + f" Available: {shown}"


def format_list(items: list[str], limit: int = 10) -> str:
    """Render the first ``limit`` items one per line, with a count of the rest."""
    lines = [f"  - {item}" for item in items[:limit]]
    if len(items) > limit:
        lines.append(f"  ... and {len(items) - limit} more")
    return "\n".join(lines)
