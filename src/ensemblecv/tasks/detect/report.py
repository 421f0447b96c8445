"""``ensemblecv report`` on a detection workspace: one static page over runs and box ensembles.

Sections: the leaderboard (nested mAP, optimistic beside it, test mAP), AP per
class of the best entry and of every member (member complementarity) with the
members each fusion kept, precision-recall curves per class at IoU 0.5, AP by
object size, a class confusion at IoU 0.5 with missed objects and background
detections, and a gallery of the worst images (ground truth green, detections
red). Everything is computed from stored OOF detections — for an ensemble its
*nested* OOF detections (``ensembles/<name>.oof_detections.parquet``), so the
page shows what the honest score measured. The page shell (CSS, escaping, the
load check the browser test reads) is the classification report's.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pandas as pd

from ...ensemble.boxes import MapScorer, pack
from ...report.html import _BODY_JS, _CSS, _HEAD_JS, Figure, _cards, _img, _section, table
from .store import DetectionStore

#: Detections at or above this score count in the confusion and the gallery.
MIN_SCORE_FLOOR = 0.05


def _iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ix = np.clip(
        np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None
    )
    iy = np.clip(
        np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None
    )
    inter = ix * iy
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-12)


def match_at(dets: pd.DataFrame, boxes: pd.DataFrame, ids, threshold: float, iou: float = 0.5):
    """Greedy class-agnostic matching per image (best score first, best IoU >= ``iou``):
    a list of ``(sample_id, true label or -1 background, predicted label or -1 missed)``."""
    dets = dets[dets["score"] >= threshold]
    dg = {s: p for s, p in dets.groupby("sample_id", sort=False)}
    bg = {s: p for s, p in boxes.groupby("sample_id", sort=False)}
    pairs = []
    for sid in ids:
        d, t = dg.get(sid), bg.get(sid)
        d = d.sort_values("score", ascending=False) if d is not None else None
        nd, nt = (0 if d is None else len(d)), (0 if t is None else len(t))
        used = np.zeros(nt, bool)
        if nd and nt:
            m = _iou_matrix(
                d[["x1", "y1", "x2", "y2"]].to_numpy(float),
                t[["x1", "y1", "x2", "y2"]].to_numpy(float),
            )
        for i in range(nd):
            j = -1
            if nt:
                row = np.where(used, -1, m[i])
                j = int(row.argmax()) if row.max() >= iou else -1
            if j >= 0:
                used[j] = True
                pairs.append((sid, int(t["label"].iloc[j]), int(d["label"].iloc[i])))
            else:
                pairs.append((sid, -1, int(d["label"].iloc[i])))
        for j in np.flatnonzero(~used):
            pairs.append((sid, int(t["label"].iloc[j]), -1))
    return pairs


def best_threshold(dets, boxes, ids) -> float:
    """The score cut with the best F1 (correct class, IoU 0.5) over a small grid."""
    best, best_t = -1.0, 0.3
    for t in (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7):
        pairs = np.array([p[1:] for p in match_at(dets, boxes, ids, t)] or np.zeros((0, 2)), int)
        if not len(pairs):
            continue
        tp = ((pairs[:, 0] == pairs[:, 1]) & (pairs[:, 0] >= 0)).sum()
        f1 = 2 * tp / max(len(boxes) + (pairs[:, 1] >= 0).sum(), 1)
        if f1 > best:
            best, best_t = f1, t
    return best_t


def confusion_frame(pairs, classes: list[str]) -> pd.DataFrame:
    c = len(classes)
    cm = np.zeros((c + 1, c + 1), np.int64)  # last row: background; last column: missed
    for _, t, p in pairs:
        cm[t if t >= 0 else c, p if p >= 0 else c] += 1
    frame = pd.DataFrame(cm, columns=[*classes, "missed"])
    frame.insert(0, "true \\ predicted", [*classes, "background"])
    return frame


def _pr_figure(precision: np.ndarray, classes: list[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recall = np.linspace(0, 1, precision.shape[1])
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=100)
    for k, name in enumerate(classes):
        p = precision[0, :, k, 0, -1]  # IoU 0.5, all areas, 100 detections
        if (p > -1).any():
            ax.plot(recall, np.where(p < 0, np.nan, p), label=str(name))
    ax.set(xlabel="recall", ylabel="precision", title=title, xlim=(0, 1), ylim=(0, 1.02))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _gallery(
    store: DetectionStore, dets, pairs, threshold, path: Path, n: int
) -> pd.DataFrame | None:
    from PIL import Image, ImageDraw

    from ...data.imageio import load_image

    errors: dict[str, int] = {}
    for sid, t, p in pairs:
        if t != p:
            errors[sid] = errors.get(sid, 0) + 1
    worst = sorted(errors, key=lambda s: (-errors[s], s))[:n]
    if not worst:
        return None
    paths = store.images.set_index("sample_id")["path"]
    tiles, rows = [], []
    shown = dets[dets["score"] >= threshold]
    for sid in worst:
        try:
            img = Image.fromarray(load_image(str(paths[sid]), 3))
        except Exception:
            continue
        scale = 160 / max(img.size)
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))))
        draw = ImageDraw.Draw(img)
        for b in store.boxes[store.boxes["sample_id"] == sid].itertuples(index=False):
            draw.rectangle(
                [b.x1 * scale, b.y1 * scale, b.x2 * scale, b.y2 * scale],
                outline=(0, 200, 0),
                width=2,
            )
        for d in shown[shown["sample_id"] == sid].itertuples(index=False):
            draw.rectangle(
                [d.x1 * scale, d.y1 * scale, d.x2 * scale, d.y2 * scale],
                outline=(230, 30, 30),
                width=1,
            )
            draw.text(
                (d.x1 * scale + 1, d.y1 * scale),
                f"{store.classes[d.label]} {d.score:.2f}",
                fill=(230, 30, 30),
            )
        tiles.append(img)
        rows.append({"image": sid, "errors": errors[sid]})
    if not tiles:
        return None
    cols = min(4, len(tiles))
    grid = Image.new("RGB", (cols * 164, ((len(tiles) + cols - 1) // cols) * 164), (255, 255, 255))
    for i, tile in enumerate(tiles):
        grid.paste(tile, ((i % cols) * 164 + 2, (i // cols) * 164 + 2))
    grid.save(path)
    return pd.DataFrame(rows)


def _entry_detections(store: DetectionStore, name: str, kind: str) -> pd.DataFrame:
    if kind == "model":
        return store.oof(name)
    frame = pd.read_parquet(store.root / "ensembles" / f"{name}.oof_detections.parquet")
    frame["sample_id"] = frame["sample_id"].astype(str)
    return frame


def build_detection_report(workspace, out=None, max_gallery: int = 12, **_ignored) -> Path:
    """Write the page (default ``WORKSPACE/report/index.html``) and its figures; its path."""
    import yaml

    from ...errors import EnsembleCVError

    store = DetectionStore(workspace)
    root = store.root
    board_path = root / "leaderboard.csv"
    if not board_path.is_file() or not store.names:
        raise EnsembleCVError(f"No leaderboard in {root}: run `ensemblecv ensemble {root}` first.")
    board = pd.read_csv(board_path)
    out = Path(out) if out is not None else root / "report"
    (out / "img").mkdir(parents=True, exist_ok=True)
    from .ensembles import leaderboard_view

    best = board.iloc[0]
    kind = str(best["kind"])
    if (
        kind == "ensemble"
        and not (root / "ensembles" / f"{best['name']}.oof_detections.parquet").is_file()
    ):
        kind, best = "model", board[board["kind"] == "model"].iloc[0]
    dets = _entry_detections(store, str(best["name"]), kind)
    truth = store.truth()
    scorer = MapScorer(truth)
    ids = truth.images["sample_id"].tolist()
    main = scorer.scores(pack(dets, scorer.images), per_class=True, curves=True)
    members = [n for n in board.loc[board["kind"] == "model", "name"] if n in store.runs]
    per_member = {
        m: scorer.scores(pack(store.oof(m), scorer.images), per_class=True) for m in members
    }
    per_class = pd.DataFrame({"class": store.classes})
    per_class["boxes"] = [int((store.boxes["label"] == k).sum()) for k in range(len(store.classes))]
    per_class[f"AP {best['name']}"] = main["ap_per_class"]
    for m in members:
        per_class[f"AP {m}"] = per_member[m]["ap_per_class"]
    per_class = per_class.replace(-1.0, np.nan)
    sizes = pd.DataFrame(
        [
            {
                "entry": str(best["name"]),
                **{k: main[f"map_{k}"] for k in ("small", "medium", "large")},
            }
        ]
        + [
            {"entry": m, **{k: per_member[m][f"map_{k}"] for k in ("small", "medium", "large")}}
            for m in members
        ]
    ).replace(-1.0, np.nan)
    _pr_figure(
        main["precision"],
        store.classes,
        out / "img" / "pr_curves.png",
        f"{best['name']} (OOF, IoU 0.5)",
    )
    threshold = max(best_threshold(dets, store.boxes, ids), MIN_SCORE_FLOOR)
    pairs = match_at(dets, store.boxes, ids, threshold)
    confusion = confusion_frame(pairs, store.classes)
    gallery_rows = _gallery(store, dets, pairs, threshold, out / "img" / "gallery.png", max_gallery)
    kept = []
    for spec_path in sorted((root / "ensembles").glob("*.yaml")):
        spec = yaml.safe_load(spec_path.read_text(encoding="utf-8"))
        if spec.get("method", "single") == "single" or spec_path.stem == "best":
            continue
        fitted = spec.get("fitted", {})
        kept.append({
            "ensemble": spec["name"],
            "members kept (weight)": ", ".join(f"{m} ({w:.2f})" for m, w in spec["weights"].items()),
            "left out": ", ".join(sorted(set(spec.get("candidates", [])) - set(spec["members"]))),
            "iou_thr": fitted.get("iou_thr"),
            "skip_box_thr": fitted.get("skip_box_thr"),
            "conf_type": fitted.get("conf_type"),
        })  # fmt: skip
    facts = [
        ("images", len(store.images)),
        ("boxes", len(store.boxes)),
        ("classes", len(store.classes)),
        ("members", len(store.names)),
        ("best (nested mAP)", f"{best['name']} {best['map']:.4f}"),
    ]
    if "test_map" in board and pd.notna(best.get("test_map")):
        facts.append(("best test mAP", f"{best['test_map']:.4f}"))
    e = html.escape
    sections = [
        ("leaderboard", "Leaderboard", '<p class="note">mAP is nested for ensembles (fitted without the fold it scores); '
         "the optimistic mAP (fitted on every fold) stands beside it. Click a header to sort.</p>"
         + table(leaderboard_view(board), "leaderboard", sortable=True, best=0)),
        ("per-class-ap", "AP per class and member complementarity",
         f'<p class="note">AP@[.5:.95] per class on OOF detections: {e(str(best["name"]))} '
         "(nested) and every member. A member that is best on some class is what fusion can use.</p>"
         '<input type="search" placeholder="Search classes…" data-filter="per-class" aria-label="search classes">'
         + table(per_class, "per-class", sortable=True)
         + ("<h3>What each fusion kept</h3>" + table(pd.DataFrame(kept), "kept", sortable=True) if kept else "")),
        ("pr", "Precision-recall per class", _img(Figure("img/pr_curves.png", "precision-recall curves",
         "COCO's interpolated precision at 101 recall points, IoU 0.5, 100 detections per image."))),
        ("sizes", "AP by object size", '<p class="note">COCO areas: small < 32², medium < 96², large; '
         "a dash: no object of that size.</p>" + table(sizes, "sizes")),
        ("confusion", "Class confusion at IoU 0.5", f'<p class="note">{e(str(best["name"]))}, detections scoring '
         f"≥ {threshold:.2f} (the best-F1 cut), matched greedily to boxes of any class at IoU ≥ 0.5. "
         "Row background: detections that match no object; column missed: objects no detection found.</p>"
         + table(confusion, "confusion")),
        ("gallery", "Worst images", "" if gallery_rows is None else _img(Figure("img/gallery.png",
         "worst images", "Ground truth green, detections red (class, score); most errors first."))
         + table(gallery_rows, "gallery-table")),
    ]  # fmt: skip
    bodies = [(a, t, _section(a, t, b)) for a, t, b in sections]
    nav = "".join(f'<a href="#{a}">{e(t)}</a>' for a, t, b in bodies if b)
    title = f"Detection report: {root.resolve().name}"
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{e(title)}</title><style>{_CSS}</style><script>{_HEAD_JS}</script>"
        f"</head><body>\n<h1>{e(title)}</h1><nav>{nav}</nav>"
        + _cards(facts)
        + "\n".join(b for _, _, b in bodies if b)
        + f"\n<script>{_BODY_JS}</script>\n</body></html>\n"
    )
    path = out / "index.html"
    path.write_text(page, encoding="utf-8")
    return path


__all__ = ["best_threshold", "build_detection_report", "confusion_frame", "match_at"]
