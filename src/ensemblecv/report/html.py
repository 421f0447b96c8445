"""``report/index.html``: one static page over a whole workspace.

The page has inline CSS and one small inline script (sorting and searching the
per-class table, plus a load check that records broken images and script
errors on ``<body data-images-ok data-js-errors data-load-ms>`` for headless
tests). There is no external resource: figures are PNG files in ``img/``
beside the page, referenced relatively, so the folder can be zipped or served
as is and the HTML stays small enough to open fast with 500 classes. Every
string from the workspace (run names, class names, paths, configs) goes
through :func:`html.escape`.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

#: Warnings of the audit shown in the report (all are in audit.json / audit.html).
MAX_AUDIT_WARNINGS = 15

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,'Noto Sans KR',sans-serif;
 margin:1.5em auto;max-width:1280px;padding:0 1em;color:#222;line-height:1.4}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.8em}
nav a{margin-right:.9em} table{border-collapse:collapse;margin:.6em 0;font-size:.88em}
th,td{border:1px solid #ddd;padding:.2em .5em;text-align:left;vertical-align:top}
th{background:#f4f4f4;position:sticky;top:0} td.num{text-align:right;font-variant-numeric:tabular-nums}
table.sortable th{cursor:pointer;user-select:none} table.sortable th:after{content:' \\2195';color:#aaa}
tr.best td{font-weight:600} .scroll{max-height:32em;overflow:auto;display:inline-block}
.cards{display:flex;flex-wrap:wrap;gap:.8em} .card{border:1px solid #ddd;border-radius:6px;padding:.5em 1em}
.card b{display:block;font-size:1.4em} .note{color:#666;font-size:.9em}
.error{color:#b00020} .warning{color:#a15c00} .info{color:#555}
img{max-width:100%;height:auto} .curves{display:flex;flex-wrap:wrap;gap:.5em}
.curves figure{margin:0;flex:1 1 560px;max-width:720px} figcaption{font-size:.85em;color:#444}
pre{background:#f8f8f8;padding:.6em;overflow:auto;font-size:.82em;max-height:30em}
input[type=search]{padding:.3em;width:18em;margin:.4em 0}
code,.path{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.9em;word-break:break-all}
"""

# Recorded before anything else runs, so later failures (scripts, images) are caught too.
_HEAD_JS = (
    "window.__errors=[];window.addEventListener('error',function(e){var t=e.target||{};"
    "window.__errors.push(e.message?String(e.message):'failed to load '+(t.src||t.tagName))},true);"
)

_BODY_JS = """
(function(){
function val(td){var v=td.getAttribute('data-v');if(v===null)v=td.textContent;
 var n=parseFloat(v);return isNaN(n)||!/^\\s*-?[0-9.]/.test(v)?v.toLowerCase():n;}
document.querySelectorAll('table.sortable').forEach(function(t){
 t.querySelectorAll('th').forEach(function(th,i){th.addEventListener('click',function(){
  var body=t.tBodies[0],rows=Array.prototype.slice.call(body.rows),asc=th.dataset.dir!=='asc';
  t.querySelectorAll('th').forEach(function(h){delete h.dataset.dir});th.dataset.dir=asc?'asc':'desc';
  rows.sort(function(a,b){var x=val(a.cells[i]),y=val(b.cells[i]);
   if(typeof x!==typeof y){x=String(x);y=String(y);}return (x<y?-1:x>y?1:0)*(asc?1:-1);});
  var f=document.createDocumentFragment();rows.forEach(function(r){f.appendChild(r)});body.appendChild(f);});});});
document.querySelectorAll('input[data-filter]').forEach(function(inp){
 var body=document.getElementById(inp.dataset.filter).tBodies[0];
 inp.addEventListener('input',function(){var q=inp.value.trim().toLowerCase();
  Array.prototype.forEach.call(body.rows,function(r){r.hidden=q!==''&&r.textContent.toLowerCase().indexOf(q)<0;});});});
window.addEventListener('load',function(){var ok=true,b=document.body;
 Array.prototype.forEach.call(document.images,function(im){if(!(im.complete&&im.naturalWidth>0))ok=false;});
 b.dataset.imagesOk=ok?'yes':'no';b.dataset.nImages=document.images.length;
 b.dataset.jsErrors=window.__errors.join(' | ');b.dataset.loadMs=Math.round(performance.now());});
})();
"""


