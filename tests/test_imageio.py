"""Contract of ``load_image``: any PIL mode in, (H, W, C) uint8 out, or ImageLoadError."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import make_image, noise_image, truncate_file
from PIL import Image

from ensemblecv.data import imageio
from ensemblecv.data.imageio import (
    REASONS,
    has_image_extension,
    load_image,
    open_image,
    to_channels,
)
from ensemblecv.errors import ImageLoadError

W, H = 6, 4  # deliberately not square, so a swapped (H, W) would show


def _check(arr: np.ndarray, channels: int, height: int = H, width: int = W) -> None:
    assert arr.shape == (height, width, channels)
    assert arr.dtype == np.uint8
    assert arr.flags["C_CONTIGUOUS"]


def _expected(channels: int, rgb: tuple[int, int, int]) -> list[int]:
    """Expected pixel for a colour: PIL's ITU-R 601 luma for one channel."""
    if channels == 3:
        return list(rgb)
    r, g, b = rgb
    return [round((r * 299 + g * 587 + b * 114) / 1000)]


def _palette_image(path: Path, transparency: int | None = None) -> Path:
    """P image: index 0 = red (the whole image), index 1 = blue (pixel (1, 0))."""
    img = Image.new("P", (W, H), 0)
    img.putpalette([255, 0, 0, 0, 0, 255] + [0] * (256 * 3 - 6))
    img.putpixel((1, 0), 1)
    kwargs = {} if transparency is None else {"transparency": transparency}
    img.save(path, **kwargs)
    return path


# --------------------------------------------------------------------- modes

# (mode, extension, colour, expected RGB of the loaded pixel, tolerance)
MODE_CASES = [
    ("1", "png", 1, (255, 255, 255), 0),
    ("1", "bmp", 0, (0, 0, 0), 0),
    ("L", "png", 77, (77, 77, 77), 0),
    ("LA", "png", (0, 255), (0, 0, 0), 0),  # opaque black
    ("LA", "png", (0, 0), (255, 255, 255), 0),  # fully transparent → white
    ("LA", "png", (0, 128), (127, 127, 127), 1),  # half-transparent black
    ("RGB", "png", (10, 20, 30), (10, 20, 30), 0),
    ("RGB", "jpg", (200, 100, 50), (200, 100, 50), 3),
    ("RGBA", "png", (10, 20, 30, 255), (10, 20, 30), 0),
    ("RGBA", "png", (10, 20, 30, 0), (255, 255, 255), 0),  # transparent → white, not black
    ("RGBA", "png", (0, 0, 0, 128), (128, 128, 128), 1),  # ≈128 after compositing on white
    ("CMYK", "jpg", (255, 0, 0, 0), (0, 255, 255), 3),  # pure cyan
    ("CMYK", "tif", (255, 0, 0, 0), (0, 255, 255), 0),
    ("CMYK", "tif", (0, 0, 0, 255), (0, 0, 0), 0),  # pure black ink
    ("I;16", "png", 65535, (255, 255, 255), 0),  # full 16-bit range → 255
    ("I;16", "png", 32896, (128, 128, 128), 0),  # 32896 / 257 = 128
    ("I", "tif", 65535, (255, 255, 255), 0),
    ("I", "tif", 100, (100, 100, 100), 0),  # already in 0..255: kept
    ("F", "tif", 1.0, (255, 255, 255), 0),  # float [0, 1] → ×255
    ("F", "tif", 0.5, (128, 128, 128), 0),
    ("F", "tif", 0.0, (0, 0, 0), 0),
]


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize(
    "mode,ext,color,rgb,tol", MODE_CASES, ids=[f"{m}-{e}-{c}" for m, e, c, *_ in MODE_CASES]
)
def test_every_mode_loads_to_uint8(tmp_path, mode, ext, color, rgb, tol, channels):
    path = make_image(tmp_path / f"img.{ext}", mode=mode, size=(W, H), color=color)
    assert open_image(path).mode == mode  # the file really is in the mode under test
    arr = load_image(path, channels=channels)
    _check(arr, channels)
    expected = np.array(_expected(channels, rgb))
    assert np.abs(arr.astype(int) - expected).max() <= tol, arr[0, 0]
    assert (arr == arr[0, 0]).all()  # a solid image stays solid


@pytest.mark.parametrize("channels", [1, 3])
def test_palette_image(tmp_path, channels):
    path = _palette_image(tmp_path / "p.png")
    assert open_image(path).mode == "P"
    arr = load_image(path, channels=channels)
    _check(arr, channels)
    assert arr[0, 0].tolist() == _expected(channels, (255, 0, 0))
    assert arr[0, 1].tolist() == _expected(channels, (0, 0, 255))


