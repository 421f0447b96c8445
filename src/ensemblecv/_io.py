"""Small file helpers shared by every stage (kept free of heavy imports)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so readers never see half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """``write(tmp)``, then rename ``tmp`` onto ``path``: readers see no file or a whole one.

    The temporary name is unique to the process, so several processes writing
    the same file at once (e.g. the ranks of a DDP launch) never mix their bytes;
    the last rename wins.
    """
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