@dataclass
class Figure:
    src: str  # path relative to the page
    alt: str
    caption: str = ""


@dataclass
class ReportContent:
    """Everything the page shows; built by :func:`ensemblecv.report.build_report`."""

    title: str
    facts: list[tuple[str, Any]]
    leaderboard: pd.DataFrame | None = None
    weights: pd.DataFrame | None = None
    curves: list[Figure] = field(default_factory=list)
    reference_note: str = ""
    confusion: Figure | None = None
    pairs: pd.DataFrame | None = None
    heatmap: Figure | None = None
    per_class: pd.DataFrame | None = None
    gallery: Figure | None = None
    gallery_rows: pd.DataFrame | None = None
    gradcam: list[Figure] = field(default_factory=list)
    gradcam_note: str = ""
    audit: dict | None = None
    audit_link: str | None = None
    configs: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: Section titles a task words its own way (anchor -> title), e.g. segmentation's gallery.
    titles: dict[str, str] = field(default_factory=dict)


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _cell(value: Any) -> str:
    if isinstance(value, (float, np.floating)):
        if np.isnan(value):
            return '<td class="num" data-v="-1">–</td>'
        return f'<td class="num" data-v="{value!r}">{value:.4f}</td>'
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return f'<td class="num">{value}</td>'
    return f"<td>{_e(value)}</td>"


def table(frame: pd.DataFrame, table_id: str = "", sortable: bool = False, best: int = -1) -> str:
    """An escaped table of ``frame``; floats as 4 decimals, NaN as a dash."""
    attrs = (f' id="{_e(table_id)}"' if table_id else "") + (
        ' class="sortable"' if sortable else ""
    )
    head = "".join(f"<th>{_e(c)}</th>" for c in frame.columns)
    rows = []
    for i, values in enumerate(frame.itertuples(index=False, name=None)):
        cls = ' class="best"' if i == best else ""
        rows.append(f"<tr{cls}>{''.join(_cell(v) for v in values)}</tr>")
    return f"<table{attrs}><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _img(fig: Figure | None) -> str:
    if fig is None:
        return ""
    cap = f"<figcaption>{_e(fig.caption)}</figcaption>" if fig.caption else ""
    return f'<figure><img src="{_e(fig.src)}" alt="{_e(fig.alt)}">{cap}</figure>'


def _cards(facts: Sequence[tuple[str, Any]]) -> str:
    body = "".join(f'<div class="card"><b>{_e(v)}</b>{_e(k)}</div>' for k, v in facts)
    return f'<div class="cards">{body}</div>'


def _section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{anchor}"><h2>{_e(title)}</h2>{body}</section>' if body else ""


def _leaderboard(c: ReportContent) -> str:
    if c.leaderboard is None:
        return '<p class="note">No leaderboard.csv: run <code>ensemblecv ensemble WORKSPACE</code>.</p>'
    note = (
        '<p class="note">Honest cross-validated scores (ensembles fitted with nested folds); '
        "click a header to sort.</p>"
    )
    return note + table(c.leaderboard, "leaderboard", sortable=True, best=0)


def _weights(c: ReportContent) -> str:
    if c.weights is None or c.weights.empty:
        return ""
    return (
        '<p class="note">Weight of each model in the ensembles that average probabilities '
        "(blank: not chosen).</p>" + table(c.weights, "weights", sortable=True)
    )


def _curves(c: ReportContent) -> str:
    if not c.curves:
        return '<p class="note">No history.csv files found.</p>'
    note = (
        '<p class="note">Per run, one colour per fold; training dashed, validation solid. '
        "A validation loss that rises while the training loss falls is over-fitting.</p>"
    )
    return note + '<div class="curves">' + "".join(_img(f) for f in c.curves) + "</div>"


