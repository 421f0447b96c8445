"""Training engine: fold runs, stored predictions, resume, losses, optimizers, schedules, errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from ensemblecv.config import TrainConfig, load_config, validate_config
from ensemblecv.errors import ConfigError
from ensemblecv.training import FocalLoss, SoftCrossEntropy, build_loss, list_losses, train
from ensemblecv.training.optim import build_optimizer, build_scheduler


def _bars(kind: int, rng: np.random.Generator, size: int = 16) -> np.ndarray:
    """Class 0: horizontal bars, 1: vertical bars, 2: a filled square — learnable in an epoch."""
    img = np.full((size, size), 255, np.uint8)
    off = int(rng.integers(0, 3))
    if kind == 0:
        img[off::4, :] = 0
    elif kind == 1:
        img[:, off::4] = 0
    else:
        img[4 + off : 12 - off, 4:12] = 0
    noise = rng.integers(0, 30, img.shape, dtype=np.uint8)
    return np.clip(img.astype(int) - noise, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def bars_dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bars")
    rng = np.random.default_rng(0)
    for split, n in (("train", 16), ("test", 4)):
        for c, name in enumerate(["horizontal", "vertical", "square"]):
            d = root / split / name
            d.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(_bars(c, rng)).save(d / f"{i}.png")
    return root


def _config(ds: Path, ws: Path, *overrides: str):
    base = {
        "workspace": str(ws),
        "data": {
            "train": str(ds / "train"),
            "test": str(ds / "test"),
            "image_size": 16,
            "channels": 1,
            "folds": 2,
            "num_workers": 0,
        },
        "model": {"name": "mnist_cnn"},
        "train": {"epochs": 1, "batch_size": 16, "lr": 0.003},
        "augment": {"preset": "none"},
        "tracking": "none",
    }
    return load_config(None, list(overrides), base=base)


def test_oof_covers_every_sample_once_and_rows_sum_to_one(bars_dataset, tmp_path):
    cfg = _config(bars_dataset, tmp_path / "ws")
    results = train(cfg, progress=False)
    # Both folds, then the refit on all images that predicts test (the default protocol).
    assert [(r.fold, r.status) for r in results] == [("0", "done"), ("1", "done"), ("full", "done")]
    run = tmp_path / "ws" / "runs" / "mnist_cnn"
    ids, folds = [], pd.read_parquet(tmp_path / "ws" / "folds.parquet")
    for k in (0, 1):
        probs = np.load(run / f"fold_{k}" / "oof_probs.npy")
        samples = pd.read_parquet(run / f"fold_{k}" / "oof_samples.parquet")
        assert probs.shape == (len(samples), 3)
        np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
        expected = set(folds.loc[folds["fold"] == k, "sample_id"])
        assert set(samples["sample_id"]) == expected
        ids += samples["sample_id"].tolist()
        # the refit predicts the test set; the fold models, whose test predictions nothing
        # would read, skip it
        assert not (run / f"fold_{k}" / "test_probs.npy").exists()
        history = pd.read_csv(run / f"fold_{k}" / "history.csv")
        assert list(history.columns[:5]) == [
            "epoch",
            "train_loss",
            "train_acc",
            "val_loss",
            "val_acc",
        ]
        assert (run / f"fold_{k}" / "best.ckpt").is_file() and (
            run / f"fold_{k}" / "last.ckpt"
        ).is_file()
    assert sorted(ids) == sorted(folds["sample_id"])  # each training sample exactly once
    assert np.load(run / "full" / "test_probs.npy").shape == (12, 3)
    assert (run / "config.yaml").read_text().startswith("workspace:")
    # A second call skips finished folds instead of training again.
    again = train(cfg, progress=False)
    assert all(r.status.startswith("skipped") for r in again)


def test_predict_reproduces_the_stored_test_views_of_plain_and_tta_members(bars_dataset, tmp_path):
    """``predict`` on the test set gives what training stored for NAME and NAME+tta: the
    refit's plain and mirror-averaged probabilities (one pass of each checkpoint serves both)."""
    from ensemblecv.data.samples import load_samples
    from ensemblecv.ensemble.store import PredictionStore
    from ensemblecv.inference import predict_members

    cfg = _config(bars_dataset, tmp_path / "ws", "train.tta=[hflip]")
    train(cfg, progress=False)
    store = PredictionStore(tmp_path / "ws")
    table = load_samples(str(bars_dataset / "test"))
    members = predict_members(tmp_path / "ws", ["mnist_cnn", "mnist_cnn+tta"], table)
    assert [m.run for m in members] == ["mnist_cnn", "mnist_cnn+tta"]
    for member in members:
        stored, samples = store.test(member.run)
        order = pd.Series(np.arange(len(table)), index=table.frame["sample_id"])
        got = member.probs[order.reindex(samples["sample_id"]).to_numpy()]
        np.testing.assert_allclose(got, stored, rtol=1e-4, atol=1e-5)
    assert np.abs(members[0].probs - members[1].probs).max() > 1e-4  # the views differ


