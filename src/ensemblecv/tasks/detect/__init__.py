"""Object detection: labels in YOLO, COCO, VOC and LabelMe formats, conversion, folds, audit."""

from .read import FORMATS, DetectionData, detect_format, read_detection, write_bad_labels
from .synthetic import make_shapes_dataset

__all__ = [
    "FORMATS",
    "DetectionData",
    "detect_format",
    "make_shapes_dataset",
    "read_detection",
    "write_bad_labels",
]