def _errors(c: ReportContent) -> str:
    parts = [f'<p class="note">{_e(c.reference_note)}</p>'] if c.reference_note else []
    parts.append(_img(c.confusion))
    if c.pairs is not None and len(c.pairs):
        parts += ["<h3>Most confused pairs</h3>", table(c.pairs, "pairs", sortable=True)]
    if c.heatmap is not None:
        parts += ["<h3>Recall per model and class</h3>", _img(c.heatmap)]
    if c.per_class is not None:
        parts += [
            f"<h3>Per-class metrics ({len(c.per_class)} classes)</h3>",
            '<input type="search" placeholder="Search classes…" data-filter="per-class" '
            'aria-label="search classes">',
            '<div class="scroll">' + table(c.per_class, "per-class", sortable=True) + "</div>",
        ]
    return "".join(parts)


def _gallery(c: ReportContent) -> str:
    if c.gallery is None:
        return "" if c.per_class is None else '<p class="note">No wrong predictions to show.</p>'
    rows = ""
    if c.gallery_rows is not None:
        rows = (
            "<details><summary>The same samples as a table</summary>"
            + table(c.gallery_rows, "gallery-table", sortable=True)
            + "</details>"
        )
    return _img(c.gallery) + rows


def _gradcam(c: ReportContent) -> str:
    note = f'<p class="note">{_e(c.gradcam_note)}</p>' if c.gradcam_note else ""
    return note + '<div class="curves">' + "".join(_img(f) for f in c.gradcam) + "</div>"


def _audit(c: ReportContent) -> str:
    a = c.audit
    if a is None:
        return '<p class="note">No audit/audit.json (run <code>ensemblecv audit</code>).</p>'
    dup = a.get("duplicates", {})
    facts = [
        ("images", a.get("n_images")),
        ("decodable", a.get("n_ok")),
        ("bad files", a.get("n_bad")),
        ("classes", a.get("n_classes")),
        ("imbalance (max/min)", _fmt(a.get("imbalance_ratio"))),
        (
            "duplicate groups",
            dup.get("n_within_class_groups", 0) + dup.get("n_cross_class_groups", 0),
        ),
    ]
    warnings = a.get("warnings", [])
    items = "".join(
        f'<li class="{_e(w.get("level"))}"><b>{_e(w.get("level"))}</b>: {_e(w.get("message"))}</li>'
        for w in warnings[:MAX_AUDIT_WARNINGS]
    )
    more = len(warnings) - MAX_AUDIT_WARNINGS
    link = f' Full audit: <a href="{_e(c.audit_link)}">audit.html</a>.' if c.audit_link else ""
    tail = f'<p class="note">{max(more, 0)} more warning(s) in audit.json.{link}</p>'
    return _cards(facts) + (f"<ul>{items}</ul>" if items else "<p>No warnings.</p>") + tail


def _configs(c: ReportContent) -> str:
    return "".join(
        f"<details><summary>{_e(name)}</summary><pre>{_e(text)}</pre></details>"
        for name, text in c.configs.items()
    )


def _fmt(value: Any) -> str:
    return "–" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


SECTIONS = (
    ("leaderboard", "Leaderboard", _leaderboard),
    ("weights", "Ensemble weights", _weights),
    ("curves", "Training curves", _curves),
    ("errors", "Errors: confusion, recall per class", _errors),
    ("gallery", "Most confidently wrong images", _gallery),
    ("gradcam", "Grad-CAM", _gradcam),
    ("audit", "Dataset audit", _audit),
    ("configs", "Run configs", _configs),
)


def render_report(content: ReportContent) -> str:
    """The whole page; sections without content are left out (and out of the menu)."""
    sections = [(a, content.titles.get(a, t), fn) for a, t, fn in SECTIONS]
    bodies = [(a, t, _section(a, t, fn(content))) for a, t, fn in sections]
    nav = "".join(f'<a href="#{a}">{_e(t.split(":")[0])}</a>' for a, t, b in bodies if b)
    notes = "".join(f'<p class="warning">{_e(n)}</p>' for n in content.notes)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(content.title)}</title><style>{_CSS}</style><script>{_HEAD_JS}</script>"
        f"</head><body>\n<h1>{_e(content.title)}</h1><nav>{nav}</nav>{notes}"
        + _cards(content.facts)
        + "\n".join(b for _, _, b in bodies if b)
        + f"\n<script>{_BODY_JS}</script>\n</body></html>\n"
    )