def test_same_seed_same_result_and_learning_happens(bars_dataset, tmp_path):
    cfgs = [_config(bars_dataset, tmp_path / f"ws{i}", "train.epochs=3") for i in range(2)]
    for cfg in cfgs:
        train(cfg, folds=[0], progress=False)
    a, b = (np.load(tmp_path / f"ws{i}/runs/mnist_cnn/fold_0/oof_probs.npy") for i in range(2))
    np.testing.assert_array_equal(a, b)
    targets = pd.read_parquet(tmp_path / "ws0/runs/mnist_cnn/fold_0/oof_samples.parquet")["target"]
    assert (a.argmax(1) == targets.to_numpy()).mean() > 0.6


#: Every training process of the resume tests gets this environment: the exact
#: guarantee holds for the same torch thread count (reductions may be split
#: differently over another count), and a subprocess must not inherit whatever
#: an earlier test in the same pytest worker left behind.
_SAME_THREADS = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
_KILL_DRIVER = Path(__file__).with_name("kill_driver.py")


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **_SAME_THREADS}
    return subprocess.run(
        [sys.executable, *args], env=env, capture_output=True, text=True, timeout=300
    )


def _cli_train(cfg_path: Path, *extra: str) -> subprocess.CompletedProcess:
    return _run("-m", "ensemblecv", "train", str(cfg_path), "--folds", "0", "--no-progress", *extra)


@pytest.fixture(scope="module")
def uninterrupted(bars_dataset, tmp_path_factory):
    """The reference: one uninterrupted CLI run, in a process like the killed ones."""
    root = tmp_path_factory.mktemp("uninterrupted")
    cfg_path = _resume_config(bars_dataset, root)
    done = _cli_train(cfg_path)
    assert done.returncode == 0, done.stderr[-2000:]
    return root / "runs" / "mnist_cnn" / "fold_0"


def _resume_config(ds: Path, ws: Path) -> Path:
    from ensemblecv.config import to_yaml

    cfg = _config(ds, ws, "train.epochs=4", "augment.preset=light", "train.scheduler=cosine")
    path = ws.parent / f"{ws.name}.yaml"
    path.write_text(to_yaml(cfg))
    return path


