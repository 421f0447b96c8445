"""``ensemblecv predict`` on a detection workspace: new images → fused detections → a file.

Each member of the chosen ensemble (``ensembles/<name>.yaml``) predicts as its
test detections were made (:mod:`.store`): the run's refit when it has one,
else its fold models fused by WBF; ``NAME+hflip`` members predict mirrored
images. Images are decoded once per preprocessing (image size and resize mode),
so members that share it share the decode. Output, by ``--format`` or the
suffix of ``--out``:

* ``.csv`` — ``image_path, class_name, score, x1, y1, x2, y2`` (pixels of the
  original image; an image with no detection is one row with empty class);
* ``.json`` — COCO: ``images`` (``file_name`` = the image path),
  ``categories``, and ``annotations`` with a ``score`` (a results list, which
  ``COCO.loadRes`` takes), readable by the COCO reader;
* a folder (no suffix, or ``--format yolo``) — ``labels/<image>.txt`` with
  ``class cx cy w h score`` (normalised) and ``data.yaml``; an image with no
  detection gets an empty file.

``image_path`` is the image's path as the input lists it (relative to the
folder or COCO/YOLO root).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd

from ...errors import EnsembleCVError

FORMATS = ("csv", "coco", "yolo")


def output_format(out: Path, format: str | None) -> str:
    if format is not None:
        if format not in FORMATS:
            raise EnsembleCVError(
                f"Unknown --format {format!r}; choose one of {', '.join(FORMATS)}."
            )
        return format
    suffix = Path(out).suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix == ".json":
        return "coco"
    if suffix == "":
        return "yolo"
    raise EnsembleCVError(
        f"Cannot tell the output format from {out}: use .csv, .json (COCO) or a folder (YOLO), "
        "or name it with --format csv|coco|yolo."
    )


def read_images(data: str) -> pd.DataFrame:
    """``sample_id`` (the path as the input lists it) and absolute ``path`` of every image:
    a detection dataset in any format part 1 reads, a folder of images, or a CSV index."""
    from .read import detect_format, read_detection

    path = Path(data)
    if path.suffix.lower() == ".csv" and path.is_file():
        frame = pd.read_csv(path)
        if "image_path" not in frame:
            raise EnsembleCVError(
                f"{path} has no image_path column (columns: {list(frame.columns)})."
            )
        ids = frame["image_path"].astype(str)
        paths = [str((path.parent / p).absolute()) for p in ids]
        return pd.DataFrame({"sample_id": ids.to_numpy(), "path": paths})
    if not path.exists():
        raise EnsembleCVError(f"--data {data} does not exist.")
    fmt = detect_format(path) or "images"
    found = read_detection(path, format=fmt)
    return found.images[["sample_id", "path"]].reset_index(drop=True)


def _member_runs(spec: dict) -> dict[str, set[bool]]:
    """Run name → the views (hflip or not) its members need, in member order."""
    runs: dict[str, set[bool]] = {}
    for m in spec["members"]:
        run, flip = (m[: -len("+hflip")], True) if m.endswith("+hflip") else (m, False)
        runs.setdefault(run, set()).add(flip)
    return runs


def _checkpoints(run_dir: Path) -> list[Path]:
    if (run_dir / "full" / "done.json").is_file():
        for name in ("best.ckpt", "last.ckpt"):
            if (run_dir / "full" / name).is_file():
                return [run_dir / "full" / name]
    folds = sorted(p for p in run_dir.glob("fold_*") if p.is_dir())
    found = [
        next((f / n for n in ("best.ckpt", "last.ckpt") if (f / n).is_file()), None) for f in folds
    ]
    if not found or any(f is None for f in found):
        raise EnsembleCVError(f"Run {run_dir.name} lacks fold checkpoints in {run_dir}.")
    return found


def _load(ckpt: Path):
    import torch

    from .module import DetectorModule

    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    hp = copy.deepcopy(state["hyper_parameters"])
    hp["config"]["model"]["pretrained"] = False  # the weights are in the checkpoint
    if "backbone_pretrained" in hp["config"]["model"]:
        hp["config"]["model"]["backbone_pretrained"] = False
    module = DetectorModule(**hp)
    module.load_state_dict(state["state_dict"])
    return module.eval()


def member_detections(workspace: Path, spec: dict, images: pd.DataFrame, classes, progress=None):
    """Detections of every member of ``spec`` on ``images`` (sample_id, path), and the sizes."""
    import torch
    import yaml

    from ...config import ExperimentConfig
    from ...training.data import default_workers
    from .data import DetectSource
    from .detections import predict_detections
    from .store import bag_folds

    sources: dict[tuple, DetectSource] = {}
    per_member: dict[str, pd.DataFrame] = {}
    sizes = None
    device = torch.device("cpu")
    for run, views in _member_runs(spec).items():
        run_dir = workspace / "runs" / run
        cfg_path = run_dir / "config.yaml"
        if not cfg_path.is_file():
            raise EnsembleCVError(
                f"Run {run} of ensemble {spec['name']!r} is gone from {workspace}."
            )
        config = ExperimentConfig.model_validate(yaml.safe_load(cfg_path.read_text("utf-8")))
        key = (config.data.image_size, config.data.resize)
        if key not in sources:  # one decode per preprocessing, shared by its members
            sources[key] = DetectSource(images, None, key[0], key[1], 1 << 30)
            if sizes is None:
                src = sources[key]
                sizes = pd.DataFrame(
                    {
                        "sample_id": images["sample_id"].astype(str).to_numpy(),
                        "width": [o[1] if o else 0 for o in src.original],
                        "height": [o[0] if o else 0 for o in src.original],
                    }
                )
        source = sources[key]
        inputs = SimpleNamespace(classes=list(classes), workers=default_workers(True))
        rows = np.arange(len(images))
        outputs: dict[bool, list[pd.DataFrame]] = {v: [] for v in views}
        for ckpt in _checkpoints(run_dir):
            module = _load(ckpt)
            for flip in sorted(views):
                outputs[flip].append(
                    predict_detections(module, source, rows, inputs, config, device, hflip=flip)
                )
            if progress:
                progress(1)
        for flip, parts in outputs.items():
            per_member[run + ("+hflip" if flip else "")] = bag_folds(parts, sizes)
    return [per_member[m] for m in spec["members"]], sizes


def write_detections(workspace, data: str, out, ensemble: str, options: dict, progress=None):
    """The ``predict`` hook: fused detections of ``data`` written to ``out``; lines to print."""
    from ...data.samples import load_classes
    from ...ensemble.build import load_spec
    from .ensembles import fuse_members

    workspace, out = Path(workspace), Path(out)
    fmt = output_format(out, options.get("format"))
    if options.get("tta"):
        raise EnsembleCVError(
            "--tta does not apply to detection: TTA views are ensemble members (train.tta: "
            "[hflip] stores NAME+hflip), chosen on OOF detections by `ensemblecv ensemble`."
        )
    spec = load_spec(workspace, ensemble)
    if spec.get("task") != "detect":
        raise EnsembleCVError(f"{ensemble!r} in {workspace} is not a detection ensemble.")
    classes = load_classes(workspace / "classes.json")
    images = read_images(data)
    members, sizes = member_detections(workspace, spec, images, classes)
    bad = sizes["width"] <= 0
    if bad.any():
        raise EnsembleCVError(
            f"{int(bad.sum())} image(s) could not be decoded, e.g. {images['path'][bad].iloc[0]}."
        )
    dets = fuse_members(spec, members, sizes)
    dets = dets.assign(class_name=[classes[k] for k in dets["label"]])
    writer = {"csv": write_csv, "coco": write_coco_results, "yolo": write_yolo_folder}[fmt]
    writer(dets, sizes, classes, out)
    empty = len(set(sizes["sample_id"]) - set(dets["sample_id"]))
    return [
        f"Wrote {len(dets)} detections of {len(sizes)} images ({empty} without any) with "
        f"{spec['name']!r} ({spec['method']}) to {out} ({fmt})."
    ]


def write_csv(dets: pd.DataFrame, images: pd.DataFrame, classes, out: Path) -> None:
    cols = ["image_path", "class_name", "score", "x1", "y1", "x2", "y2"]
    frame = dets.rename(columns={"sample_id": "image_path"})[cols]
    missing = sorted(set(images["sample_id"]) - set(frame["image_path"]))
    if missing:
        blank = pd.DataFrame({"image_path": missing, "class_name": ""})
        frame = pd.concat([frame, blank.reindex(columns=cols)], ignore_index=True)
    order = {sid: i for i, sid in enumerate(images["sample_id"])}
    frame = frame.assign(_o=frame["image_path"].map(order))
    frame = frame.sort_values(["_o", "score"], ascending=[True, False], kind="stable")
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.drop(columns="_o").to_csv(out, index=False)


def write_coco_results(dets: pd.DataFrame, images: pd.DataFrame, classes, out: Path) -> None:
    ids = {sid: i + 1 for i, sid in enumerate(images["sample_id"])}
    doc = {
        "images": [
            {"id": ids[s], "file_name": s, "width": int(w), "height": int(h)}
            for s, w, h in zip(images["sample_id"], images["width"], images["height"])
        ],
        "categories": [{"id": k + 1, "name": str(c)} for k, c in enumerate(classes)],
        "annotations": [
            {
                "id": i + 1,
                "image_id": ids[s],
                "category_id": int(lab) + 1,
                "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)],
                "area": float((x2 - x1) * (y2 - y1)),
                "iscrowd": 0,
                "score": float(sc),
            }
            for i, (s, lab, sc, x1, y1, x2, y2) in enumerate(
                dets[["sample_id", "label", "score", "x1", "y1", "x2", "y2"]].itertuples(
                    index=False
                )
            )
        ],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc), encoding="utf-8")


def write_yolo_folder(dets: pd.DataFrame, images: pd.DataFrame, classes, out: Path) -> None:
    import yaml

    from ._common import layout_key

    by_image = {sid: part for sid, part in dets.groupby("sample_id", sort=False)}
    for sid, w, h in zip(images["sample_id"], images["width"], images["height"]):
        label = (out / "labels" / layout_key(sid)).with_suffix(".txt")
        label.parent.mkdir(parents=True, exist_ok=True)
        part = by_image.get(sid)
        lines = []
        if part is not None:
            for lab, sc, x1, y1, x2, y2 in part[
                ["label", "score", "x1", "y1", "x2", "y2"]
            ].itertuples(index=False):
                lines.append(
                    f"{lab} {(x1 + x2) / 2 / w:.8f} {(y1 + y2) / 2 / h:.8f} "
                    f"{(x2 - x1) / w:.8f} {(y2 - y1) / h:.8f} {sc:.6f}"
                )
        label.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    doc = {"nc": len(classes), "names": dict(enumerate(classes))}
    (out / "data.yaml").write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")


__all__ = ["FORMATS", "member_detections", "output_format", "read_images", "write_detections"]
