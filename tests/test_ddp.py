"""Lightning DDP under torchrun: OOF/test rows gathered from every rank, one writer, same order.

One real two-process run (``torchrun --standalone --nproc_per_node 2``, gloo on
CPU) is compared with a single-process run of the same config; both run as
subprocesses of the same CLI a user types.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch.distributed as dist
from torch.utils.data.distributed import DistributedSampler

from ensemblecv.training.data import SeededSampler

pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()),
    reason="torch.distributed with the gloo backend is not available in this torch build",
)

CONFIG = """\
workspace: {ws}
data:
  train: digits
  test: "digits:test"
  test_limit: 61          # odd: the two ranks get 31 and 30 test rows
  image_size: 16
  channels: 1
  limit: 241              # odd: one fold has an odd number of validation rows
  folds: 2
  num_workers: 0
model:
  name: cnn_small
train:
  epochs: 1
  batch_size: 32
  tta: [hflip]            # the mirrored predictions are gathered too
  refit_full: false       # each fold predicts the test set, so its test shards are gathered
augment:
  preset: none
tracking:
  backend: none
"""

DDP_ARGS = ["trainer.strategy=ddp", "trainer.devices=2", "trainer.accelerator=cpu"]


def _run(cmd: list[str], cwd: Path) -> None:
    # One thread per process: two ranks on two cores, and the single-process
    # reference is not slowed by oversubscription on a busy machine either.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "SLURM_PROCID", "SLURM_NTASKS"):
        env.pop(key, None)
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (
        f"{' '.join(cmd)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ddp")
    out = {}
    for name, launcher, extra in (
        (
            "ddp",
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--standalone",
                "--nproc_per_node",
                "2",
            ],
            DDP_ARGS,
        ),
        ("single", [sys.executable], []),
    ):
        ws = root / name
        cfg = root / f"{name}.yaml"
        cfg.write_text(CONFIG.format(ws=ws))
        _run([*launcher, "-m", "ensemblecv", "train", str(cfg), *extra, "--no-progress"], root)
        out[name] = ws
    out["root"] = root
    return out


def _fold_dirs(ws: Path) -> list[Path]:
    return sorted((ws / "runs" / "cnn_small").glob("fold_*"))


def test_ddp_oof_and_test_rows_match_the_fold_table(runs):
    ws = runs["ddp"]
    folds = pd.read_parquet(ws / "folds.parquet")
    samples = pd.read_parquet(ws / "samples.parquet")
    label = dict(zip(samples["sample_id"], samples["label"]))
    dirs = _fold_dirs(ws)
    assert [d.name for d in dirs] == ["fold_0", "fold_1"]
    seen: list[str] = []
    for k, d in enumerate(dirs):
        assert (d / "done.json").is_file()
        done = json.loads((d / "done.json").read_text())
        assert done["status"] == "done" and done["fold"] == str(k)
        want = folds.loc[folds["fold"] == k, "sample_id"].tolist()
        for prefix in ("oof", "oof_tta"):
            got = pd.read_parquet(d / f"{prefix}_samples.parquet")
            # exactly this fold's validation samples, each once, in fold-table order
            assert got["sample_id"].tolist() == want
            assert (got["fold"] == k).all()
            assert got["target"].tolist() == [label[s] for s in want]
            probs = np.load(d / f"{prefix}_probs.npy")
            assert probs.shape == (len(want), 10)
            assert np.isfinite(probs).all()
            np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
        seen += want
        for prefix in ("test", "test_tta"):
            test = pd.read_parquet(d / f"{prefix}_samples.parquet")
            assert len(test) == 61 and test["sample_id"].is_unique
            probs = np.load(d / f"{prefix}_probs.npy")
            assert probs.shape == (61, 10)
            assert np.isfinite(probs).all()
            np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
        history = pd.read_csv(d / "history.csv")
        assert len(history) == 1 and np.isfinite(history["val_loss"]).all()
    assert sorted(seen) == sorted(folds["sample_id"])
    # one writer, atomic writes: no temporary file left behind by a second rank
    assert not list(ws.rglob("*.tmp"))
    assert (ws / "runs" / "cnn_small" / "config.yaml").is_file()


def test_ddp_writes_the_same_rows_in_the_same_order_as_one_process(runs):
    ddp, single = runs["ddp"], runs["single"]
    for table in ("samples.parquet", "folds.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(ddp / table), pd.read_parquet(single / table))
    pairs = list(zip(_fold_dirs(ddp), _fold_dirs(single), strict=True))
    assert len(pairs) == 2
    for a, b in pairs:
        for name in ("oof", "oof_tta", "test", "test_tta"):
            pd.testing.assert_frame_equal(
                pd.read_parquet(a / f"{name}_samples.parquet"),
                pd.read_parquet(b / f"{name}_samples.parquet"),
            )
            assert np.load(a / f"{name}_probs.npy").shape == np.load(b / f"{name}_probs.npy").shape


def test_ddp_probabilities_belong_to_their_rows(runs):
    """Gathered rows are re-interleaved correctly: each row's probabilities are that row's.

    Reload each fold's best checkpoint here, in one process, predict the
    validation and test rows in order and compare with what the two ranks wrote.
    """
    import torch

    from ensemblecv.config import load_config
    from ensemblecv.training.data import RowsDataset
    from ensemblecv.training.inputs import prepare_inputs
    from ensemblecv.training.module import ClassifierModule
    from ensemblecv.training.runner import predict_probs

    cfg = load_config(runs["root"] / "ddp.yaml", DDP_ARGS)
    inputs = prepare_inputs(cfg, progress=False)
    cpu = torch.device("cpu")
    for k, d in enumerate(_fold_dirs(runs["ddp"])):
        module = ClassifierModule.load_from_checkpoint(d / "best.ckpt", map_location="cpu")
        rows = np.flatnonzero(inputs.folds["fold"].to_numpy() == k)
        val = RowsDataset(inputs.source, rows, inputs.targets, inputs.eval_tf)
        test_rows = np.arange(len(inputs.test_table))
        test = RowsDataset(inputs.test_source, test_rows, inputs.test_targets, inputs.eval_tf)
        for name, ds, hflip in (
            ("oof", val, False),
            ("oof_tta", val, True),
            ("test", test, False),
            ("test_tta", test, True),
        ):
            expected = predict_probs(module, ds, 64, cpu, 0, hflip=hflip)
            np.testing.assert_allclose(np.load(d / f"{name}_probs.npy"), expected, atol=1e-5)


def test_seeded_sampler_under_lightnings_distributed_wrapper():
    """What Lightning does to our sampler under DDP: set_epoch reaches it, shards are disjoint."""
    from lightning.fabric.utilities.distributed import DistributedSamplerWrapper

    n, world = 11, 2
    orders = []
    for epoch in range(3):
        shards = []
        for rank in range(world):
            inner = SeededSampler(n, seed=5)
            # the kwargs Lightning passes for a training loader (shuffle=True, fold seed)
            wrapper = DistributedSamplerWrapper(
                inner, num_replicas=world, rank=rank, shuffle=True, seed=17
            )
            assert isinstance(wrapper, DistributedSampler)
            wrapper.set_epoch(epoch)
            assert inner.epoch == epoch  # forwarded to our sampler
            shards.append(list(wrapper))
        assert len(shards[0]) == len(shards[1]) == 6  # padded to a multiple of the world
        positions = [p for shard in shards for p, _ in shard]
        assert sorted(set(positions)) == list(range(n))  # every row, once (+1 pad)
        assert len(positions) - len(set(positions)) == 1
        # each item keeps the augmentation seed our sampler gave it for this epoch
        reference = SeededSampler(n, seed=5)
        reference.set_epoch(epoch)
        seeds = dict(reference)
        assert all(seeds[p] == s for shard in shards for p, s in shard)
        orders.append(positions)
    assert orders[0] != orders[1] != orders[2]  # shuffling differs by epoch


@pytest.mark.parametrize(
    ("env", "rank"),
    [
        ({}, 0),
        ({"RANK": "1", "WORLD_SIZE": "2"}, 1),  # torchrun
        ({"RANK": "0", "WORLD_SIZE": "2"}, 0),
        ({"SLURM_PROCID": "3", "SLURM_NTASKS": "4"}, 3),  # srun
        ({"SLURM_PROCID": "0", "SLURM_NTASKS": "1"}, 0),  # a plain one-task SLURM job
        ({"LOCAL_RANK": "1", "WORLD_SIZE": "2"}, 1),  # Lightning's own launcher
        ({"RANK": "2", "WORLD_SIZE": "1"}, 0),  # no multi-process world: rank 0
    ],
)
def test_rank_before_the_process_group_exists(monkeypatch, env, rank):
    from ensemblecv.training import distributed

    for key in ("RANK", "LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "SLURM_PROCID", "SLURM_NTASKS"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert distributed.global_rank() == rank
    assert distributed.is_rank_zero() == (rank == 0)
    monkeypatch.setenv("NODE_RANK", "1")  # another node of Lightning's launcher: never rank 0
    if "LOCAL_RANK" in env:
        assert not distributed.is_rank_zero()


def test_waiting_rank_gives_up_with_a_message():
    from ensemblecv.training.distributed import wait_for

    with pytest.raises(TimeoutError, match="for rank 0 to finish preparing"):
        wait_for(lambda: False, "preparing the workspace", timeout_s=0.05, poll_s=0.01)
