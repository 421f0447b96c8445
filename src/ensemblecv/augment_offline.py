"""Offline augmentation: write N augmented copies of every image, grouped with their original.

``augment_offline(DATA, OUT, copies=2, ops="canny,motion_blur")`` writes::

    OUT/index.csv                 image_path, class_name, target, group, augmented_from
    OUT/images/<sample id>        a symbolic link to the original (or a PNG for built-ins)
    OUT/images/<sample id stem>__aug<k>.png   copy k of that original
    OUT/augment_offline.json      what was done (source, ops, copies, seed)

``OUT/index.csv`` is a CSV index any command accepts as ``DATA``. Every copy
carries its original's group (the original's own group when the source has
one, else its sample id), so a workspace built on it never puts a copy in
the training folds of its original's validation fold. The source is only
read: originals are linked, never copied or rewritten, and OUT may not
overlap it. A copy is a pure function of (image, ``seed``, sample id, k).
"""

from __future__ import annotations

import json
import os
import warnings
import zlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from .augment import ImageTransform, build_op, list_ops, list_presets, preset_ops
from .data.imageio import is_virtual, load_image
from .data.samples import SampleTable, load_samples
from .data.split import check_output_dir, save_png
from .errors import ConfigError, DataError, ImageLoadError, unknown_name_message

__all__ = ["augment_offline", "parse_ops"]

OpsLike = str | Sequence[Mapping[str, Any]]
_LINK_MODES = ("link", "copy")


def parse_ops(ops: OpsLike) -> list[dict[str, Any]]:
    """An op list from a preset name, ``"canny,erode"`` (each at ``p=1``) or a list of dicts.

    Names are checked here (unknown ones fail with the close matches); parameters
    are checked when the ops are built.
    """
    if isinstance(ops, str):
        names = [n.strip() for n in ops.split(",") if n.strip()]
        if len(names) == 1 and names[0] not in list_ops() and names[0] in list_presets():
            return preset_ops(names[0])
        if not names:
            raise ConfigError(f"No augmentation ops given. Ops: {', '.join(list_ops())}.")
        for name in names:
            if name not in list_ops():
                raise ConfigError(
                    unknown_name_message("augmentation op", name, list_ops())
                    + f". Presets: {', '.join(list_presets())}."
                )
        # Offline copies are meant to show the op: every named op always fires.
        return [{"name": n, "p": 1.0} for n in names]
    specs = [dict(spec) for spec in ops]
    if not specs:
        raise ConfigError(f"No augmentation ops given. Ops: {', '.join(list_ops())}.")
    return specs


def _copy_seed(seed: int, sample_id: str, k: int) -> int:
    """Independent of row order and process: a crc of the id, not Python's salted hash()."""
    state = np.random.SeedSequence([int(seed), zlib.crc32(sample_id.encode("utf-8")), int(k)])
    return int(state.generate_state(1, dtype=np.uint64)[0])


class _Transforms:
    """One :class:`ImageTransform` per (size, channels) met, built on first use."""

    def __init__(self, specs: list[dict[str, Any]], size: int | None) -> None:
        self.specs, self.size = specs, size
        self._cache: dict[tuple[int, int], ImageTransform] = {}
        self.get(32, 3)  # fail on a bad op before any file is written

    def get(self, size: int, channels: int) -> ImageTransform:
        key = (self.size or size, channels)
        if key not in self._cache:
            ops = []
            for i, spec in enumerate(self.specs):
                try:
                    ops.append(build_op(spec, key[0]))
                except ConfigError as exc:
                    raise ConfigError(f"ops[{i}]: {exc}") from None
            self._cache[key] = ImageTransform(
                None, ops, [0.0] * channels, [1.0] * channels, channels
            )
        return self._cache[key]


def _decode(path: str) -> np.ndarray:
    """(H, W, 1) for grayscale files (kept gray in the copies), else (H, W, 3)."""
    rgb = load_image(path, channels=3)
    if (rgb[:, :, 0] == rgb[:, :, 1]).all() and (rgb[:, :, 1] == rgb[:, :, 2]).all():
        return np.ascontiguousarray(rgb[:, :, :1])
    return rgb


