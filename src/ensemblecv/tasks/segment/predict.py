"""``ensemblecv predict`` for segmentation: one palette PNG per image, at the image's own size.

The ensemble's members (runs, or ``run+tta``) each predict with all their
fold models (a bag, as their test maps were made); each image is decoded
once and resized per member's input size; probabilities are mapped back to
the image's own pixels, combined with the ensemble's weights (arithmetic or
geometric, as fitted) and written as ``OUT/<stem>.png`` — palette PNGs of
class indices in the dataset's colours (VOC's by default), so viewers show
colours and programs read indices. ``--probs DIR`` also writes
``DIR/<stem>.npy``: (K, H, W) uint8 probabilities (``p * 255``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ...errors import DataError, EnsembleCVError


def load_fold_modules(run_dir: Path) -> list:
    """The run's fold models (best checkpoints), rebuilt without fetching pretrained weights."""
    from .module import SegmenterModule

    modules = []
    for ckpt in sorted(run_dir.glob("fold_*/best.ckpt")):
        blob = torch.load(ckpt, map_location="cpu", weights_only=False)
        hp = dict(blob["hyper_parameters"])
        cfg = dict(hp["config"])
        # The weights come from the checkpoint; rebuilding must not go to the hub for them.
        cfg["model"] = {**cfg["model"], "pretrained": False, "backbone_pretrained": False}
        hp["config"] = cfg
        module = SegmenterModule(**hp)
        module.load_state_dict(blob["state_dict"])
        modules.append(module.eval())
    if not modules:
        raise EnsembleCVError(f"{run_dir} has no fold checkpoints (best.ckpt); train it first.")
    return modules


class _Member:
    def __init__(self, root: Path, name: str, tta_option: str | None) -> None:
        import yaml

        run = name[: -len("+tta")] if name.endswith("+tta") else name
        run_dir = root / "runs" / run
        if not run_dir.is_dir():
            raise EnsembleCVError(f"Member {name!r}: no run folder {run_dir}.")
        cfg = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
        seg = cfg.get("segment", {})
        self.size, self.mode = (
            int(cfg["data"]["image_size"]),
            cfg["data"].get("resize", "letterbox"),
        )
        self.tta = list(seg.get("tta", [])) if name.endswith("+tta") else []
        if tta_option == "hflip" and "hflip" not in self.tta:
            self.tta.append("hflip")
        self.scales = list(seg.get("tta_scales", [0.75, 1.0, 1.25]))
        self.modules = load_fold_modules(run_dir)

    def probs(self, image: np.ndarray, device) -> torch.Tensor:
        """(K, H, W) probabilities of an (H, W, 3) uint8 image, mean over the fold models."""
        from ...data.resize import resize_op
        from .data import frame_geometry
        from .store import frame_probs, to_original

        h, w = image.shape[:2]
        frame = resize_op(self.mode, self.size)(image)
        x = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)[None].to(device)
        box = frame_geometry(h, w, self.size, self.mode)
        total = None
        with torch.no_grad():
            for m in self.modules:
                p = frame_probs(m.model.to(device), x, self.tta, self.scales)[0].float().cpu()
                total = p if total is None else total + p
        return to_original(total / len(self.modules), box, h, w)


def _images(data: str):
    """(sample_id, stem, path) of the images to predict: any layout the reader knows, else a folder."""
    from .read import read_segmentation

    try:
        table = read_segmentation(data).images
    except (DataError, ValueError):
        table = read_segmentation(data, format="images").images
    if not len(table):
        raise DataError(f"No images found in {data}.")
    return [(sid, Path(p).stem, p) for sid, p in zip(table["sample_id"], table["image_path"])]


def predict_masks(root: Path, data: str, out: Path, ensemble: str, options: dict, progress):
    """Write ``out/<stem>.png`` for every image of ``data``; the lines to tell the user."""
    from PIL import Image

    from ..._progress import maybe_progress
    from ...data.imageio import load_image
    from ...ensemble.build import load_spec
    from .ensemble import _combine
    from .masks import voc_palette
    from .workspace import workspace_meta

    if options.get("format") not in (None, "png"):
        raise EnsembleCVError(f"--format {options['format']!r}: segmentation writes png masks.")
    if options.get("tta") not in (None, "hflip"):
        raise EnsembleCVError(f"--tta {options['tta']!r}: segmentation offers hflip.")
    try:
        spec = load_spec(root, ensemble)
    except EnsembleCVError:
        if not (root / "runs" / ensemble.split("+")[0]).is_dir():
            raise
        spec = {"name": ensemble, "method": "single", "members": [ensemble], "weights": None}
    members = list(spec["members"])
    weights = np.array(
        [1.0] * len(members) if not spec.get("weights") else [spec["weights"][m] for m in members]
    )
    geometric = "geometric" in str(spec.get("method", ""))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    loaded = [_Member(root, m, options.get("tta")) for m in members]
    _, palette = workspace_meta(root)
    colours = voc_palette()
    if palette is not None:
        colours[: len(palette)] = palette
    out.mkdir(parents=True, exist_ok=True)
    probs_dir = Path(options["probs"]) if options.get("probs") else None
    if probs_dir is not None:
        probs_dir.mkdir(parents=True, exist_ok=True)
    images = _images(data)
    seen: set[str] = set()
    with maybe_progress(progress, "predict", len(images)) as advance:
        for _, stem, path in images:
            if stem in seen:
                raise DataError(
                    f"Two images share the file stem {stem!r}; their masks would collide."
                )
            seen.add(stem)
            image = load_image(path, 3)
            maps = [m.probs(image, device).numpy()[None] for m in loaded]
            p = _combine(maps, weights / weights.sum(), geometric)[0]
            mask = Image.fromarray(p.argmax(0).astype(np.uint8), mode="P")
            mask.putpalette(colours.reshape(-1).tolist())
            mask.save(out / f"{stem}.png")
            if probs_dir is not None:
                np.save(probs_dir / f"{stem}.npy", (p * 255).round().astype(np.uint8))
            advance(1)
    lines = [f"Wrote {len(images)} masks (palette PNGs at each image's size) to {out}"]
    lines.append(f"ensemble {spec['name']!r}: {', '.join(members)}")
    if probs_dir is not None:
        lines.append(f"probabilities (K, H, W uint8) in {probs_dir}")
    return lines


__all__ = ["load_fold_modules", "predict_masks"]
