"""Perceptual hashes and small grey thumbnails, one decode per image.

pHash: the image as 32×32 greyscale, its 2-D DCT, the 8×8 lowest frequencies
compared with their median → 64 bits. Hashing a fixed-size thumbnail makes it
resize-invariant; the horizontally flipped image gets its own hash, so a
flipped copy can be matched when asked for. No torch import here: workers
start fast.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import warnings
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy.fft import dctn

from ..data.imageio import is_virtual, open_image, to_channels
from ..data.scan import _file_hash

HASH_SIDE = 32
HASH_LOW = 8
_POW = (1 << np.arange(63, -1, -1, dtype=np.uint64)).astype(np.uint64)


def _gray(path: str) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        img = open_image(path)
        return to_channels(img, 1)[:, :, 0]


def thumbnail(gray: np.ndarray, side: int) -> np.ndarray:
    """``gray`` (H, W) uint8 resized to side × side (Lanczos, antialiased)."""
    return np.asarray(Image.fromarray(gray).resize((side, side), Image.LANCZOS))


def phash_array(gray32: np.ndarray) -> int:
    """64-bit pHash of a 32×32 greyscale array, as a Python int."""
    coeffs = dctn(gray32.astype(np.float64), type=2, norm="ortho")[:HASH_LOW, :HASH_LOW]
    bits = (coeffs > np.median(coeffs)).ravel()
    return int(np.bitwise_or.reduce(_POW[bits], initial=np.uint64(0)))


def phash_pair(gray: np.ndarray) -> tuple[int, int]:
    """pHash of the image and of its horizontal mirror."""
    small = thumbnail(gray, HASH_SIDE)
    return phash_array(small), phash_array(small[:, ::-1])


def hash_one(path: str) -> tuple[bool, str, int, int, bytes]:
    """(ok, content hash, pHash, pHash of the mirror, 32×32 thumbnail bytes); never raises."""
    try:
        gray = _gray(path)
        if is_virtual(path):
            digest = hashlib.blake2b(
                np.ascontiguousarray(gray).tobytes(), digest_size=16
            ).hexdigest()
        else:
            digest = _file_hash(path)
        small = thumbnail(gray, HASH_SIDE)
        h0, h1 = phash_array(small), phash_array(small[:, ::-1])
        return True, digest, h0, h1, small.tobytes()
    except Exception:  # noqa: BLE001 - a bad file is reported, not fatal
        return False, "", 0, 0, bytes(HASH_SIDE * HASH_SIDE)


def _hash_chunk(paths: list[str]) -> list[tuple[bool, str, int, int, bytes]]:
    return [hash_one(p) for p in paths]


@dataclass
class ImageHashes:
    """Per-image hashes aligned with the input paths."""

    ok: np.ndarray  # bool
    content: np.ndarray  # object (hex str)
    phash: np.ndarray  # uint64
    phash_flip: np.ndarray  # uint64
    thumbs: np.ndarray  # (N, 32, 32) uint8 grey thumbnails (what the hash saw)


def hash_images(
    paths: list[str],
    workers: int = 0,
    chunk_size: int = 512,
    progress: Callable[[int], None] | None = None,
) -> ImageHashes:
    """Hash every path; ``workers=0`` works in this process."""
    chunks = [paths[i : i + chunk_size] for i in range(0, len(paths), chunk_size)]
    rows: list[tuple] = []
    if workers > 0 and len(chunks) > 1:
        try:
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(["ensemblecv.dedup.phash"])
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
                for chunk, result in zip(chunks, pool.map(_hash_chunk, chunks)):
                    rows += result
                    if progress:
                        progress(len(chunk))
        except BrokenProcessPool:
            rows = []
    if len(rows) != len(paths):
        rows = []
        for chunk in chunks:
            rows += _hash_chunk(chunk)
            if progress:
                progress(len(chunk))
    n = len(rows)
    return ImageHashes(
        ok=np.fromiter((r[0] for r in rows), dtype=bool, count=n),
        content=np.array([r[1] for r in rows], dtype=object),
        phash=np.fromiter((r[2] for r in rows), dtype=np.uint64, count=n),
        phash_flip=np.fromiter((r[3] for r in rows), dtype=np.uint64, count=n),
        thumbs=np.frombuffer(b"".join(r[4] for r in rows), dtype=np.uint8).reshape(
            n, HASH_SIDE, HASH_SIDE
        ),
    )


def load_thumbnails(paths: list[str], side: int) -> np.ndarray:
    """(N, side, side) uint8 grey thumbnails; unreadable files become zeros."""
    out = np.zeros((len(paths), side, side), dtype=np.uint8)
    for i, p in enumerate(paths):
        try:
            out[i] = thumbnail(_gray(p), side)
        except Exception:  # noqa: BLE001
            pass
    return out


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bitwise Hamming distance of uint64 arrays."""
    return np.bitwise_count(np.bitwise_xor(a, b)).astype(np.int64)
