"""Run an ensemble exported by ``ensemblecv export`` without ensemblecv installed.

    pip install onnxruntime numpy pillow opencv-python-headless
    python predict_onnx.py model.onnx cat.jpg dog.png --top 3

``export`` copies this file beside the .onnx as ``predict_onnx.py``. It reads
the input settings from the model's own metadata and prepares images exactly
as ensemblecv does (its test compares the two pixel for pixel): EXIF
orientation, transparency composited onto white, any PIL mode to the model's
1 or 3 channels, then the model's resize — ``stretch``, ``letterbox`` (padded
with the median colour of the image's border) or ``center_crop``, with OpenCV
area interpolation when shrinking and bilinear when enlarging. Use it as a
module too: ``from predict_onnx import Model; Model("model.onnx").predict(paths)``.

It deliberately imports nothing from ensemblecv.
"""

from __future__ import annotations

import argparse
import json
import sys

import cv2
import numpy as np
import onnxruntime as ort
from PIL import Image, ImageOps

MAX_PIXELS = 100_000_000


def _to_8bit(arr: np.ndarray) -> np.ndarray:
    is_float = arr.dtype.kind == "f"
    arr = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = float(arr.min(initial=0.0)), float(arr.max(initial=0.0))
    if lo >= 0 and hi <= 1.0 and is_float:
        arr = arr * 255.0
    elif lo >= 0 and hi <= 255:
        pass
    elif lo >= 0 and hi <= 65535:
        arr = arr / 257.0
    else:
        arr = (arr - lo) / max(hi - lo, 1e-12) * 255.0
    return np.clip(np.rint(arr), 0, 255).astype(np.uint8)


def load_image(path: str, channels: int) -> np.ndarray:
    """(H, W, channels) uint8, as ensemblecv's decoder gives it."""
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    with Image.open(path) as img:
        img.load()
        img = ImageOps.exif_transpose(img)
    mode = img.mode
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif mode == "1":
        img = img.convert("L")
    elif mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        img = Image.fromarray(_to_8bit(np.asarray(img)), mode="L")
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        img = img.convert("RGB")
    if img.mode in ("LA", "La", "RGBA", "RGBa", "PA"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba).convert("RGB")
    if img.mode not in ("L", "RGB"):
        img = img.convert("RGB")
    img = img.convert("L" if channels == 1 else "RGB")
    arr = np.array(img, dtype=np.uint8)
    return np.ascontiguousarray(arr[:, :, None] if arr.ndim == 2 else arr)


_ENLARGE = {
    "auto": cv2.INTER_LINEAR,
    "bilinear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC,
    "lanczos": cv2.INTER_LANCZOS4,
    "nearest": cv2.INTER_NEAREST,
}


def _resize(img: np.ndarray, h: int, w: int, interpolation: str = "auto") -> np.ndarray:
    if img.shape[:2] == (h, w):
        return img
    shrink = h * w < img.shape[0] * img.shape[1]
    flag = cv2.INTER_AREA if shrink and interpolation != "nearest" else _ENLARGE[interpolation]
    out = cv2.resize(img, (w, h), interpolation=flag)
    return out if out.ndim == 3 else out[:, :, None]


def resize(
    img: np.ndarray, mode: str, size: int, interpolation: str = "auto", crop_pct: float = 1.0
) -> np.ndarray:
    """``stretch | letterbox | center_crop`` to (size, size, C), as ensemblecv resizes."""
    h, w = img.shape[:2]
    if mode == "stretch":
        return _resize(img, size, size, interpolation)
    if mode == "letterbox":
        scale = size / max(h, w)
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        resized = _resize(img, nh, nw, interpolation)
        if (nh, nw) == (size, size):
            return resized
        edge = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]], axis=0)
        out = np.empty((size, size, img.shape[2]), dtype=img.dtype)
        out[:] = np.median(edge, axis=0).round().astype(np.uint8)
        top, left = (size - nh) // 2, (size - nw) // 2
        out[top : top + nh, left : left + nw] = resized
        return out
    if mode == "center_crop":
        scale = size / crop_pct / min(h, w)
        nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
        resized = _resize(img, nh, nw, interpolation)
        top, left = (nh - size) // 2, (nw - size) // 2
        return resized[top : top + size, left : left + size]
    raise ValueError(f"unknown resize mode {mode!r}")


class Model:
    """An exported ensemble: ``predict(paths)`` → (probabilities (N, K), member probabilities)."""

    def __init__(self, onnx_path: str, threads: int = 0) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
        self.info = json.loads(self.session.get_modelmeta().custom_metadata_map["ensemblecv"])
        self.classes = self.info["classes"]

    def preprocess(self, path: str) -> np.ndarray:
        spec = self.info["input"]
        return resize(
            load_image(path, spec["channels"]),
            spec["resize"],
            spec["height"],
            spec.get("interpolation") or "auto",
            spec.get("crop_pct") or 1.0,
        )

    def predict(self, paths: list[str]) -> tuple[np.ndarray, np.ndarray]:
        batch = np.stack([self.preprocess(p) for p in paths])
        probs, members = self.session.run(None, {"images": batch})
        return probs, members


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="the exported .onnx file")
    parser.add_argument("images", nargs="+", help="image files")
    parser.add_argument("--top", type=int, default=3, help="classes shown per image")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    args = parser.parse_args(argv)
    model = Model(args.model)
    probs, _ = model.predict(args.images)
    for path, p in zip(args.images, probs):
        order = np.argsort(-p)[: args.top]
        top = [(model.classes[i], float(p[i])) for i in order]
        if args.json:
            print(json.dumps({"image": path, "class": top[0][0], "top": dict(top)}))
        else:
            print(f"{path}: " + ", ".join(f"{c} {v:.3f}" for c, v in top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