@pytest.mark.parametrize("point", ["epoch_start:2", "last_ckpt:1", "done"])
def test_resume_after_sigkill_reproduces_uninterrupted_run(
    bars_dataset, uninterrupted, tmp_path, point
):
    """SIGKILL at the worst moments (between two checkpoint files, before done.json), resume.

    The kill comes from inside the process at a fixed point, so the test is the
    same on a loaded machine; the resumed run must give bit-identical
    predictions and one history row per epoch.
    """
    ws = tmp_path / "killed"
    cfg_path = _resume_config(bars_dataset, ws)
    killed = _run(str(_KILL_DRIVER), str(cfg_path), point)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    fold = ws / "runs" / "mnist_cnn" / "fold_0"
    assert not (fold / "done.json").exists()
    resumed = _cli_train(cfg_path, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "other numerics" not in resumed.stderr  # same settings: no false alarm
    for name in ("oof_probs.npy", "test_probs.npy"):
        np.testing.assert_array_equal(np.load(uninterrupted / name), np.load(fold / name))
    h = pd.read_csv(fold / "history.csv")
    assert h["epoch"].tolist() == [0, 1, 2, 3]  # no epoch twice after resume
    ref = pd.read_csv(uninterrupted / "history.csv")
    cols = ["train_loss", "train_acc", "val_loss", "val_acc", "lr"]
    pd.testing.assert_frame_equal(h[cols], ref[cols])


def test_checkpoints_record_the_thread_count_and_a_resume_under_another_warns(uninterrupted):
    from ensemblecv.training.callbacks import NumericsGuard

    ckpt = torch.load(uninterrupted / "last.ckpt", map_location="cpu", weights_only=False)
    (state,) = [v for k, v in ckpt["callbacks"].items() if k.startswith("NumericsGuard")]
    assert state == {"torch_threads": 1, "torch": torch.__version__}  # OMP_NUM_THREADS=1
    other = {**state, "torch_threads": torch.get_num_threads() + 1}
    with pytest.warns(UserWarning, match=r"torch_threads \d+ -> \d+.*same thread count"):
        NumericsGuard().load_state_dict(other)


def test_a_job_thread_share_does_not_outlive_the_job(bars_dataset, tmp_path):
    """A Ray job's CPU share set in-process must not leak into later runs of that process."""
    from ensemblecv.launch import run_job

    before = torch.get_num_threads()
    cfg = _config(bars_dataset, tmp_path / "ws")
    run_job(cfg, 0, threads=before + 1)
    assert torch.get_num_threads() == before


def test_refit_full_and_bn_freeze_stats(bars_dataset, tmp_path):
    cfg = _config(
        bars_dataset,
        tmp_path / "ws",
        "train.refit_full=true",
        "model.batchnorm=freeze_stats",
        "name=frozen_bn",
    )
    results = train(cfg, progress=False)
    assert [r.fold for r in results] == ["0", "1", "full"]
    full = tmp_path / "ws/runs/frozen_bn/full"
    assert (full / "test_probs.npy").is_file() and not (full / "oof_probs.npy").exists()
    state = torch.load(full / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    means = [v for k, v in state.items() if k.endswith("running_mean")]
    assert means and all(torch.equal(m, torch.zeros_like(m)) for m in means)


def test_same_run_name_with_other_config_is_refused(bars_dataset, tmp_path):
    train(_config(bars_dataset, tmp_path / "ws"), folds=[0], progress=False)
    with pytest.raises(ConfigError, match="different config"):
        train(_config(bars_dataset, tmp_path / "ws", "train.lr=0.1"), folds=[0], progress=False)


def test_nan_loss_stops_with_message_and_keeps_best(bars_dataset, tmp_path, monkeypatch):
    import ensemblecv.training.module as module

    real = module.build_loss

    def exploding(cfg):
        loss = real(cfg)
        calls = {"n": 0}

        def fn(logits, target):
            calls["n"] += 1
            value = loss(logits, target)
            return value * float("nan") if calls["n"] > 2 else value  # 2 batches = epoch 0

        return fn

    monkeypatch.setattr(module, "build_loss", exploding)
    cfg = _config(bars_dataset, tmp_path / "ws", "train.epochs=3")
    with pytest.raises(module.NonFiniteLossError, match="loss became nan at epoch 1"):
        train(cfg, folds=[0], progress=False)
    fold = tmp_path / "ws/runs/mnist_cnn/fold_0"
    assert (fold / "best.ckpt").is_file() and not (fold / "done.json").exists()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.name=resnet5", "Unknown model 'resnet5'"),
        ("model.pretrained=/nonexistent/weights.pth", "/nonexistent/weights.pth"),
        ("train.optimizer=lion", "train.optimizer"),
        ("data.folds=1", "data.folds"),
    ],
)
def test_bad_config_gives_clear_error(bars_dataset, tmp_path, override, message):
    with pytest.raises(ConfigError, match=message):
        train(_config(bars_dataset, tmp_path / "ws", override), progress=False)


