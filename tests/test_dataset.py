"""ImageDataset: tensors in [0, 1], and a file that breaks mid-run cannot kill a DataLoader."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

import ensemblecv
from ensemblecv.data.dataset import ImageDataset
from ensemblecv.data.samples import from_builtin, from_folder

SIZE = (12, 10)  # PIL (width, height)


def _png(path: Path, color, size=SIZE, mode="RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path)
    return path


def _folder(root: Path, per_class: int = 6) -> Path:
    for c, name in enumerate(["a", "b"]):
        for i in range(per_class):
            _png(root / name / f"{i}.png", (255 * c, 20 * i, 128))
    return root


def test_item_is_float_tensor_chw_in_unit_range(tmp_path):
    table = from_folder(_folder(tmp_path / "data"))
    ds = ImageDataset(table)
    assert len(ds) == 12
    for index in (0, 7):
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # the bad-file signal
            item = ds[index]
        assert set(item) == {"image", "target", "index", "ok"}
        image = item["image"]
        assert isinstance(image, torch.Tensor)
        assert image.dtype == torch.float32
        assert image.shape == (3, SIZE[1], SIZE[0])
        assert 0.0 <= image.min() and image.max() <= 1.0
        assert item["ok"] is True
        assert item["index"] == index
        assert item["target"] == table.frame["label"][index]
        assert isinstance(item["target"], int)
    # Channel values are the pixel values / 255, in RGB order.
    row = table.frame.index[table.frame["sample_id"] == "b/2.png"][0]
    pixel = ds[row]["image"][:, 0, 0]
    torch.testing.assert_close(pixel, torch.tensor([255, 40, 128]) / 255.0)


_NO_WARNING_SCRIPT = """
import sys, warnings
warnings.simplefilter("error")
from ensemblecv.data.dataset import ImageDataset
from ensemblecv.data.samples import load_samples
item = ImageDataset(load_samples(sys.argv[1]))[1]
assert item["ok"] is True
"""


def test_good_item_emits_no_warning(tmp_path):
    # A loader warning must mean "bad file"; a good image gives none. Torch shows its
    # "non-writable NumPy array" warning only once per process (then in every
    # DataLoader worker), so this runs in a fresh interpreter.
    source = str(_folder(tmp_path / "data"))
    src = str(Path(ensemblecv.__file__).parents[1])
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(
        [sys.executable, "-c", _NO_WARNING_SCRIPT, source], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_grayscale_channels_and_transform(tmp_path):
    root = tmp_path / "gray"
    _png(root / "x" / "0.png", 200, mode="L")
    _png(root / "x" / "1.png", (10, 20, 30))
    table = from_folder(root)
    gray = ImageDataset(table, channels=1)
    assert gray[0]["image"].shape == (1, SIZE[1], SIZE[0])
    assert gray[0]["image"].max().item() == pytest.approx(200 / 255)
    assert ImageDataset(table, channels=3)[0]["image"].shape == (3, SIZE[1], SIZE[0])
    seen = []

    def transform(arr):
        seen.append((arr.dtype, arr.shape))
        return "transformed"

    item = ImageDataset(table, transform=transform)[1]
    assert item["image"] == "transformed"
    assert seen == [(np.uint8, (SIZE[1], SIZE[0], 3))]


def test_builtin_items(tmp_path):
    table = from_builtin("digits")
    ds = ImageDataset(table, channels=1)
    item = ds[5]
    assert item["image"].shape == (1, 8, 8)
    assert item["target"] == table.frame["label"][5]
    assert item["ok"] is True


def test_deleted_file_gives_blank_item_and_warning(tmp_path):
    table = from_folder(_folder(tmp_path / "data"))
    ds = ImageDataset(table, fallback_size=(7, 5))
    victim = Path(table.frame["path"][3])
    victim.unlink()
    with pytest.warns(
        RuntimeWarning, match=r"Skipping unreadable image.*" + victim.name + r".*missing"
    ):
        item = ds[3]
    assert item["ok"] is False
    assert item["target"] == table.frame["label"][3]
    assert item["image"].shape == (3, 7, 5)
    assert torch.all(item["image"] == 1.0)  # blank = white
    # Other items are unaffected.
    assert ds[4]["ok"] is True


@pytest.mark.parametrize("damage", ["delete", "garbage", "truncate", "empty"])
def test_dataloader_with_workers_survives_bad_file(tmp_path, damage):
    root = tmp_path / "data"
    for c, name in enumerate(["a", "b"]):
        for i in range(7):
            # Noise pixels are incompressible, so truncating hits the pixel data.
            rng = np.random.default_rng(10 * c + i)
            arr = rng.integers(0, 256, (SIZE[1], SIZE[0], 3), dtype=np.uint8)
            (root / name).mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr).save(root / name / f"{i}.png")
    table = from_folder(root)
    victim = Path(table.frame["path"][9])
    if damage == "delete":
        victim.unlink()
    elif damage == "garbage":
        victim.write_bytes(b"this is not an image at all" * 10)
    elif damage == "truncate":
        victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    else:
        victim.write_bytes(b"")
    ds = ImageDataset(table, fallback_size=(SIZE[1], SIZE[0]))
    loader = DataLoader(ds, batch_size=4, num_workers=2, shuffle=False)
    oks, indices, targets, batches = [], [], [], 0
    for batch in loader:
        batches += 1
        assert batch["image"].shape[1:] == (3, SIZE[1], SIZE[0])
        oks += batch["ok"].tolist()
        indices += batch["index"].tolist()
        targets += batch["target"].tolist()
    assert batches == 4
    assert indices == list(range(14))
    assert targets == table.frame["label"].tolist()
    assert oks.count(False) == 1
    assert oks.index(False) == 9
