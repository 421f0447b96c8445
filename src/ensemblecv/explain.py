"""Grad-CAM overlays for a trained run: ``ensemblecv explain``.

Images are preprocessed exactly as in evaluation (the run's resize, then the
module's own normalisation), so the heat-map explains the prediction the run
really made. A sample of the workspace is explained by the fold model that
predicted it out-of-fold (the one that never saw it in training); any other
image by the run's first checkpoint.

The target layer is chosen automatically: the last ``Conv2d`` of a CNN, or for
ViT-style timm models (``blocks`` and ``patch_embed``) the last block's
``norm1``, whose tokens are reshaped to a (B, C, H, W) map. Uses
pytorch-grad-cam (``pip install grad-cam``, imported as ``pytorch_grad_cam``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .errors import EnsembleCVError

Target = str | int


@dataclass
class ExplainItem:
    """One image to explain: where it is and, when it is a workspace sample, its label and fold."""

    name: str
    path: str
    label: int | None = None
    fold: int | None = None


def find_target_layer(model: nn.Module) -> tuple[nn.Module, bool]:
    """``(layer, is_token_model)``: the last block's ``norm1`` for ViT-style models (ViT,
    DeiT, EVA, CLIP, hybrids), the last stage of a channels-last model (Swin), else the
    last Conv2d."""
    if hasattr(model, "blocks") and hasattr(model, "patch_embed") and len(model.blocks):
        block = model.blocks[-1]
        return getattr(block, "norm1", block), True
    stages = getattr(model, "layers", None) or getattr(model, "stages", None)
    if getattr(model, "output_fmt", "NCHW") == "NHWC" and isinstance(stages, nn.Sequential):
        return stages[-1], True  # (B, H, W, C) feature maps, e.g. Swin
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise EnsembleCVError(
            f"Cannot choose a Grad-CAM layer for {type(model).__name__}: it has no Conv2d and "
            "is not a ViT-style model (blocks + patch_embed)."
        )
    return convs[-1], False


def token_grid(model: nn.Module, height: int, width: int) -> tuple[int, int]:
    """(rows, columns) of patch tokens for a ``height`` × ``width`` px input.

    The patch embedding knows it (for a hybrid, after its CNN's reduction);
    the model is built for the run's size, so this is the real grid, not the
    pretraining one.
    """
    pe = model.patch_embed
    if hasattr(pe, "dynamic_feat_size"):
        return tuple(int(v) for v in pe.dynamic_feat_size((height, width)))
    return tuple(int(v) for v in pe.grid_size)


def vit_reshape(
    model: nn.Module, height: int, width: int
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Tokens (B, prefix + h*w, C) → (B, C, h, w) for an input of ``height`` × ``width`` px.

    ``h × w`` is the model's real token grid at this size (:func:`token_grid`);
    the tokens before it are the prefix — class, register or distillation tokens
    (``num_prefix_tokens``: 1 for ViT, EVA02 and CLIP, 2 for distilled DeiT, 0
    where the class token joins later, as in CaiT). A tensor that is already
    spatial (B, h, w, C) — Swin's stages — is only permuted. Any other token
    count is an error, not a guessed square.
    """
    grid = token_grid(model, height, width) if hasattr(model, "patch_embed") else None
    expected = int(getattr(model, "num_prefix_tokens", 1))

    def reshape(tokens: torch.Tensor) -> torch.Tensor:
        if tokens.ndim == 4:  # (B, h, w, C): models that keep a spatial layout
            return tokens.permute(0, 3, 1, 2)
        prefix = tokens.shape[1] - (grid[0] * grid[1] if grid else 0)
        if grid is None or prefix not in (0, expected):
            raise EnsembleCVError(
                f"Grad-CAM: {type(model).__name__} gave {tokens.shape[1]} tokens, which is not "
                f"{expected} prefix tokens + a {grid} patch grid for {height}x{width} px."
            )
        h, w = grid
        patches = tokens[:, prefix:, :]
        return patches.reshape(tokens.shape[0], h, w, tokens.shape[2]).permute(0, 3, 1, 2)

    return reshape


def gradcam_map(
    model: nn.Module, x: torch.Tensor, target: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Grad-CAM of one normalised image ``x`` (1, C, H, W) for class ``target`` (None = predicted).

    Returns ``(cam (H, W) in [0, 1], probabilities (num_classes,))``.
    """
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    layer, is_vit = find_target_layer(model)
    reshape = vit_reshape(model, x.shape[2], x.shape[3]) if is_vit else None
    # Frozen layers (model.freeze) would leave nothing to differentiate; this copy is ours.
    model.requires_grad_(True)
    with GradCAM(model=model, target_layers=[layer], reshape_transform=reshape) as cam:
        targets = None if target is None else [ClassifierOutputTarget(int(target))]
        heat = cam(input_tensor=x, targets=targets)[0]
        probs = torch.softmax(cam.outputs.detach().float(), 1)[0].cpu().numpy()
    return np.nan_to_num(heat.astype(np.float32)), probs


def overlay_png(image: np.ndarray, cam: np.ndarray, title: str, left: str, right: str) -> bytes:
    """``image`` (H, W, C uint8) beside its heat-map overlay, as PNG bytes."""
    from pytorch_grad_cam.utils.image import show_cam_on_image

    from .audit.plots import _label, _style
    from .report.figures import plt, to_png

    rgb = np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image
    over = show_cam_on_image(rgb.astype(np.float32) / 255.0, cam, use_rgb=True, image_weight=0.55)
    with _style():
        fig, axes = plt.subplots(1, 2, figsize=(5.2, 2.9))
        for ax, img, sub in zip(axes, (rgb, over), (left, right)):
            ax.imshow(img, interpolation="nearest" if img.shape[0] < 96 else "antialiased")
            ax.set_title(_label(sub), fontsize=8)
            ax.axis("off")
        fig.suptitle(_label(title), fontsize=9)
        return to_png(fig, dpi=90)


def resolve_items(workspace: Path, items: Sequence[str]) -> list[ExplainItem]:
    """Workspace sample ids (with label and fold) or image files; anything else fails loudly."""
    from .workspace import Workspace

    ws = Workspace(Path(workspace))
    frame = ws.load_table().frame.set_index("sample_id")
    folds = ws.load_folds().set_index("sample_id")["fold"]
    out, missing = [], []
    for item in items:
        key = str(item)
        if key in frame.index:
            row = frame.loc[key]
            fold = int(folds[key]) if key in folds.index else None
            label = int(row["label"]) if int(row["label"]) >= 0 else None
            out.append(ExplainItem(key, str(row["path"]), label, fold))
        elif Path(key).is_file():
            out.append(ExplainItem(Path(key).name, key))
        else:
            missing.append(key)
    if missing:
        raise EnsembleCVError(
            f"Not an image file nor a sample id of {workspace}: {', '.join(missing[:10])}"
            f"{' ...' if len(missing) > 10 else ''}."
        )
    return out


def worst_samples(workspace: Path, run: str, n: int) -> list[str]:
    """Sample ids of the ``n`` most confidently wrong out-of-fold predictions of ``run``."""
    from .ensemble.store import PredictionStore
    from .evaluate.metrics import most_confident_errors

    store = PredictionStore(workspace)
    return [str(s) for s in store.sample_ids[most_confident_errors(store.oof(run), store.y, n)]]


def _checkpoint_for(run_dir: Path, fold: int | None) -> Path:
    from .inference import checkpoints

    if fold is not None:
        for name in ("best.ckpt", "last.ckpt"):
            path = run_dir / f"fold_{fold}" / name
            if path.is_file():
                return path
    return checkpoints(run_dir)[0]


def _target_class(target: Target, item: ExplainItem, num_classes: int) -> int | None:
    if target == "pred":
        return None
    if target == "true":
        if item.label is None:
            raise EnsembleCVError(
                f"target='true' needs a labelled workspace sample; {item.name} has no label. "
                "Use target='pred' or a class index."
            )
        return item.label
    if isinstance(target, int) or str(target).isdigit():
        if not 0 <= int(target) < num_classes:
            raise EnsembleCVError(f"Class index {target} is outside 0..{num_classes - 1}.")
        return int(target)
    raise EnsembleCVError(
        f"Unknown Grad-CAM target {target!r}; use 'pred', 'true' or a class index."
    )


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(text).stem)[:60] or "image"


def gradcam_overlays(
    workspace: str | Path,
    run: str,
    images: Sequence[str],
    out_dir: str | Path,
    target: Target = "pred",
) -> list[Path]:
    """Write one overlay PNG (input | Grad-CAM) per image or sample id; returns their paths.

    ``target``: ``'pred'`` (the predicted class), ``'true'`` (the label; samples
    only) or a class index.
    """
    from .augment import build_resize
    from .data.imageio import load_image
    from .data.samples import load_classes
    from .inference import load_module, run_config

    workspace, run = Path(workspace), run.removesuffix("+tta")
    run_dir = workspace / "runs" / run
    cfg = run_config(run_dir)
    classes = load_classes(workspace / "classes.json")
    resize = build_resize(cfg.data)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    modules: dict[Path, nn.Module] = {}
    written = []
    for i, item in enumerate(resolve_items(workspace, images)):
        ckpt = _checkpoint_for(run_dir, item.fold)
        if ckpt not in modules:
            modules[ckpt] = load_module(ckpt, device)
        module = modules[ckpt]
        image = resize(load_image(item.path, channels=cfg.data.channels))
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].to(device)
        cls = _target_class(target, item, len(classes))
        cam, probs = gradcam_map(module.model, module.normalize(x), cls)
        cls = int(probs.argmax()) if cls is None else cls
        pred = int(probs.argmax())
        truth = f"true {classes[item.label]} · " if item.label is not None else ""
        title = f"{item.name}\n{truth}pred {classes[pred]} ({probs[pred]:.2f})"
        png = overlay_png(
            image, cam, title, "input", f"Grad-CAM: {classes[cls]} ({probs[cls]:.2f})"
        )
        path = out_dir / f"gradcam_{i:02d}_{_slug(item.name)}.png"
        path.write_bytes(png)
        written.append(path)
    return written
