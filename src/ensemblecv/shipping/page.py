"""The one page ``serve`` shows: drop images, see the ensemble's top classes and each member's vote.

Plain HTML, CSS and a little JavaScript in one response — no framework, no
CDN, so it works offline and on a locked-down machine. Every file is sent as
its own ``POST /predict`` (so one bad file shows its own error and the others
still get results); the server batches concurrent requests anyway. Text from
the model (class and member names) is only ever set with ``textContent``.
"""

from __future__ import annotations

import html
import json

_CSS = """
body{font:15px/1.45 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1c1e21}
header{background:#1f3b57;color:#fff;padding:14px 24px}
header h1{font-size:20px;margin:0 0 4px}
header p{margin:0;opacity:.85;font-size:13px}
main{padding:18px 24px;max-width:1180px}
#drop{border:2px dashed #8aa0b6;border-radius:10px;background:#fff;padding:28px;text-align:center;
 cursor:pointer;transition:background .15s}
#drop.over{background:#e6f0fa;border-color:#1f6fb2}
#results{display:grid;grid-template-columns:repeat(auto-fill,minmax(340px,1fr));gap:14px;margin-top:18px}
.card{background:#fff;border-radius:10px;box-shadow:0 1px 3px rgba(0,0,0,.12);padding:12px 14px}
.card h2{font-size:14px;margin:0 0 8px;word-break:break-all}
.card[data-status=error]{border-left:4px solid #c0392b}
.card .err{color:#c0392b}
.row{display:flex;gap:12px;align-items:flex-start}
.thumb{width:96px;height:96px;object-fit:contain;background:#eee;border-radius:6px;image-rendering:pixelated}
.bars{flex:1}
.bar{display:flex;align-items:center;gap:6px;font-size:13px;margin:2px 0}
.bar .name{width:38%;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.bar .track{flex:1;background:#e9edf1;border-radius:4px;height:12px}
.bar .fill{background:#1f6fb2;height:12px;border-radius:4px}
.bar .val{width:50px;text-align:right;font-variant-numeric:tabular-nums}
.top1 .name{font-weight:600}
table{border-collapse:collapse;width:100%;font-size:12.5px;margin-top:8px}
th,td{text-align:left;padding:2px 6px;border-bottom:1px solid #eef0f2}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.gradcam{max-width:100%;margin-top:8px;border-radius:6px}
.meta{font-size:12.5px;color:#555}
"""