def test_pretrained_true_offline_explains_local_weights(bars_dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = _config(bars_dataset, tmp_path / "ws", "model.name=resnet18", "model.pretrained=true")
    with pytest.raises(ConfigError, match="pretrained: /path"):
        train(cfg, folds=[0], progress=False)


def test_mlflow_tracking_records_run(bars_dataset, tmp_path):
    mlflow = pytest.importorskip("mlflow")
    cfg = _config(
        bars_dataset, tmp_path / "ws", "tracking.backend=mlflow", "tracking.experiment=bars"
    )
    train(cfg, folds=[0], progress=False)
    client = mlflow.tracking.MlflowClient(f"sqlite:///{tmp_path / 'ws' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("bars")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.data.params["model.name"] == "mnist_cnn"
    assert "val_loss" in run.data.metrics and "train_loss" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "history.csv"} <= artifacts
    assert run.info.artifact_uri.startswith((tmp_path / "ws" / "mlartifacts").as_uri())


# --- losses, optimizers, schedules (unit level) -------------------------------------------


def test_focal_with_gamma_zero_is_cross_entropy_and_down_weights_easy_examples():
    logits = torch.randn(32, 5, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 5, (32,), generator=torch.Generator().manual_seed(1))
    ce = F.cross_entropy(logits, y)
    assert torch.allclose(FocalLoss(gamma=0.0)(logits, y), ce, atol=1e-6)
    p_t = F.softmax(logits, 1)[torch.arange(32), y]
    expected = (-((1 - p_t) ** 2) * torch.log(p_t)).mean() * 0.25
    assert torch.allclose(FocalLoss(gamma=2.0, alpha=0.25)(logits, y), expected, atol=1e-6)
    assert FocalLoss(gamma=2.0)(logits, y) < ce


def test_label_smoothing_matches_pytorch_and_soft_targets():
    logits = torch.randn(16, 4, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 4, (16,), generator=torch.Generator().manual_seed(1))
    smooth = SoftCrossEntropy(0.1)
    assert torch.allclose(
        smooth(logits, y), F.cross_entropy(logits, y, label_smoothing=0.1), atol=1e-6
    )
    one_hot = F.one_hot(y, 4).float()
    assert torch.allclose(smooth(logits, one_hot), smooth(logits, y), atol=1e-6)
    assert smooth(logits, y) != SoftCrossEntropy(0.0)(logits, y)


@pytest.mark.parametrize("name", list_losses())
def test_every_loss_builds_and_backpropagates(name):
    loss = build_loss(TrainConfig(loss=name, label_smoothing=0.1))
    logits = torch.randn(8, 3, requires_grad=True)
    value = loss(logits, torch.randint(0, 3, (8,)))
    value.backward()
    assert torch.isfinite(value) and logits.grad is not None
    soft = F.softmax(torch.randn(8, 3), 1)  # CutMix/MixUp targets
    assert torch.isfinite(loss(logits, soft))


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd"])
@pytest.mark.parametrize(
    "scheduler", ["none", "step", "multistep", "cosine", "onecycle", "plateau"]
)
def test_every_optimizer_and_schedule_steps(optimizer, scheduler):
    model = torch.nn.Linear(4, 2)
    cfg = TrainConfig(
        optimizer=optimizer,
        scheduler=scheduler,
        lr=0.1,
        epochs=3,
        milestones=[1],
        step_size=1,
        warmup_epochs=1,
        weight_decay=0.01,
        nesterov=True,
    )
    opt = build_optimizer(model, cfg)
    sched = build_scheduler(opt, cfg, steps_per_epoch=2)
    lrs = []
    for _ in range(6):
        opt.zero_grad()
        model(torch.randn(3, 4)).sum().backward()
        opt.step()
        if sched and sched["interval"] == "step":
            sched["scheduler"].step()
        elif sched:
            sched["scheduler"].step(1.0)  # constant val_loss → plateau decays
        lrs.append(opt.param_groups[0]["lr"])
    if scheduler == "none":
        assert lrs == [0.1] * 6
    else:
        assert len(set(np.round(lrs, 8))) > 1, f"{scheduler} never changed the learning rate"


def test_weight_decay_skips_biases():
    model = torch.nn.Linear(4, 2)
    opt = build_optimizer(model, TrainConfig(weight_decay=0.05))
    decays = {tuple(p.shape): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    assert decays == {(2, 4): 0.05, (2,): 0.0}


def test_config_rejects_unknown_loss():
    with pytest.raises(ConfigError, match="train.loss"):
        validate_config({"data": {"train": "digits"}, "train": {"loss": "hinge"}})


def test_cli_train_prints_results(bars_dataset, tmp_path):
    from typer.testing import CliRunner

    from ensemblecv.cli import app
    from ensemblecv.config import to_yaml

    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(to_yaml(_config(bars_dataset, tmp_path / "ws")))
    result = CliRunner().invoke(
        app, ["train", str(cfg_path), "train.epochs=1", "--folds", "1", "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    assert "Results" in result.output and "done" in result.output
    done = json.loads((tmp_path / "ws/runs/mnist_cnn/fold_1/done.json").read_text())
    assert done["status"] == "done" and 0 <= done["val_acc"] <= 1


def test_bagging_repeats_are_separate_runs_with_different_members(bars_dataset, tmp_path):
    cfg = _config(
        bars_dataset, tmp_path / "ws", "train.repeats=2", "train.bootstrap=true", "name=bag"
    )
    results = train(cfg, folds=[0], progress=False)
    assert sorted({r.run for r in results}) == ["bag_r0", "bag_r1"]
    a, b = (np.load(tmp_path / f"ws/runs/bag_r{i}/fold_0/oof_probs.npy") for i in range(2))
    assert a.shape == b.shape and not np.allclose(a, b)
    import yaml

    saved = yaml.safe_load((tmp_path / "ws/runs/bag_r1/config.yaml").read_text())
    assert (
        saved["train"]["seed"] == 1
        and saved["train"]["repeats"] == 1
        and saved["train"]["bootstrap"]
    )


def test_tta_variant_enters_the_store_and_leaderboard(bars_dataset, tmp_path):
    from ensemblecv.ensemble import PredictionStore, build_ensembles

    cfg = _config(bars_dataset, tmp_path / "ws", "train.tta=[hflip]", "name=flip")
    train(cfg, progress=False)
    store = PredictionStore(tmp_path / "ws")
    assert store.names == ["flip", "flip+tta"]
    plain, tta = store.oof("flip"), store.oof("flip+tta")
    np.testing.assert_allclose(tta.sum(1), 1.0, atol=1e-5)
    assert not np.allclose(plain, tta)  # the mirrored view changes predictions
    board = build_ensembles(tmp_path / "ws", methods=["soft_voting"])
    assert set(board["name"]) == {"flip", "flip+tta", "soft_voting"}


def test_accumulation_clipping_early_stopping_and_bf16(bars_dataset, tmp_path):
    cfg = _config(
        bars_dataset, tmp_path / "ws", "train.epochs=6", "train.accumulate_grad_batches=2",
        "train.gradient_clip_val=0.5", "train.early_stopping.patience=1",
        "train.early_stopping.monitor=val_acc", "trainer.precision=bf16-mixed", "train.lr=0.0001",
        "train.scheduler=none",
    )  # fmt: skip
    (result,) = train(cfg, folds=[0], progress=False)
    history = pd.read_csv(tmp_path / "ws/runs/mnist_cnn/fold_0/history.csv")
    assert result.status == "done" and len(history) == result.epochs <= 6
    probs = np.load(tmp_path / "ws/runs/mnist_cnn/fold_0/oof_probs.npy")
    assert probs.dtype == np.float32 and np.isfinite(probs).all()


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    """A crash while writing leaves the previous checkpoint intact."""
    from ensemblecv.training.callbacks import AtomicCheckpointIO

    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"epoch": 1, "w": torch.ones(3)}, path)
    before = path.read_bytes()

    import lightning.fabric.plugins.io.torch_io as torch_io

    def crash(checkpoint, filepath, *args, **kwargs):
        Path(filepath).write_bytes(b"partial")  # half-written file, then the process dies
        raise KeyboardInterrupt

    monkeypatch.setattr(torch_io, "_atomic_save", crash)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"epoch": 2, "w": torch.zeros(3)}, path)
    assert path.read_bytes() == before
    assert torch.load(path, weights_only=True)["epoch"] == 1