def _save(img: np.ndarray, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img[:, :, 0] if img.shape[2] == 1 else img).save(dest)


def _place_original(src: str, dest: Path, mode: str) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if is_virtual(src):
        dest = dest.with_suffix(".png") if dest.suffix.lower() != ".png" else dest
        save_png(src, dest)
    elif mode == "link":
        os.symlink(os.path.abspath(src), dest)
    else:
        import shutil

        shutil.copy2(src, dest)


def _original_dest(sample: Mapping[str, Any]) -> str:
    rel = Path(str(sample["sample_id"]))
    if is_virtual(str(sample["path"])) and rel.suffix.lower() != ".png":
        rel = rel.with_name(rel.name + ".png")
    return rel.as_posix()


def augment_offline(
    data: str | os.PathLike | SampleTable,
    out: str | os.PathLike,
    copies: int,
    ops: OpsLike,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
    mode: str = "link",
    size: int | None = None,
) -> Path:
    """Write ``copies`` augmented PNGs of every image of ``data`` plus ``OUT/index.csv``; returns it.

    ``ops``: a preset name, comma-separated op names (each at ``p=1``), or a list of
    op dicts as in ``augment.ops``. ``mode``: originals as symbolic links (``link``)
    or file copies (``copy``). ``size`` feeds ops that need one (crops); default the
    shorter side of each image. Unreadable images keep their index row (the
    workspace scan will report them) but get no copies; a warning names them.
    """
    if copies < 1:
        raise ConfigError(f"copies must be >= 1, got {copies}.")
    if mode not in _LINK_MODES:
        raise ConfigError(f"mode must be one of {', '.join(_LINK_MODES)}, got {mode!r}.")
    table = data if isinstance(data, SampleTable) else load_samples(data)
    specs = parse_ops(ops)
    transforms = _Transforms(specs, size)
    out = Path(out).absolute()
    check_output_dir(out, table.root)
    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    rows, unreadable = [], []
    for sample in table.frame.to_dict("records"):
        sid = str(sample["sample_id"])
        group = sample["group"] if sample["group"] not in (None, "") else sid
        label = _label_columns(table, sample)
        original = _original_dest(sample)
        _place_original(str(sample["path"]), images / original, mode)
        rows.append(
            {"image_path": f"images/{original}", **label, "group": group, "augmented_from": ""}
        )
        try:
            img = _decode(str(sample["path"]))
        except ImageLoadError as exc:
            unreadable.append(f"{sid}: {exc.reason}")
            if progress:
                progress(1)
            continue
        tf = transforms.get(min(img.shape[:2]), img.shape[2])
        stem = Path(original)
        for k in range(copies):
            rel = stem.with_name(f"{stem.stem}__aug{k}.png").as_posix()
            dest = images / rel
            if dest.exists() or dest.is_symlink():
                raise DataError(
                    f"Copy name {rel} clashes with a source file; rename that file or the source."
                )
            _save(tf.augment(img, seed=_copy_seed(seed, sid, k)), dest)
            rows.append(
                {"image_path": f"images/{rel}", **label, "group": group, "augmented_from": sid}
            )
        if progress:
            progress(1)
    if unreadable:
        warnings.warn(
            f"{len(unreadable)} unreadable image(s) got no copies: {'; '.join(unreadable[:5])}",
            UserWarning,
            stacklevel=2,
        )
    index = out / "index.csv"
    pd.DataFrame(rows).to_csv(index, index=False)
    (out / "augment_offline.json").write_text(
        json.dumps(
            {"source": table.source, "copies": copies, "seed": seed, "ops": specs, "mode": mode},
            indent=1,
            ensure_ascii=False,
        ),
        encoding="utf-8",
    )
    return index


def _label_columns(table: SampleTable, sample: Mapping[str, Any]) -> dict[str, Any]:
    """``class_name`` and ``target`` (the class index, so the class order survives)."""
    if not table.labelled:
        return {}
    if int(sample["label"]) < 0:
        return {"class_name": "", "target": ""}
    return {"class_name": sample["class_name"], "target": int(sample["label"])}
