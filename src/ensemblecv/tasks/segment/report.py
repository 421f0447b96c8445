"""``ensemblecv report`` for segmentation: per-class IoU, the confusion matrix, the worst images.

Built on the shared report shell (:mod:`ensemblecv.report.html`). The entry
shown in detail is the leaderboard's best (by honest CV mIoU); an ensemble's
maps are its nested OOF predictions (fold k predicted by weights fitted
without fold k), so the page shows what the leaderboard scored. The worst
images — lowest per-image mIoU over the classes present in truth or
prediction — are drawn as strips: image | truth | prediction | error (red:
wrong, grey: ignored pixels).
"""

from __future__ import annotations

import copy
import io
from pathlib import Path

import numpy as np
import pandas as pd

from .metrics import confusion, scores_from_confusion


def _colours(palette: np.ndarray | None) -> np.ndarray:
    from .masks import voc_palette

    colours = voc_palette()
    if palette is not None:
        colours[: len(palette)] = palette
    return colours


def _strip(image: np.ndarray, truth: np.ndarray, pred: np.ndarray, colours, ignore: int, cell=128):
    """image | truth | prediction | error, each ``cell`` px high."""
    import cv2

    h, w = truth.shape
    scale = cell / h
    size = (max(1, round(w * scale)), cell)
    err = np.full((h, w, 3), 255, np.uint8)
    err[(pred != truth)] = (220, 30, 30)
    err[truth == ignore] = (170, 170, 170)
    parts = [
        image,
        colours[truth],
        colours[pred],
        err,
    ]
    parts = [cv2.resize(p, size, interpolation=cv2.INTER_NEAREST) for p in parts]
    gap = np.full((cell, 4, 3), 255, np.uint8)
    return np.concatenate([parts[0], gap, parts[1], gap, parts[2], gap, parts[3]], axis=1)


def _png(array: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _entry_maps(store, board: pd.DataFrame | None, specs: dict) -> tuple[str, np.ndarray]:
    """(name, OOF maps) of the board's best entry: a run's stored maps or an ensemble's nested ones."""
    from .ensemble import _MAP_METHODS

    name = str(board.loc[0, "name"]) if board is not None and len(board) else store.names[0]
    spec = specs.get(name, {})
    if spec.get("method", "single") == "single" or name in store.maps:
        return name, store.maps[name if name in store.maps else store.names[0]]
    est = _MAP_METHODS.get(spec["method"])()
    candidates = [c for c in spec.get("candidates", store.names) if c in store.maps]
    maps = [store.maps[c] for c in candidates]
    truth = store.truth(store.side)
    out = np.zeros(maps[0].shape, np.float32)
    for fold in np.unique(store.fold_of):
        inner, outer = store.fold_of != fold, store.fold_of == fold
        fitted = copy.deepcopy(est).fit([m[inner] for m in maps], truth[inner], store.ignore_index)
        out[outer] = fitted.predict_proba([m[outer] for m in maps])
    return name, out


def build_segment_report(root: Path, out: Path | None, options: dict) -> Path:
    """Write ``out/index.html`` (default ``WORKSPACE/report``); the page's path."""
    from ...data.imageio import load_image
    from ...report import figures
    from ...report.build import _configs, _curves, _Images, _specs
    from ...report.html import Figure, ReportContent, render_report
    from .ensemble import MapStore
    from .store import resize_probs

    out = Path(out) if out is not None else root / "report"
    out.mkdir(parents=True, exist_ok=True)
    images = _Images(out)
    store = MapStore(root)
    board_path = root / "leaderboard.csv"
    board = pd.read_csv(board_path) if board_path.is_file() else None
    specs = _specs(root)
    name, maps = _entry_maps(store, board, specs)
    k, ig = len(store.classes), store.ignore_index
    masks = list(store.masks())
    per_image, total = [], np.zeros((k, k), np.int64)
    preds = []
    for p, m in zip(maps, masks):
        pred = resize_probs(p, *m.shape).argmax(0).numpy().astype(np.uint8)
        cm = confusion(m, pred, k, ig)
        total += cm
        score = scores_from_confusion(cm)["miou"]
        per_image.append(score if np.isfinite(score) else 1.0)
        preds.append(pred)
    scores = scores_from_confusion(total)
    content = ReportContent(f"ensemblecv report (segmentation): {root.resolve().name}", [])
    content.titles = {
        "errors": "Errors: per-class IoU, confusion matrix",
        "gallery": "Worst images: image | truth | prediction | error",
    }
    content.facts = [
        ("images", len(store.samples)),
        ("classes", k),
        ("complete runs", len([n for n in store.names if not n.endswith("+tta")])),
        ("folds", store.n_folds),
        (f"OOF mIoU: {name}", f"{scores['miou']:.4f}"),
        ("pixel accuracy", f"{scores['pixel_acc']:.4f}"),
    ]
    if board is not None:
        cols = [c for c in ("name", "kind", "method", "miou", "pixel_acc", "mean_dice",
                            "optimistic_miou", "test_miou", "members") if c in board]  # fmt: skip
        content.leaderboard = board[cols]
        weights = {
            n: s["weights"] for n, s in specs.items() if s.get("method") not in (None, "single")
            and s.get("weights")
        }  # fmt: skip
        if weights:
            content.weights = pd.DataFrame(weights).T.rename_axis("ensemble").reset_index()
    content.curves = _curves(root, images)
    content.reference_note = (
        f"{name}: out-of-fold predictions from the stored maps, scored at each image's own size "
        f"(ignore_index {ig} left out; a class absent from truth and prediction has no IoU)."
    )
    shown = list(range(k)) if k <= 30 else figures.most_confused_classes(total)
    src = images.save("confusion", figures.confusion_png(total, store.classes, shown))
    content.confusion = Figure(src, "confusion matrix", f"pixels, rows = truth ({name})")
    truth_px, pred_px = total.sum(1), total.sum(0)
    content.per_class = pd.DataFrame(
        {
            "class": store.classes,
            "IoU": scores["iou"],
            "Dice": scores["dice"],
            "truth px share": truth_px / max(1, truth_px.sum()),
            "predicted px share": pred_px / max(1, pred_px.sum()),
        }
    )
    n_show = int(options.get("max_gallery", 24) or 0)
    worst = np.argsort(np.asarray(per_image), kind="stable")[: min(n_show, 12)]
    if len(worst):
        colours = _colours(store.palette)
        paths = store.samples["image_path"].astype(str).to_numpy()
        strips = [_strip(load_image(paths[i], 3), masks[i], preds[i], colours, ig) for i in worst]
        width = max(s.shape[1] for s in strips)
        strips = [np.pad(s, ((0, 6), (0, width - s.shape[1]), (0, 0)), constant_values=255)
                  for s in strips]  # fmt: skip
        src = images.save("worst", _png(np.concatenate(strips, axis=0)))
        content.gallery = Figure(src, "worst images", "image | truth | prediction | error")
        content.gallery_rows = pd.DataFrame(
            {
                "sample_id": store.samples["sample_id"].to_numpy()[worst],
                "image mIoU": np.asarray(per_image)[worst],
                "fold": store.fold_of[worst],
            }
        )
    content.configs = _configs(root)
    page = out / "index.html"
    page.write_text(render_report(content), encoding="utf-8")
    return page


__all__ = ["build_segment_report"]
