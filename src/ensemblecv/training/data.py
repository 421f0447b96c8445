"""Feeding the model: a decoded-image cache, seeded sampling and the DataLoaders.

Two things make a resumed run reproduce an uninterrupted one exactly: the
shuffle order depends only on (seed, epoch), and every item's augmentation is
seeded by (seed, epoch, index) — so nothing depends on which worker process
drew which item or on how many epochs ran in this process.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..data.dataset import ImageDataset
from ..data.samples import SampleTable

ImageTransform = Callable[..., torch.Tensor]


def mix_seed(*parts: int) -> int:
    """A well-spread 31-bit seed from integers (SeedSequence, not a hash, to stay stable)."""
    return int(
        np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(1)[0] >> 1
    )


class ImageSource:
    """Decoded, resized uint8 images by table row, held in RAM when they fit the budget.

    Decoding and resizing dominate the cost of small images; Fashion-MNIST in
    RAM is 47 MB, so re-decoding it every epoch would be pure waste.
    """

    def __init__(
        self,
        table: SampleTable,
        channels: int,
        resize: Callable[[np.ndarray], np.ndarray],
        image_size: int,
        cache_ram_mb: int,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        self.loader = ImageDataset(table, channels=channels, fallback_size=(image_size, image_size))
        self.resize = resize
        self.cache: np.ndarray | None = None
        need_mb = len(table) * image_size * image_size * channels / 2**20
        if cache_ram_mb > 0 and need_mb <= cache_ram_mb:
            self.cache = self._build_cache(len(table), image_size, channels, progress)

    def _build_cache(self, n: int, size: int, channels: int, progress) -> np.ndarray:
        cache = np.empty((n, size, size, channels), dtype=np.uint8)

        def fill(start: int) -> int:
            stop = min(n, start + 512)
            for i in range(start, stop):
                cache[i] = self._decode(i)
            return stop - start

        # PIL and cv2 release the GIL while decoding/resizing, so threads scale
        # without copying the array between processes.
        with ThreadPoolExecutor(max_workers=2) as pool:
            for done in pool.map(fill, range(0, n, 512)):
                if progress:
                    progress(done)
        return cache

    def _decode(self, index: int) -> np.ndarray:
        image, _ = self.loader.load(index)
        return self.resize(image)

    def __len__(self) -> int:
        return len(self.loader)

    def __getitem__(self, index: int) -> np.ndarray:
        return self.cache[index] if self.cache is not None else self._decode(index)


class RowsDataset(Dataset):
    """A subset of :class:`ImageSource` rows with a transform; items are (uint8 image, target, row).

    Items may be requested as ``(row_position, seed)`` (see :class:`SeededSampler`)
    so the augmentation of each item is reproducible.
    """

    def __init__(
        self, source: ImageSource, rows: np.ndarray, targets: np.ndarray, transform: ImageTransform
    ) -> None:
        self.source, self.rows, self.targets, self.transform = (
            source,
            np.asarray(rows),
            targets,
            transform,
        )

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, item):
        pos, seed = item if isinstance(item, tuple) else (item, None)
        row = int(self.rows[pos])
        image = self.transform.augment(self.source[row], seed=seed)
        # uint8 (C, H, W): a quarter of float32's copying and collation cost; the
        # model normalises whole batches (on the GPU when there is one).
        return (
            torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1),
            int(self.targets[row]),
            row,
        )


class SeededSampler(Sampler):
    """Shuffled order from (seed, epoch); yields ``(position, item_seed)`` pairs.

    ``weights`` (counts per position, e.g. from a bootstrap resample) repeat
    positions. Lightning calls :meth:`set_epoch` before every epoch.

    Under DDP Lightning wraps it (training loaders only) in a
    ``DistributedSamplerWrapper``, which forwards ``set_epoch`` here, lists this
    epoch's order once per epoch, permutes that list once more with
    ``(PL_GLOBAL_SEED, epoch)`` — the fold seed, set by ``seed_everything`` on
    every rank — and gives rank ``r`` the items ``r, r + world, ...`` of it.
    Every rank builds the same list, so the shards are disjoint and change with
    the epoch, the order still depends only on (seed, epoch, world size), and
    each item keeps its own augmentation seed. The wrapper pads the list with its
    first items to a multiple of the world size, so up to ``world - 1`` samples
    are seen twice per epoch.
    """

    def __init__(
        self, n: int, seed: int, shuffle: bool = True, counts: np.ndarray | None = None
    ) -> None:
        self.n, self.seed, self.shuffle, self.epoch = n, seed, shuffle, 0
        self.positions = np.repeat(np.arange(n), counts) if counts is not None else np.arange(n)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.positions)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        rng = np.random.default_rng(mix_seed(self.seed, self.epoch))
        order = rng.permutation(self.positions) if self.shuffle else self.positions
        base = mix_seed(self.seed, self.epoch, 1)
        for k, pos in enumerate(order):
            yield int(pos), (base + k) & 0x7FFFFFFF


class DomainBalancedSampler(SeededSampler):
    """Like :class:`SeededSampler`, but every run of ``batch_size`` items holds (near-)equal
    shares of each domain — what CORAL and cross-domain MixStyle need in every batch.

    Each domain is shuffled from (seed, epoch, domain) and dealt out in turn; a domain
    that runs out starts over with a fresh shuffle, so an epoch still has ``n`` items
    and smaller domains are seen a little more often (as in DomainBed's per-domain
    loaders).
    """

    def __init__(
        self, domains: np.ndarray, batch_size: int, seed: int, counts: np.ndarray | None = None
    ) -> None:
        super().__init__(len(domains), seed, True, counts)
        self.domain_of = np.asarray(domains)[self.positions]
        self.batch_size = batch_size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        codes = np.unique(self.domain_of)
        pools = [self.positions[self.domain_of == c] for c in codes]
        rngs = [np.random.default_rng(mix_seed(self.seed, self.epoch, 3, int(c))) for c in codes]
        queues = [list(r.permutation(p)) for r, p in zip(rngs, pools)]
        order: list[int] = []
        turn = 0
        while len(order) < len(self.positions):
            k = turn % len(codes)
            if not queues[k]:
                queues[k] = list(rngs[k].permutation(pools[k]))
            order.append(int(queues[k].pop()))
            turn += 1
        base = mix_seed(self.seed, self.epoch, 1)
        for k, pos in enumerate(order):
            yield pos, (base + k) & 0x7FFFFFFF


def make_loader(
    dataset: RowsDataset,
    batch_size: int,
    seed: int,
    train: bool,
    workers: int,
    pin_memory: bool,
    counts: np.ndarray | None = None,
    replicas: int = 1,
    collate_fn: Callable | None = None,
    domains: np.ndarray | None = None,
) -> DataLoader:
    """``counts`` (per position) repeats rows, for bootstrap resamples; ``domains``
    (per position) makes training batches domain-balanced (:class:`DomainBalancedSampler`).

    ``replicas``: DDP processes the loader will be sharded over, each getting
    ``ceil(n / replicas)`` items; the last-batch rule below applies to that share.
    ``collate_fn``: the task's batching (None: torch's default), e.g. lists of box targets.
    """
    share = math.ceil(len(dataset) / replicas)
    sampler = SeededSampler(len(dataset), seed, shuffle=train, counts=counts) if train else None
    if train and domains is not None:
        sampler = DomainBalancedSampler(domains, batch_size, seed, counts=counts)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=False,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=pin_memory,
        collate_fn=collate_fn,
        # Dropping a last tiny batch keeps BatchNorm from seeing a batch of 1.
        drop_last=train and share > batch_size and share % batch_size == 1,
    )


def default_workers(cached: bool) -> int:
    """Decoding from disk needs workers; cached small images are faster in-process on few cores."""
    cpus = os.cpu_count() or 1
    if cached:
        return 0 if cpus <= 4 else 2
    return max(1, min(8, cpus - 1))


def steps_per_epoch(n: int, batch_size: int, accumulate: int) -> int:
    return max(1, math.ceil(math.ceil(n / batch_size) / accumulate))
