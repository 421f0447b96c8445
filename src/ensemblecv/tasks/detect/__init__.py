"""Object detection data: labels in YOLO, COCO, VOC and LabelMe formats, conversion, folds, audit.

``read_detection`` turns any of the formats into one image table and one box
table; everything else here (and the detection models) reads those tables.
The audit is imported on first use: it pulls in matplotlib, which readers and
training do not need.
"""

from .convert import convert_detection
from .folds import content_groups, detection_folds
from .read import (
    BAD_REASONS,
    FORMATS,
    DetectionData,
    detect_format,
    read_detection,
    write_bad_labels,
)
from .synthetic import make_shapes_dataset

__all__ = [
    "BAD_REASONS",
    "FORMATS",
    "DetectionData",
    "audit_detection",
    "content_groups",
    "convert_detection",
    "detect_format",
    "detection_folds",
    "make_shapes_dataset",
    "read_detection",
    "write_bad_labels",
]


def __getattr__(name: str):
    if name == "audit_detection":
        from .audit import audit_detection

        return audit_detection
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
