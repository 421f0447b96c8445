"""Augmentation ops: a registry of builders, each returning an albumentations transform.

Every op — albumentations' own, our few custom ones (erode/dilate, edge
rendering, reflect-padded crop) and torchvision's policies (RandAugment,
AutoAugment, TrivialAugment) — is an albumentations transform, so one seeded
``Compose`` drives all randomness and a resumed training run reproduces the
uninterrupted one. Ops work on uint8 (H, W, C) arrays with C = 1 or 3 and keep
C (OpenCV silently drops a trailing channel of 1; :class:`_ImageFn` restores it).

A config names ops as dicts, ``{name: rotate, limit: 15, p: 0.5}``; the
builder's keyword arguments are the accepted parameters. ``size`` is not a user
parameter: the pipeline injects ``data.image_size`` into builders that declare it.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import albumentations as A
import cv2
import numpy as np
import torch
from torchvision.transforms import v2

from .._registry import Registry
from ..errors import ConfigError, EnsembleCVError

OpBuilder = Callable[..., A.BasicTransform]

_OPS: Registry[OpBuilder] = Registry("augmentation op")

#: Builder arguments filled by the pipeline, never by the user.
INJECTED = ("size",)

_BORDERS = {
    "constant": cv2.BORDER_CONSTANT,
    "reflect": cv2.BORDER_REFLECT_101,
    "replicate": cv2.BORDER_REPLICATE,
    "wrap": cv2.BORDER_WRAP,
}


def register_op(name: str) -> Callable[[OpBuilder], OpBuilder]:
    """Decorator: register ``builder(**params, p=...) -> albumentations transform`` as ``name``."""
    return _OPS.register(name)


def list_ops() -> list[str]:
    return _OPS.names()


def get_op(name: str) -> OpBuilder:
    try:
        return _OPS.get(name)
    except EnsembleCVError as exc:
        raise ConfigError(str(exc)) from None


def op_params(name: str) -> list[str]:
    """The parameters a config may give op ``name`` (its builder's keywords minus injected ones)."""
    return [p for p in inspect.signature(get_op(name)).parameters if p not in INJECTED]


def build_op(spec: Mapping[str, Any], size: int) -> A.BasicTransform:
    """Build one op from its config dict; every mistake is a :class:`ConfigError` naming the op."""
    if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str):
        raise ConfigError(
            f"Each augmentation op needs a 'name' (one of {', '.join(list_ops())}); got {spec!r}."
        )
    params = {k: v for k, v in spec.items() if k != "name"}
    name = spec["name"]
    accepted = op_params(name)
    unknown = [k for k in params if k not in accepted]
    if unknown:
        hints = [m for k in unknown for m in difflib.get_close_matches(k, accepted, n=1)]
        hint = f" Did you mean {', '.join(hints)}?" if hints else ""
        why = " (size is set from data.image_size)" if "size" in unknown else ""
        raise ConfigError(
            f"Augmentation op {name!r} got unknown parameter(s) "
            f"{', '.join(map(repr, unknown))}{why}."
            f"{hint} Accepted: {', '.join(accepted)}."
        )
    if "size" in inspect.signature(get_op(name)).parameters:
        params["size"] = size
    try:
        return get_op(name)(**params)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
        first = str(exc).strip().splitlines()
        raise ConfigError(
            f"Invalid parameters for augmentation op {name!r} {params!r}: "
            f"{' '.join(first[:4])} Accepted: {', '.join(accepted)}."
        ) from None


# --------------------------------------------------------------------- helpers


def _check_p(p: float) -> float:
    if not 0.0 <= float(p) <= 1.0:
        raise ValueError(f"p must be within [0, 1], got {p}")
    return float(p)


def _border(border: str) -> int:
    if border not in _BORDERS:
        raise ValueError(f"border must be one of {', '.join(_BORDERS)}, got {border!r}")
    return _BORDERS[border]


def _range(value: float | tuple | list, name: str) -> tuple[float, float]:
    """A scalar or a [lo, hi] pair as a (lo, hi) tuple."""
    if isinstance(value, (int, float)):
        return (float(value), float(value))
    lo, hi = (float(v) for v in value)
    if lo > hi:
        raise ValueError(f"{name} range must be [low, high], got {list(value)}")
    return (lo, hi)


def _sym(value: float | tuple | list, name: str) -> tuple[float, float]:
    """A limit ``v`` as (-v, v), or an explicit [lo, hi] pair as given."""
    if isinstance(value, (int, float)):
        return (-abs(float(value)), abs(float(value)))
    return _range(value, name)


