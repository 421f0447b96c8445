"""Shared fixtures: tiny images written with PIL into ``tmp_path``.

Everything here is generic so any test file can build the small datasets it
needs without touching the network or the real built-in data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

#: Class folders of :func:`image_folder`, in the sorted order the loader must give.
IMAGE_FOLDER_CLASSES = ["cat", "dog", "고양이 사진"]
#: Images per class in :func:`image_folder` (one of the dog images is nested).
IMAGES_PER_CLASS = 4
#: The nested file of :func:`image_folder`, relative to its root.
NESTED_IMAGE = "dog/sub folder/deep.png"


def _default_color(mode: str):
    """A mid-grey-ish colour valid for ``mode`` (tuple for multi-band modes)."""
    bands = len(Image.new(mode, (1, 1)).getbands())
    if mode == "1":
        return 1
    if mode == "F":
        return 0.5
    if mode in ("I", "I;16", "I;16B", "I;16L"):
        return 1000
    return 128 if bands == 1 else (128,) * bands


def make_image(
    path: str | Path,
    mode: str | None = "RGB",
    size: tuple[int, int] = (16, 16),
    color=None,
    format: str | None = None,
    array: np.ndarray | None = None,
    **save_kwargs,
) -> Path:
    """Write a small image to ``path`` (parent folders created) and return the path.

    ``size`` is PIL's (width, height). ``array`` replaces the solid ``color``
    with explicit pixel data (``Image.fromarray(array, mode)``). ``format``
    overrides the format PIL infers from the extension (e.g. a PNG named .jpg);
    other keyword arguments go to ``Image.save`` (``transparency=``, ``exif=``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if array is not None:
        img = Image.fromarray(array) if mode is None else Image.fromarray(array).convert(mode)
    else:
        img = Image.new(mode, size, _default_color(mode) if color is None else color)
    img.save(path, format=format, **save_kwargs)
    return path


def noise_image(
    path: str | Path, size: tuple[int, int] = (64, 64), seed: int = 0, **save_kwargs
) -> Path:
    """An RGB image of random pixels: incompressible, so cutting the file truncates pixel data."""
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return make_image(path, mode=None, array=arr, **save_kwargs)


def truncate_file(path: str | Path, fraction: float = 0.5) -> Path:
    """Cut ``path`` to ``fraction`` of its bytes in place."""
    path = Path(path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


@pytest.fixture
def make_image_fn():
    """:func:`make_image` as a fixture, for tests that prefer injection to imports."""
    return make_image


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """An ImageFolder dataset: 3 classes × 4 distinct 16×16 PNGs.

    ``고양이 사진`` (Korean, with a space) tests non-ASCII class names and paths;
    ``dog`` keeps one of its four images in a nested ``sub folder``. Every file
    has a different colour, so no two files are byte-identical.
    """
    root = tmp_path / "images"
    for c, name in enumerate(IMAGE_FOLDER_CLASSES):
        for i in range(IMAGES_PER_CLASS):
            color = (40 * c + 10, 20 * i + 5, 200 - 30 * c)
            if name == "dog" and i == IMAGES_PER_CLASS - 1:
                make_image(root / NESTED_IMAGE, color=color)
            else:
                make_image(root / name / f"img {i}.png", color=color)
    return root


@pytest.fixture(scope="module")
def one_thread():
    """Tiny arrays: BLAS/OpenMP (and torch) threads only add contention on 2 busy cores.

    Modules opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``;
    torch's thread count is limited too when the module has imported torch.
    torch's count is read before threadpoolctl lowers OpenMP's (torch reports
    OpenMP's value) and restored after threadpoolctl is done: restoring it inside
    the block used to leave torch's own MKL at one thread for the rest of the
    worker, which later tests (and subprocesses they compare with) did not share.
    """
    import sys

    from threadpoolctl import threadpool_limits

    torch = sys.modules.get("torch")
    n = torch.get_num_threads() if torch else None
    try:
        with threadpool_limits(1):
            if torch:
                torch.set_num_threads(1)
            yield
    finally:
        if torch:
            torch.set_num_threads(n)


@pytest.fixture
def always_parallel(monkeypatch):
    """Scans start worker processes whatever their size (tiny test tables are below the
    threshold that otherwise keeps them in-process); yields the list of pool calls."""
    import ensemblecv.data.scan as scan

    calls = []
    real = scan._scan_parallel

    def counted(chunks, *args, **kwargs):
        calls.append(len(chunks))
        return real(chunks, *args, **kwargs)

    monkeypatch.setattr(scan, "PARALLEL_AFTER_S", 0.0)
    monkeypatch.setattr(scan, "_scan_parallel", counted)
    return calls
