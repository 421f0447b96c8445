"""Built-in datasets that work offline: Fashion-MNIST (Debian's IDX files) and digits.

Their samples have virtual paths (``builtin://fashion-mnist/train/00042``) that
the image loader resolves from arrays held in memory, so a built-in dataset
goes through exactly the same sample table, scan and loader as a folder of
PNGs — and ``ensemblecv datasets export`` can still write them as files.
"""

from __future__ import annotations

import functools
import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._registry import Registry
from ..errors import DataError, ImageLoadError

#: Samples of a built-in dataset have paths under this scheme; the image loader
#: (``data.imageio``) resolves them here, from arrays held in memory.
BUILTIN_SCHEME = "builtin://"

FASHION_MNIST_DIRS = ("/usr/share/datasets/fashion-mnist",)
FASHION_MNIST_CLASSES = [
    "T-shirt_top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle_boot",
]  # fmt: skip  ("T-shirt/top" in the original; '/' cannot be a folder name)


@dataclass(frozen=True)
class ArraySplit:
    """One split of a built-in dataset: images (N, H, W) or (N, H, W, 3) uint8 and integer labels.

    ``domains`` (one name per image) marks a multi-domain set.
    """

    images: np.ndarray
    labels: np.ndarray
    classes: list[str]
    domains: np.ndarray | None = None


_datasets: Registry = Registry("built-in dataset")


def list_datasets() -> list[str]:
    return _datasets.names()


def parse_builtin(name: str) -> tuple[str, str] | None:
    """``'fashion-mnist'`` → ('fashion-mnist', 'train'); ``'digits:test'`` → ('digits', 'test').

    Returns None when ``name`` is not a built-in dataset (then it is a path).
    """
    base, _, split = str(name).partition(":")
    if base not in _datasets:
        return None
    split = split or "train"
    if split not in ("train", "test"):
        raise DataError(f"Built-in dataset split must be 'train' or 'test', got {name!r}.")
    return base, split


def load_split(name: str, split: str = "train") -> ArraySplit:
    return _cached_split(name, split)


@functools.lru_cache(maxsize=8)
def _cached_split(name: str, split: str) -> ArraySplit:
    return _datasets.get(name)(split)


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        data = fh.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DataError(f"{path} is not an IDX file (bad magic number).")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    if data[2] != 0x08:
        raise DataError(f"{path}: only unsigned-byte IDX files are supported.")
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise DataError(
            f"{path} is truncated: expected {int(np.prod(dims))} values, got {arr.size}."
        )
    return arr.reshape(dims)


def fashion_mnist_dirs() -> list[Path]:
    dirs = []
    if os.environ.get("ENSEMBLECV_DATA"):
        root = Path(os.environ["ENSEMBLECV_DATA"])
        dirs += [root / "fashion-mnist", root / "FashionMNIST" / "raw", root]
    return dirs + [Path(d) for d in FASHION_MNIST_DIRS]


def _find_idx(stem: str) -> Path | None:
    for d in fashion_mnist_dirs():
        for candidate in (d / f"{stem}.gz", d / stem):
            if candidate.is_file():
                return candidate
    return None


def fashion_mnist_available() -> bool:
    return _find_idx("train-images-idx3-ubyte") is not None


@_datasets.register("fashion-mnist")
def _fashion_mnist(split: str) -> ArraySplit:
    prefix = "train" if split == "train" else "t10k"
    images_path = _find_idx(f"{prefix}-images-idx3-ubyte")
    labels_path = _find_idx(f"{prefix}-labels-idx1-ubyte")
    if images_path is None or labels_path is None:
        images, labels = _download_fashion_mnist(split)
    else:
        images, labels = _read_idx(images_path), _read_idx(labels_path)
    if len(images) != len(labels):
        raise DataError(f"Fashion-MNIST {split}: {len(images)} images but {len(labels)} labels.")
    return ArraySplit(images, labels.astype(np.int64), list(FASHION_MNIST_CLASSES))


def _download_fashion_mnist(split: str) -> tuple[np.ndarray, np.ndarray]:
    """Last resort when online: torchvision's downloader into ``ENSEMBLECV_DATA`` or the cache."""
    searched = ", ".join(str(d) for d in fashion_mnist_dirs())
    root = Path(os.environ.get("ENSEMBLECV_DATA") or Path.home() / ".cache" / "ensemblecv")
    try:
        from torchvision.datasets import FashionMNIST

        ds = FashionMNIST(str(root), train=split == "train", download=True)
    except Exception as exc:  # network errors come in many types
        raise DataError(
            "Fashion-MNIST is not installed and could not be downloaded.\n"
            f"Searched: {searched}.\n"
            "Install it with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or put the "
            "IDX files in a folder and set ENSEMBLECV_DATA to it, or use the `digits` dataset.\n"
            f"Download error: {exc}"
        ) from None
    return ds.data.numpy(), ds.targets.numpy()


@_datasets.register("digits")
def _digits(split: str) -> ArraySplit:
    """scikit-learn's 8×8 digits (values 0..16), scaled to 0..255.

    It has no official test split; a fixed stratified 20 % is held out so that
    ``digits:test`` is the same everywhere.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = np.clip(np.rint(bunch.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    idx_train, idx_test = train_test_split(
        np.arange(len(images)), test_size=0.2, stratify=bunch.target, random_state=0
    )
    idx = np.sort(idx_train if split == "train" else idx_test)
    return ArraySplit(images[idx], bunch.target[idx].astype(np.int64), [str(i) for i in range(10)])


def _styled(base: str, split: str, per_domain: int, upscale: int = 1) -> ArraySplit:
    from .domain_styles import render_domains

    data = load_split(base, split)
    images, labels, domains = render_domains(
        data.images, data.labels, per_domain, seed=0 if split == "train" else 1, upscale=upscale
    )
    return ArraySplit(images, labels, list(data.classes), domains)


@_datasets.register("fashion-mnist-domains")
def _fashion_mnist_domains(split: str) -> ArraySplit:
    """Fashion-MNIST in four styles (photo, inverted, colour, sketch) as domains, 28×28 RGB.

    1,500 images per domain in ``train`` (500 in ``test``), each source image in one
    style only; see :mod:`.domain_styles`.
    """
    return _styled("fashion-mnist", split, 1500 if split == "train" else 500)


@_datasets.register("digits-domains")
def _digits_domains(split: str) -> ArraySplit:
    """scikit-learn's digits (upscaled to 16×16) in the same four styles, for machines
    without Fashion-MNIST."""
    return _styled("digits", split, 10_000, upscale=2)


def virtual_path(name: str, split: str, index: int) -> str:
    return f"{BUILTIN_SCHEME}{name}/{split}/{index:05d}"


def resolve_builtin(path: str) -> np.ndarray:
    """The (H, W) uint8 pixels behind a virtual path such as ``builtin://digits/train/00042``."""
    parts = path[len(BUILTIN_SCHEME) :].split("/")
    if (
        len(parts) != 3
        or parts[0] not in _datasets
        or parts[1] not in ("train", "test")
        or not parts[2].isdigit()
    ):
        raise ImageLoadError(path, "missing", "malformed built-in dataset path")
    images = load_split(parts[0], parts[1]).images
    index = int(parts[2])
    if index >= len(images):
        raise ImageLoadError(path, "missing", f"index {index} out of range ({len(images)} images)")
    return images[index]
