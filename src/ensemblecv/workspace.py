"""One folder per experiment: the sample table, the folds and every run live in it.

``prepare_workspace`` is the single road from a raw dataset to the fixed
tables every later stage reads (``samples.parquet``, ``classes.json``,
``folds.parquet``): scan → exclude bad files (listed) → group exact duplicates
→ stratified (group) K-fold. It runs once; afterwards the workspace only
checks that the dataset still matches what was split.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ._io import atomic_write
from .data.folds import load_folds, make_folds, save_folds
from .data.groups import apply_groups
from .data.samples import SampleTable, load_classes, load_samples, save_classes
from .data.scan import ScanResult, duplicate_groups, exclude_bad, normalization_stats, scan_table
from .errors import DataError


@dataclass(frozen=True)
class Workspace:
    root: Path

    @property
    def samples_path(self) -> Path:
        return self.root / "samples.parquet"

    @property
    def folds_path(self) -> Path:
        return self.root / "folds.parquet"

    @property
    def classes_path(self) -> Path:
        return self.root / "classes.json"

    @property
    def bad_files_path(self) -> Path:
        return self.root / "bad_files.csv"

    @property
    def stats_path(self) -> Path:
        return self.root / "stats.json"

    @property
    def info_path(self) -> Path:
        return self.root / "workspace.json"

    def info(self) -> dict:
        return (
            json.loads(self.info_path.read_text(encoding="utf-8"))
            if self.info_path.is_file()
            else {}
        )

    def normalization(self) -> dict:
        """Dataset mean/std (``{'gray': {...}, 'rgb': {...}}``) measured when the workspace was made."""
        return json.loads(self.stats_path.read_text(encoding="utf-8"))

    def run_dir(self, name: str) -> Path:
        return self.runs_dir / name

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def audit_dir(self) -> Path:
        return self.root / "audit"

    def is_prepared(self) -> bool:
        return (
            self.samples_path.is_file()
            and self.folds_path.is_file()
            and self.classes_path.is_file()
        )

    def load_table(self) -> SampleTable:
        if not self.is_prepared():
            raise DataError(
                f"{self.root} is not a prepared workspace (run `ensemblecv split DATA --workspace {self.root}`)."
            )
        frame = pd.read_parquet(self.samples_path)
        frame["group"] = frame["group"].astype(object).where(frame["group"].notna(), None)
        return SampleTable(frame, load_classes(self.classes_path), str(self.root))

    def load_folds(self) -> pd.DataFrame:
        return load_folds(self.folds_path)


def prepare_workspace(
    root: str | Path,
    data: str | SampleTable,
    folds: int = 5,
    seed: int = 0,
    strict: bool = False,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
    scan: ScanResult | None = None,
    groups: str | Path | None = None,
) -> Workspace:
    """Create (or verify) the workspace tables for ``data``; idempotent.

    A second call with the same data reuses the saved folds, so every model
    in the workspace is trained and scored on the same split. Pass ``scan``
    to reuse the audit's decode pass.
    """
    ws = Workspace(Path(root))
    table = data if isinstance(data, SampleTable) else load_samples(data)
    if scan is None:
        scan = scan_table(table, workers=workers, progress=progress)
    ws.root.mkdir(parents=True, exist_ok=True)
    # A prepared workspace's bad-file list belongs to its data: never overwrite it here.
    report = None if ws.is_prepared() else ws.bad_files_path
    good = exclude_bad(scan, strict=strict, report_path=report)
    hashes = scan.stats.loc[scan.ok, "hash"].reset_index(drop=True)
    good = duplicate_groups(good, hashes)
    if groups:
        good = apply_groups(good, groups)  # near-duplicate groups from `ensemblecv dedup`
    if ws.is_prepared():
        saved_classes = load_classes(ws.classes_path)
        if saved_classes != good.classes:
            raise DataError(
                f"{ws.root} was prepared with classes {saved_classes[:5]}..., but the data now has "
                f"{good.classes[:5]}...; use a new workspace for a different dataset."
            )
        load_folds(ws.folds_path, good)
        return ws
    fold_table = make_folds(good, k=folds, seed=seed)
    # Every table is written atomically and folds.parquet last, so `is_prepared()`
    # (what other processes, e.g. DDP ranks waiting on rank 0, poll) only turns true
    # once every table is complete; concurrent writers would write identical bytes.
    stats = json.dumps(normalization_stats(scan.stats), indent=1)
    atomic_write(ws.stats_path, lambda p: p.write_text(stats, encoding="utf-8"))
    info = json.dumps(
        {
            "source": table.source,
            "folds": folds,
            "fold_seed": seed,
            "samples": len(good),
            "excluded": int((~scan.ok).sum()),
        },
        indent=1,
        ensure_ascii=False,
    )
    atomic_write(ws.info_path, lambda p: p.write_text(info, encoding="utf-8"))
    atomic_write(ws.classes_path, lambda p: save_classes(good.classes, p))
    atomic_write(ws.samples_path, lambda p: good.frame.to_parquet(p, index=False))
    atomic_write(ws.folds_path, lambda p: save_folds(fold_table, p))
    return ws