@pytest.mark.parametrize("ext", ["png", "gif"])
@pytest.mark.parametrize("channels", [1, 3])
def test_palette_index_transparency_composites_to_white(tmp_path, channels, ext):
    path = _palette_image(tmp_path / f"pt.{ext}", transparency=0)
    img = open_image(path)
    assert img.mode == "P" and img.info.get("transparency") == 0
    arr = load_image(path, channels=channels)
    _check(arr, channels)
    assert (arr[0, 0] == 255).all()  # transparent red → white background
    assert arr[0, 1].tolist() == _expected(channels, (0, 0, 255))  # opaque blue stays
    assert (arr[1:] == 255).all()


@pytest.mark.parametrize("channels", [1, 3])
def test_rgba_keeps_colour_of_opaque_pixels_next_to_transparent_ones(tmp_path, channels):
    arr = np.zeros((H, W, 4), dtype=np.uint8)
    arr[:, : W // 2] = (0, 0, 0, 255)  # opaque black stroke
    arr[:, W // 2 :] = (0, 0, 0, 0)  # transparent "paper"
    path = make_image(tmp_path / "sketch.png", mode="RGBA", array=arr)
    out = load_image(path, channels=channels)
    _check(out, channels)
    assert (out[:, : W // 2] == 0).all()
    assert (out[:, W // 2 :] == 255).all()


def test_i16_gradient_maps_linearly(tmp_path):
    values = np.array([[0, 257, 65535 // 2, 65535]], dtype=np.uint16)
    path = tmp_path / "g.png"
    Image.fromarray(values).save(path)
    assert open_image(path).mode.startswith("I")
    out = load_image(path, channels=1)[0, :, 0]
    assert out.tolist() == [0, 1, 127, 255]


def test_integer_image_with_values_0_and_1_is_not_stretched(tmp_path):
    # An integer ("I") mask of 0/1 values is within 0..255 and must be kept as
    # is; only *float* data in [0, 1] is scaled by 255.
    path = tmp_path / "mask.tif"
    Image.fromarray(np.array([[0, 1, 1, 0]], dtype=np.int32)).save(path)
    assert open_image(path).mode == "I"
    assert load_image(path, channels=1)[0, :, 0].tolist() == [0, 1, 1, 0]


def test_float_image_outside_unit_range_and_nan(tmp_path):
    values = np.array([[-1.0, 0.0, 1.0, np.nan]], dtype=np.float32)
    path = tmp_path / "f.tif"
    Image.fromarray(values).save(path)
    out = load_image(path, channels=1)[0, :, 0]
    # negative values: min-max stretched over [-1, 1]; NaN becomes 0 first
    assert out.tolist() == [0, 128, 255, 128]


def test_to_channels_rejects_other_channel_counts(tmp_path):
    img = Image.new("RGB", (2, 2))
    with pytest.raises(ValueError, match="channels must be 1 or 3, got 4"):
        to_channels(img, 4)
    with pytest.raises(ValueError, match="channels must be 1 or 3, got 2"):
        load_image(make_image(tmp_path / "a.png"), channels=2)


def test_to_channels_other_modes():
    ycbcr = Image.new("RGB", (3, 2), (0, 255, 255)).convert("YCbCr")
    out = to_channels(ycbcr, 3)
    assert out.shape == (2, 3, 3)
    assert np.abs(out.astype(int) - [0, 255, 255]).max() <= 3
    pa = Image.new("PA", (3, 2))
    pa.putpalette([0, 0, 0] * 256)
    assert (to_channels(pa, 1) == 255).all()  # alpha 0 → white


# ----------------------------------------------------------------- geometry


@pytest.mark.parametrize("channels", [1, 3])
def test_exif_orientation_is_applied(tmp_path, channels):
    arr = np.zeros((10, 20, 3), dtype=np.uint8)  # 20 wide, 10 high
    arr[:, :10] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° CW to display"
    path = make_image(tmp_path / "rotated.jpg", mode="RGB", array=arr, exif=exif)
    out = load_image(path, channels=channels)
    _check(out, channels, height=20, width=10)
    # After a 90° clockwise turn the former left half is the top half.
    assert out[:8].mean() > 200 and out[12:].mean() < 50


def test_exif_transpose_keeps_format(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6
    path = make_image(tmp_path / "r.jpg", size=(20, 10), exif=exif)
    img = open_image(path)
    assert img.size == (10, 20)
    assert img.format == "JPEG"


# -------------------------------------------------------------- file names


@pytest.mark.parametrize("channels", [1, 3])
def test_unicode_path_with_spaces(tmp_path, channels):
    path = make_image(tmp_path / "고양이 사진" / "내 그림 1.png", size=(W, H), color=(1, 2, 3))
    _check(load_image(path, channels=channels), channels)
    _check(load_image(str(path), channels=channels), channels)


def test_png_with_jpg_extension_loads(tmp_path):
    path = make_image(tmp_path / "actually_png.jpg", size=(W, H), color=(9, 8, 7), format="PNG")
    img = open_image(path)
    assert img.format == "PNG"
    arr = load_image(path)
    _check(arr, 3)
    assert arr[0, 0].tolist() == [9, 8, 7]  # lossless: PNG content, not JPEG


def test_file_without_extension_loads(tmp_path):
    path = make_image(tmp_path / "noext", size=(W, H), format="PNG")
    _check(load_image(path), 3)
    assert has_image_extension(path)


@pytest.mark.parametrize(
    "name,expected",
    [("a.png", True), ("A.JPG", True), ("b.jpeg", True), ("c.webp", True), ("d", True),
     ("e.txt", False), ("f.csv", False), ("g.json", False)],
)  # fmt: skip
def test_has_image_extension(name, expected):
    assert has_image_extension(name) is expected


# ------------------------------------------------------------ broken files


def _load_error(path, **kwargs) -> ImageLoadError:
    with pytest.raises(ImageLoadError) as info:
        load_image(path, **kwargs)
    err = info.value
    assert err.reason in REASONS
    assert str(path) in str(err) and err.path == str(path)
    assert err.reason in str(err)
    return err


def test_missing_file(tmp_path):
    path = tmp_path / "nope.png"
    err = _load_error(path)
    assert err.reason == "missing"
    with pytest.raises(ImageLoadError, match="nope.png: missing"):
        load_image(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    assert _load_error(path).reason == "empty"


def test_text_file_with_png_extension(tmp_path):
    path = tmp_path / "fake.png"
    path.write_text("this is not an image\n" * 10)
    assert _load_error(path).reason == "not_an_image"


@pytest.mark.parametrize("ext", ["png", "jpg"])
def test_truncated_file(tmp_path, ext):
    path = truncate_file(noise_image(tmp_path / f"cut.{ext}"))
    err = _load_error(path)
    assert err.reason == "truncated"
    assert err.detail  # PIL's own description is kept for the report


@pytest.mark.parametrize("ext", ["png", "jpg"])
def test_truncated_tiny_file(tmp_path, ext):
    path = truncate_file(make_image(tmp_path / f"tiny.{ext}"))
    assert _load_error(path).reason == "truncated"


def test_directory_is_unreadable_not_truncated(tmp_path):
    folder = tmp_path / "folder.png"
    folder.mkdir()
    assert _load_error(folder).reason == "unreadable"


@pytest.mark.parametrize("size", [(20, 20), (12, 12)])  # above 2× and between 1× and 2× the limit
def test_decompression_bomb(tmp_path, size):
    path = make_image(tmp_path / "big.png", mode="L", size=size)
    limit_before = Image.MAX_IMAGE_PIXELS
    err = _load_error(path, max_pixels=100)
    assert err.reason == "decompression_bomb"
    with pytest.raises(ImageLoadError, match="decompression_bomb"):
        load_image(path, max_pixels=100)
    assert Image.MAX_IMAGE_PIXELS == limit_before  # the global limit is restored
    assert load_image(path, max_pixels=size[0] * size[1]).shape == (size[1], size[0], 3)


def test_failed_loads_leave_pil_limit_untouched(tmp_path):
    limit_before = Image.MAX_IMAGE_PIXELS
    for bad in (tmp_path / "missing.png", truncate_file(noise_image(tmp_path / "t.png"))):
        with pytest.raises(ImageLoadError):
            load_image(bad, max_pixels=10**9)
    assert Image.MAX_IMAGE_PIXELS == limit_before


def test_image_load_error_message_format():
    err = ImageLoadError("/data/x.png", "truncated", "image file is truncated")
    assert str(err) == "/data/x.png: truncated (image file is truncated)"
    assert str(ImageLoadError("/data/y.png", "empty")) == "/data/y.png: empty"


# ----------------------------------------------------------- virtual paths


def test_builtin_virtual_path_loads():
    arr = load_image("builtin://digits/train/00000", channels=1)
    _check(arr, 1, height=8, width=8)
    assert imageio.is_virtual("builtin://digits/train/00000")
    assert not imageio.is_virtual("/data/builtin/x.png")


@pytest.mark.parametrize(
    "path",
    ["builtin://digits/train/99999", "builtin://no-such-set/train/00000", "builtin://digits/train"],
)
def test_bad_builtin_virtual_path_raises_image_load_error(path):
    with pytest.raises(ImageLoadError, match="missing") as info:
        load_image(path)
    assert info.value.path == path
