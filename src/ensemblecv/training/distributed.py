"""Multi-process training (Lightning DDP under ``torchrun`` or SLURM): ranks, barriers, gathers.

Every process of a DDP launch runs the whole ``train`` command. The rules that
keep them from stepping on each other:

* Only global rank 0 writes files (workspace tables, ``config.yaml``,
  ``history.csv``, checkpoints — Lightning already does that one —, OOF/test
  probabilities, ``done.json``) and talks to the tracking server.
* Before Lightning creates the process group, the rank comes from the
  launcher's environment (``RANK`` from torchrun, ``SLURM_PROCID`` from srun);
  afterwards from :mod:`torch.distributed`.
* Predictions after a fold are sharded by rows (``rows[rank::world]``),
  gathered with ``all_gather_object`` (works on gloo and NCCL) and
  re-interleaved, so the files hold exactly the rows, in exactly the order, of
  a single-process run.

With one process every helper here is a no-op, so single-process runs take
exactly the code path they always did.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import numpy as np
import torch


def _initialized() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def _env_int(key: str) -> int | None:
    value = os.environ.get(key, "").strip()
    return int(value) if value.isdigit() else None


def _launch_rank() -> int:
    """The global rank a launcher set in the environment; 0 outside a multi-process launch.

    torchrun sets ``RANK`` (and ``WORLD_SIZE``); srun sets ``SLURM_PROCID``
    (and ``SLURM_NTASKS``); Lightning's own launcher sets ``LOCAL_RANK`` and
    ``NODE_RANK`` (and ``WORLD_SIZE``). A rank variable counts only when the
    world it belongs to has more than one process, so a single job started by
    ``srun`` (``SLURM_PROCID=0`` anyway) or by some other tool stays rank 0.
    """
    if (_env_int("WORLD_SIZE") or 1) > 1:
        if _env_int("RANK") is not None:
            return _env_int("RANK")
        local, node = _env_int("LOCAL_RANK"), _env_int("NODE_RANK") or 0
        if local is not None:
            # Lightning's launcher does not say how many processes a node runs, so off
            # node 0 this is a stand-in that is never 0 (all that matters before the
            # process group exists), not the true rank.
            return local if node == 0 else node * _env_int("WORLD_SIZE") + local
    if (_env_int("SLURM_NTASKS") or 1) > 1 and _env_int("SLURM_PROCID") is not None:
        return _env_int("SLURM_PROCID")
    return 0


def global_rank() -> int:
    """This process's global rank: from the process group once it exists, else the launcher's.

    0 for a single process.
    """
    return torch.distributed.get_rank() if _initialized() else _launch_rank()


def is_rank_zero() -> bool:
    """True in the one process that writes files (also before the process group exists)."""
    return global_rank() == 0


def world_size() -> int:
    """Processes in the process group; 1 when there is none (yet)."""
    return torch.distributed.get_world_size() if _initialized() else 1


def barrier() -> None:
    """Wait for every rank; a no-op without a process group."""
    if _initialized() and world_size() > 1:
        torch.distributed.barrier()


def broadcast_from_zero(obj):
    """Rank 0's ``obj`` on every rank (a collective: all ranks call it); ``obj`` without DDP."""
    if not (_initialized() and world_size() > 1):
        return obj
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def wait_for(
    ready: Callable[[], bool], what: str, timeout_s: float = 7200.0, poll_s: float = 0.5
) -> None:
    """Poll ``ready()`` until it is true; ``TimeoutError`` naming ``what`` after ``timeout_s``.

    For ranks waiting on rank 0 before the process group exists (so no barrier
    is possible yet). torchrun stops every rank when one fails; under SLURM use
    ``srun --kill-on-bad-exit=1`` so a failed rank 0 does not leave the others
    waiting until the timeout.
    """
    deadline = time.monotonic() + timeout_s
    while not ready():
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"rank {global_rank()} waited {timeout_s:.0f} s for rank 0 to finish {what}; "
                "did rank 0 fail? (see its log)"
            )
        time.sleep(poll_s)


def shard(rows: np.ndarray) -> np.ndarray:
    """This rank's share of ``rows``: every ``world``-th row starting at the rank."""
    world = world_size()
    return rows if world == 1 else rows[global_rank() :: world]


def gather_shards(part: np.ndarray, total: int) -> np.ndarray | None:
    """Inverse of :func:`shard`: rank 0 gets the full ``(total, ...)`` array in row order.

    Every rank must call it (it is a collective); ranks other than 0 get None.
    With one process ``part`` is returned as it is.
    """
    world = world_size()
    if world == 1:
        return part
    parts: list = [None] * world
    torch.distributed.all_gather_object(parts, part)
    if global_rank() != 0:
        return None
    out = np.empty((total, *part.shape[1:]), dtype=part.dtype)
    for rank, piece in enumerate(parts):
        out[rank::world] = piece
    return out


def gather_list(part: list, total: int) -> list | None:
    """:func:`gather_shards` for a list of Python objects (e.g. per-image detections).

    Rank 0 gets the ``total`` items back in row order; other ranks get None.
    """
    world = world_size()
    if world == 1:
        return part
    parts: list = [None] * world
    torch.distributed.all_gather_object(parts, part)
    if global_rank() != 0:
        return None
    out: list = [None] * total
    for rank, piece in enumerate(parts):
        out[rank::world] = piece
    return out