def _int_range(value: int | tuple | list, name: str, low: int = 1) -> tuple[int, int]:
    lo, hi = _range(value, name)
    if lo != int(lo) or hi != int(hi) or lo < low:
        raise ValueError(f"{name} must be integers >= {low}, got {value!r}")
    return (int(lo), int(hi))


class _ImageFn(A.ImageOnlyTransform):
    """An albumentations transform around ``fn(img, rng) -> img``.

    The seed for ``rng`` is drawn from the transform's generator, which the
    pipeline shares and seeds per sample, so custom ops are as reproducible as
    albumentations' own. ``fn`` should be picklable (a ``partial`` of a module
    function) so DataLoader workers started with spawn/forkserver can use it.
    """

    def __init__(self, fn: Callable[[np.ndarray, np.random.Generator], np.ndarray], p: float):
        super().__init__(p=_check_p(p))
        self.fn = fn

    def get_params(self) -> dict[str, Any]:
        return {"seed": int(self.random_generator.integers(2**63 - 1))}

    def apply(self, img: np.ndarray, seed: int = 0, **params: Any) -> np.ndarray:
        out = self.fn(img, np.random.default_rng(seed))
        return np.ascontiguousarray(out if out.ndim == 3 else out[:, :, None])

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("fn",)


def _to_gray(img: np.ndarray) -> np.ndarray:
    """(H, W) luminance of a (H, W, 1|3) image."""
    return img[:, :, 0] if img.shape[2] == 1 else cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)


def _like(gray: np.ndarray, img: np.ndarray) -> np.ndarray:
    """A (H, W) result with as many channels as ``img``."""
    return np.repeat(gray[:, :, None], img.shape[2], axis=2)


# ------------------------------------------------------------ custom functions


def _morph_fn(
    img: np.ndarray, rng: np.random.Generator, kernel: tuple[int, int], op: int
) -> np.ndarray:
    k = int(rng.integers(kernel[0], kernel[1] + 1))
    if k <= 1:
        return img
    element = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    return cv2.morphologyEx(img, op, element)


def _canny_fn(img: np.ndarray, rng: np.random.Generator, low: tuple, high: tuple) -> np.ndarray:
    lo = rng.uniform(*low) if low[1] > low[0] else low[0]
    hi = rng.uniform(*high) if high[1] > high[0] else high[0]
    edges = cv2.Canny(_to_gray(img), lo, max(lo, hi))
    return _like(255 - edges, img)


def _grayscale_fn(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return img if img.shape[2] == 1 else _like(_to_gray(img), img)


def _crop_reflect_fn(
    img: np.ndarray, rng: np.random.Generator, size: int, padding: int
) -> np.ndarray:
    h, w = img.shape[:2]
    pad_h, pad_w = padding + max(0, size - h), padding + max(0, size - w)
    # numpy's reflect (unlike OpenCV's) handles padding wider than the image.
    padded = np.pad(img, ((pad_h, pad_h), (pad_w, pad_w), (0, 0)), mode="reflect")
    top = int(rng.integers(0, padded.shape[0] - size + 1))
    left = int(rng.integers(0, padded.shape[1] - size + 1))
    return padded[top : top + size, left : left + size]


def _torch_fn(img: np.ndarray, rng: np.random.Generator, op: Callable) -> np.ndarray:
    """Run a torchvision op on uint8 CHW under its own seed, leaving the global RNG untouched."""
    x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(rng.integers(2**63 - 1)))
        y = op(x)
    return y.permute(1, 2, 0).numpy()


# ---------------------------------------------------------------- geometric


@register_op("hflip")
def _hflip(p: float = 0.5) -> A.BasicTransform:
    return A.HorizontalFlip(p=p)


@register_op("vflip")
def _vflip(p: float = 0.5) -> A.BasicTransform:
    return A.VerticalFlip(p=p)


@register_op("rotate")
def _rotate(
    limit: float = 15, border: str = "reflect", fill: float = 0, p: float = 0.5
) -> A.BasicTransform:
    """Rotate by up to ``limit`` degrees. Reflect borders suit photos and white-paper
    drawings alike; ``border: constant`` fills with ``fill`` instead."""
    return A.Rotate(limit=_sym(limit, "limit"), border_mode=_border(border), fill=fill, p=p)


@register_op("shift_scale_rotate")
def _shift_scale_rotate(
    shift: float = 0.0625,
    scale: float = 0.1,
    rotate: float = 15,
    border: str = "reflect",
    fill: float = 0,
    p: float = 0.5,
) -> A.BasicTransform:
    """Shift by up to ``shift`` × size (each axis independently), zoom by 1 ± ``scale``
    (aspect kept), rotate by up to ``rotate`` degrees — ``Affine``, which replaces the
    deprecated ``ShiftScaleRotate``. Scalars are symmetric limits; pairs are [low, high]."""
    shift_r = _sym(shift, "shift")
    lo, hi = _sym(scale, "scale")
    return A.Affine(
        translate_percent={"x": shift_r, "y": shift_r},
        scale=(1 + lo, 1 + hi),
        keep_ratio=True,
        rotate=_sym(rotate, "rotate"),
        border_mode=_border(border),
        fill=fill,
        p=p,
    )


