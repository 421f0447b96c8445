"""Exclusion lists (``data.exclude``): sample ids left out of training.

Kept apart from :mod:`ensemblecv.label_issues`, which writes them, so that
training reads them without importing the ensemble and prediction-store stack.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..errors import EnsembleCVError

EXCLUSION_COLUMNS = ["sample_id", "reason"]


def read_exclusions(path: str | Path) -> pd.DataFrame:
    """The ``sample_id,reason`` table of an exclusion file (``reason`` optional, ids unique)."""
    path = Path(path)
    if not path.is_file():
        raise EnsembleCVError(f"Exclusion list {path} does not exist.")
    df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    if "sample_id" not in df.columns:
        raise EnsembleCVError(
            f"{path} needs a 'sample_id' column (found: {', '.join(df.columns)}); "
            "write it with `ensemblecv label-issues --write-exclusions`."
        )
    if "reason" not in df.columns:
        df["reason"] = ""
    df = df[EXCLUSION_COLUMNS]
    df = df[df["sample_id"].str.strip() != ""].drop_duplicates("sample_id").reset_index(drop=True)
    return df


__all__ = ["EXCLUSION_COLUMNS", "read_exclusions"]
