"""Decode every image once, before training, in parallel.

The scan is what lets training promise that a DataLoader worker never meets a
bad file: every file is fully decoded here, failures are collected with their
reason, and the statistics the audit needs (size, mode, brightness, channel
moments, content hash) come from the same pass — so the audit costs one decode
per image and never holds more than one image's pixels per worker.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from ..errors import DataError, ImageLoadError, format_list
from .imageio import MAX_PIXELS, REASONS, is_virtual, open_image, to_channels
from .samples import SampleTable

#: Statistics are computed on a copy no larger than this (pixels per side):
#: exact enough for mean/std and brightness, and cheap for 24-megapixel photos.
STATS_SIDE = 256

_EXT_FORMATS = {
    ".jpg": "JPEG", ".jpeg": "JPEG", ".jpe": "JPEG", ".jfif": "JPEG", ".png": "PNG",
    ".gif": "GIF", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF", ".webp": "WEBP",
}  # fmt: skip

STAT_COLUMNS = [
    "ok", "reason", "detail", "width", "height", "mode", "format", "format_mismatch",
    "brightness", "contrast", "gray_mean", "gray_sq", "r_mean", "g_mean", "b_mean",
    "r_sq", "g_sq", "b_sq", "hash",
]  # fmt: skip


def _file_hash(path: str) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def scan_one(path: str, max_pixels: int = MAX_PIXELS, stats: bool = True) -> tuple:
    """Decode one file and return a row of :data:`STAT_COLUMNS`; never raises for bad files.

    ``stats=False`` only decodes (the pixel statistics and the hash are NaN and ""): what a
    test set needs, whose files must decode but feed no audit, normalisation or dedup.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. PIL's palette-transparency notice
            img = open_image(path, max_pixels=max_pixels)
            width, height, mode, fmt = img.width, img.height, img.mode, img.format
            if not stats:
                ext_fmt = _EXT_FORMATS.get(Path(path).suffix.lower())
                mismatch = bool(ext_fmt and fmt and ext_fmt != fmt and fmt != "MPO")
                fmt = "array" if is_virtual(path) else fmt
                head = (True, "", "", width, height, mode, fmt or "", mismatch)
                return head + (np.nan,) * 10 + ("",)
            if max(width, height) > STATS_SIDE:
                img.thumbnail((STATS_SIDE, STATS_SIDE))
            rgb = to_channels(img, 3).astype(np.float32) / 255.0
            gray = to_channels(img, 1).astype(np.float32) / 255.0
        if is_virtual(path):
            digest = hashlib.blake2b(np.asarray(img).tobytes(), digest_size=16).hexdigest()
            fmt = "array"
        else:
            digest = _file_hash(path)
        ext_fmt = _EXT_FORMATS.get(Path(path).suffix.lower())
        mismatch = bool(ext_fmt and fmt and ext_fmt != fmt and fmt != "MPO")
        means = rgb.reshape(-1, 3).mean(0)
        sqs = (rgb.reshape(-1, 3) ** 2).mean(0)
        g = gray.ravel()
        return (
            True,
            "",
            "",
            width,
            height,
            mode,
            fmt or "",
            mismatch,
            float(g.mean()),
            float(g.std()),
            float(g.mean()),
            float((g**2).mean()),
            *map(float, means),
            *map(float, sqs),
            digest,
        )
    except ImageLoadError as exc:
        return (False, exc.reason, exc.detail, 0, 0, "", "", False, *([np.nan] * 10), "")
    except Exception as exc:  # a decoder bug must not kill the scan of 100k files
        return (
            False,
            "unreadable",
            f"{type(exc).__name__}: {exc}",
            0,
            0,
            "",
            "",
            False,
            *([np.nan] * 10),
            "",
        )


def _scan_chunk(paths: list[str], max_pixels: int, stats: bool = True) -> list[tuple]:
    return [scan_one(p, max_pixels, stats) for p in paths]


@dataclass
class ScanResult:
    """Per-sample decode results aligned with the scanned table's rows."""

    table: SampleTable
    stats: pd.DataFrame

    @property
    def ok(self) -> np.ndarray:
        return self.stats["ok"].to_numpy(dtype=bool)

    def bad_files(self) -> pd.DataFrame:
        bad = self.stats.loc[~self.ok, ["reason", "detail"]]
        out = pd.DataFrame(
            {
                "path": self.table.frame.loc[~self.ok, "path"].to_numpy(),
                "sample_id": self.table.frame.loc[~self.ok, "sample_id"].to_numpy(),
                "reason": bad["reason"].to_numpy(),
                "detail": bad["detail"].to_numpy(),
            }
        )
        out["explanation"] = out["reason"].map(REASONS).fillna("")
        return out


#: Decode in worker processes only when one process would take longer than this (seconds,
#: estimated from the first chunk): below it, starting the workers costs more than it saves.
PARALLEL_AFTER_S = 8.0


