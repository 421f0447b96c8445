"""Object detection (``task: detect``): readers, folds, detectors, box augmentation, COCO metrics.

Public names load on first use (PEP 562), so reading labels or converting
formats never imports torch; the training side (``models``, ``module``,
``task``) imports it when a detector is built.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "coco_scores": "metrics",
    "STAT_NAMES": "metrics",
    "create_detector": "models",
    "list_detectors": "models",
    "DetectorModule": "module",
    "build_box_transform": "augment",
    "pooled_oof_metrics": "leaderboard",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
