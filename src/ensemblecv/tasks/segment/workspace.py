"""The segmentation workspace: the tables every run reads, written once.

``samples.parquet``: ``sample_id, path, image_path, mask_path, width, height,
group`` (+ ``split`` for VOC) — ``path`` repeats ``image_path`` for the
task-blind readers of the table (reports, Grad-CAM). COCO masks are
rasterised once into ``WORKSPACE/masks/<sample id>.png`` (palette PNGs of
class indices) and ``mask_path`` points there, so training decodes a PNG
whatever the source. ``pixels.parquet``: pixels per class per image
(``sample_id`` + one column per class, ``ignored``), measured on read.
``classes.json``, ``folds.parquet`` (stratified on class presence, groups and
exact-duplicate images on one side), ``stats.json`` (image mean/std),
``workspace.json`` (``task: segment``, ``format``, ``ignore_index``,
``palette``, ``ignore_color``), ``bad_masks.csv`` (unusable masks, with
reasons) and ``bad_files.csv`` (images that do not decode).
:func:`load_segment_workspace` reads them back as a :class:`SegmentationData`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ...errors import DataError
from .read import SegmentationData, read_segmentation, write_bad_masks


def segment_source_id(data_config) -> str:
    """How a workspace records ``data.train``: the absolute path (to refuse another dataset later)."""
    return str(Path(data_config.train).expanduser().resolve())


def read_config_data(config, path: str | None = None, classes=None) -> SegmentationData:
    """``data.train`` (or ``path``, e.g. ``data.test``) read with the config's
    ``data.format/classes/ignore_index/strict``; ``classes`` overrides them (a test set
    read with the training classes, so its values mean the same)."""
    data = config.data
    return read_segmentation(
        path or data.train,
        format=getattr(data, "format", None),
        classes=classes if classes is not None else getattr(data, "classes", None),
        ignore_index=getattr(data, "ignore_index", 255),
        strict=data.strict,
    )


def _scan(data: SegmentationData, config, report: Path | None, progress: bool):
    """Decode every image once (the shared scan): undecodable files out and listed, hashes."""
    from ..._progress import maybe_progress
    from ...data.samples import SampleTable
    from ...data.scan import exclude_bad, scan_table

    frame = pd.DataFrame(
        {
            "sample_id": data.images["sample_id"].to_numpy(),
            "path": data.images["image_path"].to_numpy(),
            "label": -1,
            "class_name": "",
            "group": data.images["group"].to_numpy(),
        }
    )
    table = SampleTable(frame, list(data.classes), str(config.data.train))
    with maybe_progress(progress, "scan", len(table)) as advance:
        scan = scan_table(table, progress=advance)
    good = exclude_bad(scan, strict=config.data.strict, report_path=report)
    return scan, good


def _cache_coco_masks(data: SegmentationData, root: Path) -> SegmentationData:
    """Rasterise COCO annotations once into palette PNGs below ``root/masks``."""
    from .masks import save_index_png

    paths = []
    for i, sid in enumerate(data.images["sample_id"]):
        dest = root / "masks" / Path(sid).with_suffix(".png")
        save_index_png(data.load_mask(i), dest, data.palette)
        paths.append(str(dest.absolute()))
    data.images["mask_path"] = paths
    data.annotations = {}
    return data


def pixel_table(data: SegmentationData) -> pd.DataFrame:
    """Pixels per class per image: ``sample_id``, one column per class, ``ignored``."""
    counts = data.pixel_counts()
    frame = pd.DataFrame(counts, columns=list(data.classes))
    frame.insert(0, "sample_id", data.images["sample_id"].to_numpy())
    frame["ignored"] = data.ignored
    return frame


def create_segment_workspace(config, root: Path, progress: bool = True):
    """Read ``config.data.train``, scan, make the fold table; the :class:`~ensemblecv.workspace.Workspace`.

    Bad masks are listed in ``bad_masks.csv`` and one warning
    (``data.strict``: abort); undecodable images in ``bad_files.csv``.
    ``data.limit`` keeps the first N images by sample id. Byte-identical images
    share a group, so they never straddle a fold.
    """
    from ..._io import atomic_write
    from ...data.samples import save_classes
    from ...data.scan import duplicate_groups, normalization_stats
    from ...workspace import Workspace
    from .folds import segmentation_folds

    ws = Workspace(Path(root))
    ws.root.mkdir(parents=True, exist_ok=True)
    data = read_config_data(config)
    if config.data.limit is not None:
        data = data.subset(np.arange(min(config.data.limit, len(data))))
    if len(data.bad):
        write_bad_masks(data.bad, ws.root / "bad_masks.csv")
    scan, good = _scan(data, config, ws.bad_files_path, progress)
    if not scan.ok.any():
        raise DataError(f"No image of {config.data.train} decodes; see {ws.bad_files_path}.")
    hashes = scan.stats.loc[scan.ok, "hash"].reset_index(drop=True)
    grouped = duplicate_groups(good, hashes).frame
    data = data.subset(np.asarray(scan.ok, dtype=bool))
    data.images["group"] = grouped["group"].astype(object).to_numpy()
    if data.annotations:
        data = _cache_coco_masks(data, ws.root)
    folds = segmentation_folds(data, config.data.folds, config.data.fold_seed)
    folds = folds[["sample_id", "fold", "group"]]
    images = data.images.copy()
    images.insert(1, "path", images["image_path"])
    info = {
        "task": "segment",
        "source": segment_source_id(config.data),
        "format": data.format,
        "folds": config.data.folds,
        "fold_seed": config.data.fold_seed,
        "samples": len(images),
        "classes": len(data.classes),
        "ignore_index": data.ignore_index,
        "palette": None if data.palette is None else data.palette.tolist(),
        "ignore_color": None if data.ignore_color is None else list(data.ignore_color),
        "excluded": int((~scan.ok).sum()),
        "bad_masks": len(data.bad),
    }
    pixels = pixel_table(data)
    stats = json.dumps(normalization_stats(scan.stats), indent=1)
    # Written atomically, folds.parquet last: is_prepared() turns true once all exist.
    atomic_write(ws.stats_path, lambda p: p.write_text(stats, encoding="utf-8"))
    text = json.dumps(info, indent=1, ensure_ascii=False)
    atomic_write(ws.info_path, lambda p: p.write_text(text, encoding="utf-8"))
    atomic_write(ws.root / "pixels.parquet", lambda p: pixels.to_parquet(p, index=False))
    atomic_write(ws.classes_path, lambda p: save_classes(list(data.classes), p))
    atomic_write(ws.samples_path, lambda p: images.to_parquet(p, index=False))
    atomic_write(ws.folds_path, lambda p: folds.to_parquet(p, index=False))
    return ws


def load_segment_workspace(root) -> SegmentationData:
    """The workspace's images as a :class:`SegmentationData` (``load_mask`` works; counts kept)."""
    from ...data.samples import load_classes
    from ...workspace import Workspace

    ws = Workspace(Path(root))
    if not ws.is_prepared():
        raise DataError(f"{ws.root} is not a prepared workspace.")
    info = ws.info()
    if info.get("task") != "segment":
        raise DataError(f"{ws.root} holds a {info.get('task', 'classify')!r} dataset, not segment.")
    images = pd.read_parquet(ws.samples_path).drop(columns="path")
    images["group"] = images["group"].astype(object).where(images["group"].notna(), None)
    classes = load_classes(ws.classes_path)
    counts = ignored = None
    pixels_path = ws.root / "pixels.parquet"
    if pixels_path.is_file():
        pixels = pd.read_parquet(pixels_path).set_index("sample_id").reindex(images["sample_id"])
        counts = pixels[classes].to_numpy(np.int64)
        ignored = pixels["ignored"].to_numpy(np.int64)
    palette = info.get("palette")
    bad_path = ws.root / "bad_masks.csv"
    bad = (
        pd.read_csv(bad_path)[["path", "reason", "detail"]]
        if bad_path.is_file()
        else pd.DataFrame(columns=["path", "reason", "detail"])
    )
    return SegmentationData(
        images=images,
        classes=classes,
        palette=None if palette is None else np.asarray(palette, np.uint8),
        ignore_index=int(info.get("ignore_index", 255)),
        bad=bad,
        format=info.get("format", ""),
        root=Path(info.get("source", ws.root)),
        source=info.get("source", ""),
        ignore_color=None if info.get("ignore_color") is None else tuple(info["ignore_color"]),
        counts=counts,
        ignored=ignored,
    )


__all__ = [
    "create_segment_workspace",
    "load_segment_workspace",
    "pixel_table",
    "read_config_data",
    "segment_source_id",
]


def workspace_meta(root: Path) -> tuple[int, np.ndarray | None]:
    """``(ignore_index, palette or None)`` recorded in ``workspace.json``."""
    info_path = Path(root) / "workspace.json"
    info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.is_file() else {}
    palette = info.get("palette")
    return int(info.get("ignore_index", 255)), (
        None if palette is None else np.asarray(palette, np.uint8).reshape(-1, 3)
    )
