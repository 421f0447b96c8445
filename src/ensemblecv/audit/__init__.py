"""Dataset audit: counts, sizes, modes, pixel statistics, duplicates and bad files."""

from .run import AuditResult, run_audit, summarize

__all__ = ["AuditResult", "run_audit", "summarize"]
