"""The static HTML report over a workspace (``ensemblecv report``) and its figures."""

from .build import build_report, most_confident_errors
from .html import ReportContent, render_report

__all__ = ["ReportContent", "build_report", "most_confident_errors", "render_report"]