def default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def scan_table(
    table: SampleTable,
    workers: int | None = None,
    max_pixels: int = MAX_PIXELS,
    progress: Callable[[int], None] | None = None,
    chunk_size: int = 256,
    stats: bool = True,
) -> ScanResult:
    """Decode every sample of ``table``; ``progress(n_done)`` is called after each chunk.

    ``workers=0`` decodes in this process (used by tests and tiny datasets).
    ``stats=False`` checks that each file decodes and skips the statistics (see :func:`scan_one`).
    """
    paths = table.frame["path"].tolist()
    chunks = [paths[i : i + chunk_size] for i in range(0, len(paths), chunk_size)]
    workers = default_workers() if workers is None else workers
    rows: list[tuple] = []
    done = 0  # chunks decoded in this process so far
    if workers > 0 and len(chunks) > 1:
        # Time the first chunk here: worker processes pay a start-up (imports, and the
        # built-in arrays loaded once per worker) that only a long scan earns back.
        start = time.perf_counter()
        rows = _scan_chunk(chunks[0], max_pixels, stats)
        done = 1
        if progress:
            progress(len(chunks[0]))
        per_image = (time.perf_counter() - start) / len(chunks[0])
        if per_image * (len(paths) - len(chunks[0])) > PARALLEL_AFTER_S:
            try:
                rows += _scan_parallel(chunks[1:], workers, max_pixels, progress, stats)
                done = len(chunks)
            except BrokenProcessPool as exc:
                # e.g. a __main__ that worker processes cannot re-import (code piped to python).
                warnings.warn(
                    f"Parallel decoding failed ({exc}); decoding in this process instead.",
                    RuntimeWarning,
                    stacklevel=2,
                )
                rows = rows[: len(chunks[0])]
    for chunk in chunks[done:]:
        rows += _scan_chunk(chunk, max_pixels, stats)
        if progress:
            progress(len(chunk))
    return ScanResult(table, pd.DataFrame(rows, columns=STAT_COLUMNS))


def _scan_parallel(
    chunks: list[list[str]], workers: int, max_pixels: int, progress, stats: bool = True
) -> list[tuple]:
    # forkserver, not fork: forking a process that has started torch's thread
    # pools can crash the child.
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["ensemblecv.data.scan"])  # import once, fork workers from it
    rows: list[tuple] = []
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        n = len(chunks)
        for chunk, result in zip(
            chunks, pool.map(_scan_chunk, chunks, [max_pixels] * n, [stats] * n)
        ):
            rows += result
            if progress:
                progress(len(chunk))
    return rows


def exclude_bad(
    scan: ScanResult, strict: bool = False, report_path: Path | None = None
) -> SampleTable:
    """The table without undecodable files, after saying which ones and why.

    With ``strict`` any bad file aborts with the full reason list. Otherwise the
    list is written to ``report_path`` (CSV) and a warning names the first few.
    """
    bad = scan.bad_files()
    if bad.empty:
        return scan.table
    items = [
        f"{p}: {r}" + (f" ({d})" if d else "") for p, r, d in zip(bad.path, bad.reason, bad.detail)
    ]
    if report_path is not None:
        report_path.parent.mkdir(parents=True, exist_ok=True)
        bad.to_csv(report_path, index=False)
    where = f" Full list: {report_path}." if report_path is not None else ""
    if strict:
        raise DataError(
            f"{len(bad)} image file(s) cannot be used (--strict):\n{format_list(items)}{where}"
        )
    warnings.warn(
        f"Excluding {len(bad)} unreadable image file(s):\n{format_list(items, 5)}{where}",
        UserWarning,
        stacklevel=2,
    )
    return scan.table.subset(scan.ok)


def duplicate_groups(table: SampleTable, hashes: pd.Series) -> SampleTable:
    """Put byte-identical files in one group (merged with user groups), for leakage-safe folds.

    A sample's group becomes the smallest sample id of its connected component,
    joining "same user group" and "same content hash" edges, so it is stable
    across runs.
    """
    frame = table.frame.copy()
    n = len(frame)
    parent = np.arange(n)

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union_by(keys: pd.Series) -> None:
        valid = keys.notna() & (keys.astype(str) != "")
        for _, idx in frame.index[valid.to_numpy()].to_series().groupby(keys[valid].to_numpy()):
            first = find(int(idx.iloc[0]))
            for j in idx.iloc[1:]:
                parent[find(int(j))] = first

    union_by(frame["group"])
    union_by(pd.Series(hashes.to_numpy(), index=frame.index))
    roots = np.array([find(i) for i in range(n)])
    ids = frame["sample_id"].to_numpy()
    smallest = pd.Series(ids).groupby(roots).transform("min").to_numpy()
    sizes = pd.Series(roots).map(pd.Series(roots).value_counts()).to_numpy()
    frame["group"] = pd.Series(np.where(sizes > 1, smallest, None), index=frame.index, dtype=object)
    return SampleTable(frame, table.classes, table.source, table.root, table.ignored, table.extra)


def open_for_preview(path: str, channels: int = 3) -> Image.Image:
    """A decoded image as PIL (for grids and galleries) in the requested channel count."""
    arr = to_channels(open_image(path), channels)
    return Image.fromarray(arr[:, :, 0] if channels == 1 else arr)


def normalization_stats(stats: pd.DataFrame) -> dict:
    """Dataset mean/std in [0, 1] for 1 and 3 channels, each image weighted equally.

    Equal weights match what the model sees after every image is resized to
    the same size, whatever its original resolution.
    """
    ok = stats[stats["ok"].astype(bool)]

    def moments(mean_cols: list[str], sq_cols: list[str]) -> dict:
        if ok.empty:
            return {"mean": [float("nan")] * len(mean_cols), "std": [float("nan")] * len(mean_cols)}
        mean = ok[mean_cols].to_numpy(dtype=np.float64).mean(0)
        sq = ok[sq_cols].to_numpy(dtype=np.float64).mean(0)
        std = np.sqrt(np.maximum(sq - mean**2, 0.0))
        return {
            "mean": [round(float(v), 6) for v in mean],
            "std": [round(float(v), 6) for v in std],
        }

    return {
        "gray": moments(["gray_mean"], ["gray_sq"]),
        "rgb": moments(["r_mean", "g_mean", "b_mean"], ["r_sq", "g_sq", "b_sq"]),
    }
