"""``ensemblecv report`` on a leave-one-domain-out workspace: the domain table and a link
to each held-out domain's ordinary report (built with the usual report code)."""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

from .layout import sub_workspaces
from .table import format_summary, seed_summary, write_domain_table


def build_lodo_report(root: str | Path, out: str | Path | None = None, **kwargs) -> Path:
    """Write ``out/index.html`` (default ``WORKSPACE/report``); each sub-workspace gets its
    own report in ``domains/<held_out>/report``. ``kwargs`` go to ``build_report``."""
    from ..report import build_report
    from ..report.html import _CSS, table

    root = Path(root)
    out = Path(out) if out is not None else root / "report"
    out.mkdir(parents=True, exist_ok=True)
    links = []
    for domain, ws in sub_workspaces(root).items():
        if (ws / "leaderboard.csv").is_file():
            page = build_report(ws, **kwargs)
            rel = Path("..") / page.relative_to(root)
            links.append(
                f'<li><a href="{html.escape(rel.as_posix())}">{html.escape(domain)}</a></li>'
            )
    frame = write_domain_table(root)
    summary = seed_summary(frame)
    cols = ["run / ensemble", "seeds"] + [
        c
        for c in summary.columns
        if c not in ("family", "kind", "seeds") and not c.endswith("_std")
    ]
    grouped = pd.DataFrame(format_summary(summary), columns=cols)
    body = [
        f"<h1>Leave-one-domain-out: {html.escape(root.resolve().name)}</h1>",
        "<p>Accuracy (%) on each held-out domain and their average, mean ± standard deviation "
        "over seeds. Selection used training-domain out-of-fold predictions only; the oracle "
        "row looks at the test domain and is an upper bound, not a result.</p>",
        table(grouped),
        "<h2>Every run and ensemble</h2>",
        table(frame, sortable=True),
        "<h2>Held-out domains</h2><ul>" + "".join(links) + "</ul>",
    ]
    page = out / "index.html"
    page.write_text(
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>LODO report</title><style>{_CSS}</style></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n",
        encoding="utf-8",
    )
    return page
