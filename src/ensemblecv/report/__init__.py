"""The static HTML report over a workspace (``ensemblecv report``) and its figures."""

from ..evaluate.metrics import most_confident_errors  # kept here for older imports
from .build import build_report
from .html import ReportContent, render_report

__all__ = ["ReportContent", "build_report", "most_confident_errors", "render_report"]
