"""The bad-input list every reader keeps: one row per bad file or label, with its reason.

Readers never skip input silently: what they drop or repair is a row of a table
(``reason`` plus a ``detail``), summarised in one warning (or the error, with
``strict``) and written beside the workspace as CSV with each reason's meaning,
so a person can open the list in a spreadsheet and fix the files.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd

from ..errors import format_list


def bad_summary_text(bad: pd.DataFrame, noun: str, items: Iterable[str], limit: int = 5) -> str:
    """``'3 bad file(s): 2 size_mismatch, 1 mask_missing'`` and the first ``limit`` ``items``
    (one line per row of ``bad``, as the reader words it)."""
    counts = Counter(bad["reason"])
    head = f"{len(bad)} bad {noun}(s): " + ", ".join(f"{n} {r}" for r, n in counts.most_common())
    return head + "\n" + format_list(list(items), limit)


def write_bad_table(bad: pd.DataFrame, path: str | os.PathLike, reasons: Mapping[str, str]) -> Path:
    """``bad`` as CSV with a ``meaning`` column (``reasons[reason]``); the folder is made."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = bad.copy()
    out["meaning"] = out["reason"].map(reasons).fillna("")
    out.to_csv(path, index=False)
    return path


__all__ = ["bad_summary_text", "write_bad_table"]