def test_excluded_samples_do_not_train_but_keep_oof(bars_dataset, tmp_path, monkeypatch):
    import ensemblecv.training.runner as runner

    ws = tmp_path / "ws"
    train(_config(bars_dataset, ws), folds=[0], progress=False)  # prepares the workspace
    folds = pd.read_parquet(ws / "folds.parquet")
    excluded = folds.loc[folds["fold"] == 1, "sample_id"].head(3).tolist()
    path = tmp_path / "exclude.csv"
    pd.DataFrame({"sample_id": excluded + ["not/a/sample.png"], "reason": "test"}).to_csv(
        path, index=False
    )
    seen = {}
    real = runner._fold_rows

    def spy(inputs, fold):
        rows = real(inputs, fold)
        seen[fold] = set(inputs.folds["sample_id"].to_numpy()[rows[0]])
        return rows

    monkeypatch.setattr(runner, "_fold_rows", spy)
    cfg = _config(bars_dataset, ws, f"data.exclude={path}", "name=clean")
    with pytest.warns(UserWarning, match="not in this workspace"):
        train(cfg, progress=False)
    assert not seen[0] & set(excluded)  # fold 0 trains on fold 1's rows, minus the excluded
    oof = pd.read_parquet(ws / "runs/clean/fold_1/oof_samples.parquet")
    assert set(excluded) <= set(oof["sample_id"])  # still predicted out of fold


def test_the_one_thread_fixture_leaves_every_torch_thread_pool_as_it_found_it():
    """It once left torch's MKL at one thread, so later in-process runs differed from subprocesses."""
    import conftest

    def pools() -> list[str]:
        return [ln for ln in torch.__config__.parallel_info().splitlines() if "_get_max" in ln]

    before = pools()
    fixture = conftest.one_thread.__wrapped__()
    next(fixture)
    assert torch.get_num_threads() == 1
    with pytest.raises(StopIteration):
        next(fixture)
    assert pools() == before