@register_op("shear")
def _shear(
    limit: float = 10, border: str = "reflect", fill: float = 0, p: float = 0.5
) -> A.BasicTransform:
    """Shear by up to ``limit`` degrees, x and y sampled independently."""
    r = _sym(limit, "limit")
    return A.Affine(shear={"x": r, "y": r}, border_mode=_border(border), fill=fill, p=p)


@register_op("perspective")
def _perspective(
    scale: tuple[float, float] = (0.05, 0.1),
    border: str = "reflect",
    fill: float = 0,
    p: float = 0.5,
) -> A.BasicTransform:
    """Move the corners by ``scale`` (fraction of the size); the output keeps its size."""
    return A.Perspective(scale=_range(scale, "scale"), border_mode=_border(border), fill=fill, p=p)


@register_op("random_resized_crop")
def _random_resized_crop(
    size: int,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (0.75, 4 / 3),
    p: float = 1.0,
) -> A.BasicTransform:
    """Inception-style crop of ``scale`` × area and ``ratio`` aspect, resized back to ``size``."""
    return A.RandomResizedCrop(
        size=(size, size), scale=_range(scale, "scale"), ratio=_range(ratio, "ratio"), p=p
    )


@register_op("random_crop_reflect")
def _random_crop_reflect(size: int, padding: float = 0.1, p: float = 1.0) -> A.BasicTransform:
    """Reflect-pad each side, then crop ``size`` × ``size`` at random (the CIFAR recipe).

    ``padding`` ≥ 1 is pixels; below 1 it is a fraction of ``size`` (so 0.125 is
    4 px at 32 px and 28 px at 224), which keeps one preset right for any size.
    """
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    pixels = int(padding) if padding >= 1 else int(round(padding * size))
    return _ImageFn(partial(_crop_reflect_fn, size=size, padding=pixels), p)


# ---------------------------------------------------------------- morphology


@register_op("erode")
def _erode(kernel: tuple[int, int] = (2, 3), p: float = 0.5) -> A.BasicTransform:
    """Minimum filter with a random kernel size in ``kernel`` (1 = unchanged).

    It shrinks bright regions, so on black-on-white drawings it *thickens*
    strokes (and on white-on-black digits it thins them). albumentations'
    ``Morphological`` uses its ``scale`` as one fixed kernel shape, not a range.
    """
    return _ImageFn(partial(_morph_fn, kernel=_int_range(kernel, "kernel"), op=cv2.MORPH_ERODE), p)


@register_op("dilate")
def _dilate(kernel: tuple[int, int] = (2, 3), p: float = 0.5) -> A.BasicTransform:
    """Maximum filter with a random kernel size; *thins* dark strokes on white paper."""
    return _ImageFn(partial(_morph_fn, kernel=_int_range(kernel, "kernel"), op=cv2.MORPH_DILATE), p)


# ---------------------------------------------------------------- noise, blur, dropout


@register_op("gauss_noise")
def _gauss_noise(std: tuple[float, float] = (0.02, 0.1), p: float = 0.5) -> A.BasicTransform:
    """Additive Gaussian noise, ``std`` as a fraction of 255."""
    return A.GaussNoise(std_range=_range(std, "std"), p=p)


@register_op("motion_blur")
def _motion_blur(blur: tuple[int, int] = (3, 7), p: float = 0.5) -> A.BasicTransform:
    """Linear motion blur with an odd kernel length in ``blur``."""
    return A.MotionBlur(blur_limit=_int_range(blur, "blur", low=3), p=p)


@register_op("gaussian_blur")
def _gaussian_blur(sigma: tuple[float, float] = (0.5, 1.5), p: float = 0.5) -> A.BasicTransform:
    """Gaussian blur; the kernel size follows from ``sigma`` (pixels)."""
    return A.GaussianBlur(blur_limit=0, sigma_limit=_range(sigma, "sigma"), p=p)


@register_op("coarse_dropout")
def _coarse_dropout(
    holes: tuple[int, int] = (1, 4),
    hole_size: tuple[float, float] = (0.05, 0.2),
    fill: float | str = 0,
    p: float = 0.5,
) -> A.BasicTransform:
    """Cut ``holes`` rectangles with sides ``hole_size`` × image side; ``fill`` a value
    (255 erases strokes on white paper) or ``random``/``random_uniform``."""
    hole = _range(hole_size, "hole_size")
    return A.CoarseDropout(
        num_holes_range=_int_range(holes, "holes"),
        hole_height_range=hole,
        hole_width_range=hole,
        fill=fill,
        p=p,
    )