_JS = r"""
(function () {
  "use strict";
  const info = JSON.parse(document.getElementById("model-info").textContent);
  const body = document.body;
  const errors = [];
  window.addEventListener("error", (e) => { errors.push(String(e.message)); body.dataset.jsErrors = errors.join(" | "); });
  window.addEventListener("unhandledrejection", (e) => { errors.push(String(e.reason)); body.dataset.jsErrors = errors.join(" | "); });
  let pending = 0;
  const setPending = (d) => { pending += d; body.dataset.pending = String(pending); };
  const el = (tag, cls, text) => {
    const n = document.createElement(tag);
    if (cls) n.className = cls;
    if (text !== undefined) n.textContent = text;
    return n;
  };
  const pct = (p) => (100 * p).toFixed(1) + "%";

  function bars(top) {
    const box = el("div", "bars");
    top.forEach((t, i) => {
      const row = el("div", "bar" + (i === 0 ? " top1" : ""));
      row.appendChild(el("span", "name", t["class"]));
      const track = el("span", "track");
      const fill = el("span", "fill");
      fill.style.display = "block";
      fill.style.width = Math.max(0.5, 100 * t.probability).toFixed(1) + "%";
      track.appendChild(fill);
      row.appendChild(track);
      row.appendChild(el("span", "val", pct(t.probability)));
      box.appendChild(row);
    });
    return box;
  }

  function members(list) {
    const table = el("table", "members");
    const head = el("tr");
    ["member", "weight", "vote", "p(vote)"].forEach((h) => head.appendChild(el("th", null, h)));
    table.appendChild(head);
    list.forEach((m) => {
      const tr = el("tr");
      tr.appendChild(el("td", null, m.name));
      tr.appendChild(el("td", "num", m.weight === null ? "-" : m.weight.toFixed(3)));
      tr.appendChild(el("td", null, m["class"]));
      tr.appendChild(el("td", "num", pct(m.probability)));
      table.appendChild(tr);
    });
    return table;
  }

  async function predict(file) {
    const card = el("div", "card");
    card.dataset.status = "pending";
    card.dataset.file = file.name;
    card.appendChild(el("h2", null, file.name));
    const row = el("div", "row");
    const img = el("img", "thumb");
    img.alt = file.name;
    img.onerror = () => { img.style.visibility = "hidden"; };  // not an image: no broken icon
    img.src = URL.createObjectURL(file);
    row.appendChild(img);
    const right = el("div", "bars", "predicting...");
    row.appendChild(right);
    card.appendChild(row);
    document.getElementById("results").prepend(card);
    setPending(1);
    try {
      const form = new FormData();
      form.append("files", file, file.name);
      const url = "predict" + (info.gradcam ? "?gradcam=true" : "");
      const resp = await fetch(url, { method: "POST", body: form });
      const data = await resp.json();
      if (!resp.ok) {
        right.replaceWith(el("p", "err", data.error ? data.error.message : "HTTP " + resp.status));
        card.dataset.status = "error";
        card.dataset.code = data.error ? data.error.code : String(resp.status);
        return;
      }
      const res = data.predictions[0];
      right.replaceWith(bars(res.top));
      card.dataset.predicted = res["class"];
      card.appendChild(members(res.members));
      if (res.gradcam) {
        const cam = el("img", "gradcam");
        cam.alt = "Grad-CAM of " + res.gradcam_member;
        cam.src = res.gradcam;
        card.appendChild(cam);
      }
      card.dataset.status = "ok";
    } catch (err) {
      right.replaceWith(el("p", "err", "request failed: " + err));
      card.dataset.status = "error";
    } finally {
      setPending(-1);
    }
  }

  function handle(files) {
    Array.from(files).slice(0, 64).forEach(predict);
  }
  const drop = document.getElementById("drop");
  const input = document.getElementById("files");
  drop.addEventListener("click", () => input.click());
  input.addEventListener("change", () => { handle(input.files); input.value = ""; });
  ["dragenter", "dragover"].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.add("over"); }));
  ["dragleave", "drop"].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.remove("over"); }));
  drop.addEventListener("drop", (e) => handle(e.dataTransfer.files));
  body.dataset.ready = "yes";
})();
"""


def _members_summary(info: dict) -> str:
    parts = []
    for m in info["members"]:
        acc = (m.get("scores") or {}).get("cv", {}).get("accuracy")
        parts.append(m["name"] + (f" (CV acc {acc:.3f})" if acc is not None else ""))
    return ", ".join(parts)


def page_html(info: dict) -> str:
    """The page for a model described by ``info`` (the ``GET /model`` body)."""
    spec = info["input"]
    cv = (info.get("scores") or {}).get("cv", {})
    score = f" · honest CV accuracy {cv['accuracy']:.4f}" if "accuracy" in cv else ""
    sub = (
        f"{info['method']} of {len(info['members'])} member(s): {_members_summary(info)}{score}. "
        f"Input {spec['height']}×{spec['width']} px, {spec['channels']} channel(s), "
        f"resize {spec['resize']}; {len(info['classes'])} classes."
    )
    # "</" inside a script block would end it early; JSON allows the escaped form.
    data = json.dumps(info).replace("</", "<\\/")
    limits = info.get("limits", {})
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>ensemblecv · {html.escape(str(info.get("ensemble")))}</title>
<style>{_CSS}</style></head>
<body data-pending="0" data-js-errors="">
<header><h1>ensemblecv · {html.escape(str(info.get("ensemble")))}</h1>
<p>{html.escape(sub)}</p></header>
<main>
<div id="drop" role="button" tabindex="0">
<strong>Drop images here</strong> or click to choose files
<div class="meta">up to {limits.get("max_files", "?")} at a time, {limits.get("max_file_bytes", 0) / 2**20:.3g} MB each
{" · Grad-CAM overlays on" if info.get("gradcam") else ""}</div>
<input id="files" type="file" accept="image/*" multiple hidden>
</div>
<div id="results"></div>
</main>
<script id="model-info" type="application/json">{data}</script>
<script>{_JS}</script>
</body></html>
"""
