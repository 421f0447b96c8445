"""Object detection (``task: detect``): label readers, conversion, folds, audit, synthetic data,
detectors, box augmentation and COCO metrics.

Public names load on first use (PEP 562), so reading labels or converting
formats imports neither torch nor matplotlib; the training side (``models``,
``module``, ``task``) imports torch when a detector is built.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "BAD_REASONS": "read",
    "FORMATS": "read",
    "DetectionData": "read",
    "detect_format": "read",
    "read_detection": "read",
    "write_bad_labels": "read",
    "convert_detection": "convert",
    "content_groups": "folds",
    "detection_folds": "folds",
    "audit_detection": "audit",
    "make_shapes_dataset": "synthetic",
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
