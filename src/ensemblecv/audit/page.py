"""The audit pages' shell: CSS, escaping, embedded PNGs, tables, caps.

Shared by the classification audit (:mod:`.html`), its domain section and the task
audits (detection, segmentation), so every ``audit.html`` looks and escapes alike.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Sequence
from typing import Any

MAX_DUPLICATE_ROWS = 200
MAX_BAD_ROWS = 500
MAX_IGNORED_ROWS = 200
#: Longer class tables are folded into a <details> element (no script needed).
FOLD_CLASS_TABLE = 30

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,'Noto Sans KR',sans-serif;
 margin:2em auto;max-width:1200px;padding:0 1em;color:#222;line-height:1.4}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
th,td{border:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f4f4f4} td.num{text-align:right;font-variant-numeric:tabular-nums}
.cards{display:flex;flex-wrap:wrap;gap:.8em}
.card{border:1px solid #ddd;border-radius:6px;padding:.5em 1em;min-width:8em}
.card b{display:block;font-size:1.4em}
.warn li{margin:.2em 0} .error{color:#b00020} .warning{color:#a15c00} .info{color:#555}
.note{color:#666;font-size:.9em} img{max-width:100%;height:auto}
code,.path{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.9em;word-break:break-all}
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _img(images: dict[str, bytes], key: str, alt: str) -> str:
    if key not in images:
        return ""
    data = base64.b64encode(images[key]).decode("ascii")
    return f'<p><img src="data:image/png;base64,{data}" alt="{_e(alt)}"></p>'


def _table(
    header: Sequence[str], rows: Iterable[Sequence[Any]], numeric: Sequence[int] = ()
) -> str:
    """An escaped table; column indices in ``numeric`` are right-aligned."""
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="num">{_e(v)}</td>' if i in numeric else f"<td>{_e(v)}</td>"
            for i, v in enumerate(row)
        )
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _capped(items: list, limit: int, what: str) -> tuple[list, str]:
    if len(items) <= limit:
        return items, ""
    return items[:limit], (
        f'<p class="note">Showing the first {limit} of {len(items)} {_e(what)}; '
        "the full list is in audit.json.</p>"
    )


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)
