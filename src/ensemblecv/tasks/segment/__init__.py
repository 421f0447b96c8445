"""Semantic segmentation behind the task seam (``task: segment``).

The implementation is :mod:`ensemblecv.tasks.segment.task` (its ``TASK``),
imported on first use; see docs/segmentation.md.
"""