@register_op("random_erasing")
def _random_erasing(
    scale: tuple[float, float] = (0.02, 0.33),
    ratio: tuple[float, float] = (0.3, 3.3),
    fill: float | str = 0,
    p: float = 0.5,
) -> A.BasicTransform:
    """Random erasing (Zhong et al.): one rectangle of ``scale`` × area and ``ratio`` aspect."""
    return A.Erasing(scale=_range(scale, "scale"), ratio=_range(ratio, "ratio"), fill=fill, p=p)


# ---------------------------------------------------------------- intensity, colour


@register_op("clahe")
def _clahe(
    clip_limit: tuple[float, float] = (1.0, 4.0), tile: int = 8, p: float = 0.5
) -> A.BasicTransform:
    """Contrast-limited adaptive histogram equalisation (on luminance for RGB)."""
    return A.CLAHE(clip_limit=_range(clip_limit, "clip_limit"), tile_grid_size=(tile, tile), p=p)


@register_op("equalize")
def _equalize(by_channels: bool = False, p: float = 0.5) -> A.BasicTransform:
    """Histogram equalisation; on RGB the luminance only unless ``by_channels``
    (per-channel equalisation shifts colours)."""
    return A.Equalize(mode="cv", by_channels=by_channels, p=p)


@register_op("brightness_contrast")
def _brightness_contrast(
    brightness: float = 0.2, contrast: float = 0.2, p: float = 0.5
) -> A.BasicTransform:
    return A.RandomBrightnessContrast(
        brightness_limit=_sym(brightness, "brightness"),
        contrast_limit=_sym(contrast, "contrast"),
        p=p,
    )


@register_op("color_jitter")
def _color_jitter(
    brightness: float = 0.2,
    contrast: float = 0.2,
    saturation: float = 0.2,
    hue: float = 0.05,
    p: float = 0.5,
) -> A.BasicTransform:
    """torchvision-style jitter; on 1-channel images saturation and hue have no effect."""
    return A.ColorJitter(
        brightness=brightness, contrast=contrast, saturation=saturation, hue=hue, p=p
    )


@register_op("invert")
def _invert(p: float = 0.5) -> A.BasicTransform:
    return A.InvertImg(p=p)


@register_op("grayscale")
def _grayscale(p: float = 0.5) -> A.BasicTransform:
    """Luminance copied to every channel (3-channel input stays 3-channel; 1-channel
    input is returned unchanged, without ``ToGray``'s warning)."""
    return _ImageFn(_grayscale_fn, p)


@register_op("canny")
def _canny(low: float | tuple = 50, high: float | tuple = 150, p: float = 0.5) -> A.BasicTransform:
    """Render Canny edges as black lines on white, like a sketch; ``low``/``high``
    are the hysteresis thresholds (a [lo, hi] pair samples one per image)."""
    return _ImageFn(partial(_canny_fn, low=_range(low, "low"), high=_range(high, "high")), p)


# ---------------------------------------------------------------- policies (torchvision)


@register_op("randaugment")
def _randaugment(n: int = 2, m: int = 9, fill: float = 0, p: float = 1.0) -> A.BasicTransform:
    """RandAugment: ``n`` random ops at magnitude ``m`` (0..30)."""
    if not (isinstance(n, int) and n >= 0 and isinstance(m, int) and 0 <= m <= 30):
        raise ValueError(f"n must be an int >= 0 and m an int in 0..30, got n={n!r}, m={m!r}")
    return _ImageFn(partial(_torch_fn, op=v2.RandAugment(num_ops=n, magnitude=m, fill=fill)), p)


@register_op("autoaugment")
def _autoaugment(policy: str = "imagenet", fill: float = 0, p: float = 1.0) -> A.BasicTransform:
    """AutoAugment with a learned policy: ``imagenet`` (default), ``cifar10`` or ``svhn``."""
    policies = {item.value.lower(): item for item in v2.AutoAugmentPolicy}
    if policy not in policies:
        raise ValueError(f"policy must be one of {', '.join(policies)}, got {policy!r}")
    return _ImageFn(partial(_torch_fn, op=v2.AutoAugment(policies[policy], fill=fill)), p)


@register_op("trivialaugment")
def _trivialaugment(fill: float = 0, p: float = 1.0) -> A.BasicTransform:
    """TrivialAugment (wide): one random op at a random magnitude per image."""
    return _ImageFn(partial(_torch_fn, op=v2.TrivialAugmentWide(fill=fill)), p)
