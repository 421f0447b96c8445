"""Domain generalisation: the domain layout, the leave-one-domain-out protocol's isolation
of the test domain, MixStyle, CORAL, weight averaging and the domain table."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import make_image
from torch import nn

from ensemblecv.config import load_config
from ensemblecv.data.domains import domain_split, list_domains, missing_classes
from ensemblecv.data.samples import load_samples
from ensemblecv.errors import ConfigError, DataError

pytestmark = pytest.mark.usefixtures("one_thread")


def _domain_folder(root: Path) -> Path:
    """art/{cat,dog} (2 each), photo/{cat,dog,owl} (2 each): owl is missing from art."""
    for d, classes in (("art", ("cat", "dog")), ("photo", ("cat", "dog", "owl"))):
        for c in classes:
            for i in range(2):
                make_image(root / d / c / f"{i}.png", color=(40 * i, 100, 30))
    (root / "README.txt").write_text("not an image")
    return root


# -- the data ------------------------------------------------------------------------


def test_domain_layout_reads_domain_class_image(tmp_path):
    root = _domain_folder(tmp_path / "data")
    table = load_samples(root, layout="domains")
    assert table.classes == ["cat", "dog", "owl"]
    assert list_domains(table) == ["art", "photo"]
    frame = table.frame
    assert len(frame) == 10 and frame["sample_id"].is_unique
    row = frame[frame["sample_id"] == "photo/owl/1.png"].iloc[0]
    assert (row["domain"], row["class_name"], row["label"]) == ("photo", "owl", 2)
    assert any("README.txt" in p for p, _ in table.ignored)
    assert missing_classes(table) == {"art": ["owl"]}
    # The ImageFolder reader would take the domains for classes: the reason for the option.
    assert load_samples(root).classes == ["art", "photo"]


def test_domain_layout_refuses_a_plain_image_folder(tmp_path):
    for c in ("cat", "dog"):
        make_image(tmp_path / "flat" / c / "0.png")
    with pytest.raises(DataError, match="ROOT/DOMAIN/CLASS/image"):
        load_samples(tmp_path / "flat", layout="domains")


def test_csv_index_domain_column(tmp_path):
    for i in range(4):
        make_image(tmp_path / f"{i}.png")
    csv = tmp_path / "index.csv"
    csv.write_text(
        "image_path,class_name,domain\n0.png,x,a\n1.png,y,b\n2.png,y,a\n3.png,x,b\n",
        encoding="utf-8",
    )
    table = load_samples(csv)
    assert table.frame["domain"].tolist() == ["a", "b", "a", "b"]
    assert "domain" not in table.extra.columns
    train, test = domain_split(table, "b")
    assert set(train.frame["domain"]) == {"a"} and set(test.frame["domain"]) == {"b"}
    with pytest.raises(DataError, match="not a domain of this data; domains: a, b"):
        domain_split(table, "c")


def test_builtin_multi_domain_set_has_balanced_styles():
    table = load_samples("digits-domains")
    counts = table.frame["domain"].value_counts()
    assert sorted(counts.index) == ["colour", "inverted", "photo", "sketch"]
    assert counts.max() - counts.min() <= 1


def test_domains_without_protocol_train_as_before_and_say_so_once(tmp_path):
    from ensemblecv.training.inputs import open_workspace

    cfg = load_config(
        None, [], base={"workspace": str(tmp_path / "ws"), "data": {"train": "digits-domains",
                                                                    "limit": 40, "folds": 2}}
    )  # fmt: skip
    with pytest.warns(UserWarning, match="data.protocol=leave_one_domain_out") as record:
        ws = open_workspace(cfg, progress=False)
    assert sum("leave_one_domain_out" in str(w.message) for w in record) == 1
    assert len(ws.load_table()) == 40  # every domain pooled into the folds
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        open_workspace(cfg, progress=False)  # prepared: not said again


# -- the protocol ----------------------------------------------------------------------


def _lodo_config(ws: Path, **train):
    return load_config(
        None,
        [],
        base={
            "workspace": str(ws),
            "name": "erm",
            "data": {
                "train": "digits-domains",
                "protocol": "leave_one_domain_out",
                "image_size": 16,
                "channels": 3,
                "folds": 2,
                "limit": 96,
                "num_workers": 0,
            },
            "model": {"name": "mnist_cnn"},
            "train": {"epochs": 1, "batch_size": 16, **train},
            "tracking": "none",
        },
    )


class _RowRecorder:
    """Records every training and validation batch's workspace rows."""

    def __new__(cls):
        import lightning.pytorch as pl

        class Recorder(pl.Callback):
            def __init__(self):
                self.train_rows, self.val_rows = [], []

            def on_train_batch_start(self, trainer, module, batch, batch_idx):
                self.train_rows += batch[2].tolist()

            def on_validation_batch_start(self, trainer, module, batch, batch_idx, *args):
                self.val_rows += batch[2].tolist()

        return Recorder()


def test_held_out_domain_never_enters_training_selection_or_statistics(tmp_path):
    from ensemblecv.data.scan import normalization_stats, scan_table
    from ensemblecv.domains import held_out_config, lodo_domains
    from ensemblecv.ensemble import PredictionStore, build_ensembles
    from ensemblecv.training.inputs import prepare_inputs
    from ensemblecv.training.runner import train_fold

    root = tmp_path / "lodo"
    cfg = _lodo_config(root)
    assert lodo_domains(cfg) == ["colour", "inverted", "photo", "sketch"]
    sub = held_out_config(cfg, "sketch")
    assert Path(sub.workspace) == root / "domains" / "sketch"
    full = load_samples("digits-domains")
    full = full.subset(np.isin(np.arange(len(full)), np.arange(len(full))))
    from ensemblecv.training.inputs import limited

    pool = limited(full, 96).frame
    held_ids = set(pool.loc[pool["domain"] == "sketch", "sample_id"])
    train_ids = set(pool.loc[pool["domain"] != "sketch", "sample_id"])
    assert held_ids and train_ids

    inputs = prepare_inputs(sub, progress=False)
    ws = inputs.workspace
    assert set(ws.load_table().frame["sample_id"]) == train_ids  # samples.parquet
    assert set(ws.load_folds()["sample_id"]) == train_ids  # folds.parquet
    assert set(inputs.test_table.frame["sample_id"]) == held_ids  # the test set
    # Normalisation statistics: measured on the training domains only.
    scan = scan_table(domain_split(limited(full, 96), "sketch")[0])
    assert ws.normalization() == json.loads(json.dumps(normalization_stats(scan.stats)))
    every = normalization_stats(scan_table(limited(full, 96)).stats)
    assert ws.normalization()["rgb"]["mean"] != every["rgb"]["mean"]

    run_dir = ws.run_dir("erm")
    run_dir.mkdir(parents=True)
    ids = inputs.table.frame["sample_id"].to_numpy()
    for fold in (0, 1):
        rec = _RowRecorder()
        train_fold(sub, inputs, fold, run_dir, False, False, callbacks=[rec])
        assert rec.train_rows and not set(ids[rec.train_rows]) & held_ids
        assert set(ids[rec.val_rows]) <= train_ids
        test = pd.read_parquet(run_dir / f"fold_{fold}" / "test_samples.parquet")
        assert set(test["sample_id"]) == held_ids
    # Selection (ensembles, leaderboard order) reads the OOF rows: training domains only.
    store = PredictionStore(ws.root)
    assert set(store.sample_ids) == train_ids
    board = build_ensembles(ws.root, methods=["soft_voting"], runs=["erm"])
    assert "test_accuracy" in board.columns
    # The protocol workspace's table and report read the sub-workspaces' leaderboards.
    from ensemblecv.domains.protocol import _write_protocol
    from ensemblecv.tasks import workspace_task

    _write_protocol(cfg, ["colour", "inverted", "photo", "sketch"])
    options = {"gradcam": False, "max_gallery": 0}
    page = workspace_task(root).build_report(root, None, options)
    assert page == root / "report" / "index.html" and "sketch" in page.read_text()
    table = pd.read_csv(root / "domains.csv").set_index("name")
    assert table.loc["erm", "sketch"] == pytest.approx(
        board.set_index("name").loc["erm", "test_accuracy"]
    )
    assert np.isnan(table.loc["erm", "average"])  # three domains not trained yet


def test_lodo_refuses_data_test_and_data_without_domains(tmp_path):
    from ensemblecv.domains import held_out_config, lodo_domains

    cfg = _lodo_config(tmp_path / "a")
    with pytest.raises(ConfigError, match="each held-out domain is the test set"):
        held_out_config(cfg.model_copy(update={"data": cfg.data.model_copy(
            update={"test": "digits:test"})}), "photo")  # fmt: skip
    from ensemblecv.domains.protocol import expand_lodo

    subs = expand_lodo([cfg])
    assert [c.data.held_out for c in subs] == ["colour", "inverted", "photo", "sketch"]
    assert Path(subs[0].workspace) == tmp_path / "a" / "domains" / "colour"
    assert (tmp_path / "a" / "protocol.json").is_file()
    plain = load_config(None, ["data.train=digits", "data.limit=40"], base=cfg.model_dump())
    with pytest.raises(DataError, match="at least two domains"):
        lodo_domains(plain)


def test_coral_without_domains_is_a_config_error(tmp_path):
    from fakes import digits_config

    from ensemblecv.training import train

    cfg = digits_config(tmp_path / "ws", "coral", algorithm="coral")
    with pytest.raises(ConfigError, match="train.algorithm=coral needs domains"):
        train(cfg, progress=False)


# -- MixStyle ------------------------------------------------------------------------


def test_mixstyle_statistics_mixing_matches_a_direct_computation():
    from ensemblecv.models import mix_statistics

    rng = np.random.default_rng(0)
    x = rng.normal(2.0, 3.0, (4, 3, 5, 6)).astype(np.float64)
    lam = np.array([0.2, 0.5, 0.9, 1.0])
    perm = np.array([2, 0, 3, 1])
    out = mix_statistics(torch.from_numpy(x), torch.from_numpy(lam), torch.from_numpy(perm)).numpy()
    mu = x.mean((2, 3), keepdims=True)
    sd = np.sqrt(x.var((2, 3), ddof=1, keepdims=True) + 1e-6)
    lam4 = lam[:, None, None, None]
    want = (x - mu) / sd * (lam4 * sd + (1 - lam4) * sd[perm]) + lam4 * mu + (1 - lam4) * mu[perm]
    np.testing.assert_allclose(out, want, rtol=1e-10, atol=1e-10)
    # The mixed maps carry the mixed statistics.
    np.testing.assert_allclose(out.mean((2, 3)), (lam4 * mu + (1 - lam4) * mu[perm])[..., 0, 0])
    np.testing.assert_allclose(out[3], x[3], atol=1e-10)  # lam = 1 keeps the sample


def test_mixstyle_is_identity_at_p0_and_in_eval_and_changes_training_features():
    from ensemblecv.config import ModelConfig
    from ensemblecv.models import create_model

    torch.manual_seed(0)
    plain = create_model(ModelConfig(name="resnet_mini"), num_classes=3, in_chans=3)
    x = torch.randn(6, 3, 16, 16)

    def with_mix(p):
        m = create_model(ModelConfig(name="resnet_mini", mixstyle={"p": p, "stages": [1, 2]}), 3, 3)
        m.load_state_dict(plain.state_dict())
        return m

    assert set(with_mix(1.0).state_dict()) == set(plain.state_dict())  # no parameters added
    plain.train()
    torch.manual_seed(1)
    want = plain(x)
    m0 = with_mix(0.0).train()
    torch.manual_seed(1)
    torch.testing.assert_close(m0(x), want)
    m1 = with_mix(1.0)
    plain.eval()
    m1.eval()
    torch.testing.assert_close(m1(x), plain(x))
    m1.train()
    assert not torch.allclose(m1(x), want)


def test_mixstyle_finds_timm_resnet_stages_and_checks_range():
    import timm

    from ensemblecv.models import attach_mixstyle, stage_modules

    model = timm.create_model("resnet18", num_classes=2, pretrained=False)
    assert [n for n, _ in stage_modules(model)] == ["layer1", "layer2", "layer3", "layer4"]
    attach_mixstyle(model, 0.5, 0.1, "random")  # default: stages 1-3
    assert len(model.mixstyle_layers) == 3
    with pytest.raises(ConfigError, match=r"stages \[5\] out of range.*4 stages"):
        attach_mixstyle(timm.create_model("resnet18", pretrained=False), 0.5, 0.1, "random", [5])


def test_crossdomain_partners_come_from_another_domain():
    from ensemblecv.models.mixstyle import crossdomain_partners

    torch.manual_seed(0)
    domains = torch.tensor([0, 0, 1, 1, 2, 2, 2])
    for _ in range(5):
        perm = crossdomain_partners(domains)
        assert (domains[perm] != domains).all()
    same = crossdomain_partners(torch.zeros(4, dtype=torch.long))
    assert same.shape == (4,)


def test_domain_balanced_batches():
    from ensemblecv.training.data import DomainBalancedSampler

    domains = np.array([0] * 30 + [1] * 12 + [2] * 18)
    sampler = DomainBalancedSampler(domains, batch_size=12, seed=3)
    order = [p for p, _ in sampler]
    assert len(order) == len(domains)
    for start in range(0, 48, 12):
        counts = np.bincount(domains[order[start : start + 12]], minlength=3)
        assert counts.tolist() == [4, 4, 4]
    assert order == [p for p, _ in DomainBalancedSampler(domains, 12, seed=3)]  # seeded


# -- CORAL ---------------------------------------------------------------------------


def test_coral_loss_matches_a_direct_computation():
    from ensemblecv.training.losses import coral_distance, coral_penalty

    rng = np.random.default_rng(0)
    a, b, c = rng.normal(0, 1, (7, 4)), rng.normal(1, 2, (9, 4)), rng.normal(-1, 1, (5, 4))

    def direct(u, v):
        return np.mean((u.mean(0) - v.mean(0)) ** 2) + np.mean((np.cov(u.T) - np.cov(v.T)) ** 2)

    got = coral_distance(torch.from_numpy(a), torch.from_numpy(b)).item()
    assert got == pytest.approx(direct(a, b), rel=1e-10)
    feats = torch.from_numpy(np.concatenate([a, b, c]))
    domains = torch.tensor([0] * 7 + [1] * 9 + [2] * 5)
    want = (direct(a, b) + direct(a, c) + direct(b, c)) / 3
    assert coral_penalty(feats, domains).item() == pytest.approx(want, rel=1e-6)
    assert coral_penalty(feats[:7], domains[:7]).item() == 0.0  # one domain: no penalty


# -- weight averaging ------------------------------------------------------------------


def _averager(method: str, decay: float = 0.9):
    from ensemblecv.config import WeightAveragingConfig
    from ensemblecv.training.weight_averaging import WeightAveraging

    return WeightAveraging(WeightAveragingConfig(method=method, decay=decay), epochs=4)


def test_swa_weights_are_the_mean_of_the_snapshots_and_ema_the_exponential_one():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    swa, ema = _averager("swa"), _averager("ema", decay=0.9)
    snapshots = []
    for _ in range(5):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        snapshots.append({n: p.detach().clone() for n, p in model.named_parameters()})
        swa.update(model)
        ema.update(model)
    for name in snapshots[0]:
        mean = torch.stack([s[name] for s in snapshots]).mean(0)
        torch.testing.assert_close(swa.average[name], mean)
        want = snapshots[0][name]
        for s in snapshots[1:]:
            want = 0.9 * want + 0.1 * s[name]
        torch.testing.assert_close(ema.average[name], want)
    swa.apply_to(model)
    torch.testing.assert_close(model[0].weight, swa.average["0.weight"])
    assert swa.state_dict()["count"] == 5


def test_batchnorm_statistics_are_recomputed_for_the_averaged_weights():
    from ensemblecv.training.weight_averaging import recompute_batchnorm

    model = nn.Sequential(nn.BatchNorm1d(3), nn.Dropout(0.5))
    data = [(torch.randn(8, 3) * 2 + 5,) for _ in range(4)]
    assert recompute_batchnorm(model, data) == 4
    stacked = torch.cat([b[0] for b in data])
    torch.testing.assert_close(model[0].running_mean, stacked.mean(0), rtol=1e-5, atol=1e-5)
    assert model[0].momentum == 0.1 and model.training


# -- the table -------------------------------------------------------------------------


def test_domain_table_has_a_column_per_held_out_domain_and_seed_spread(tmp_path):
    from ensemblecv.domains import seed_summary, write_domain_table
    from ensemblecv.domains.table import ORACLE, SELECTED

    root = tmp_path / "ws"
    (root / "protocol.json").parent.mkdir()
    (root / "protocol.json").write_text(json.dumps({"domains": ["a", "b"]}))
    test_acc = {"a": [0.5, 0.7, 0.8], "b": [0.4, 0.6, 0.9]}
    for d, accs in test_acc.items():
        sub = root / "domains" / d
        sub.mkdir(parents=True)
        pd.DataFrame(
            {
                "name": ["eoa", "erm_r1", "erm_r0"],
                "kind": ["ensemble", "model", "model"],
                "accuracy": [0.9, 0.8, 0.7],  # ranked by training-domain CV
                "test_accuracy": accs[::-1],
            }
        ).to_csv(sub / "leaderboard.csv", index=False)
    frame = write_domain_table(root)
    assert list(frame.columns) == ["name", "kind", "a", "b", "average", "train_cv"]
    on_disk = pd.read_csv(root / "domains.csv").set_index("name")
    assert on_disk.loc["erm_r0", "a"] == 0.5 and on_disk.loc["erm_r0", "average"] == 0.45
    assert on_disk.loc[SELECTED, "a"] == 0.8  # rank 0 on training-domain CV
    assert on_disk.loc[ORACLE, "b"] == 0.9
    summary = seed_summary(frame).set_index("family")
    assert summary.loc["erm", "seeds"] == 2
    assert summary.loc["erm", "a"] == pytest.approx(0.6)
    assert summary.loc["erm", "a_std"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
    board = pd.read_csv(root / "leaderboard.csv")
    assert board["name"].tolist()[0] == "eoa" and "test_accuracy" in board


def test_demo_tasks_are_registered():
    from ensemblecv.demo import list_demo_tasks, run_task_demo
    from ensemblecv.errors import EnsembleCVError

    assert {"classify", "domains"} <= set(list_demo_tasks())
    with pytest.raises(EnsembleCVError, match="demo task"):
        run_task_demo("detect-nothing", Path("unused"))


def test_domain_demo_configs_compare_erm_mixstyle_and_averaging(tmp_path):
    from ensemblecv.domains.demo import domain_demo_configs, family_ensembles

    configs = domain_demo_configs(tmp_path, fast=True, dataset="digits-domains", seeds=3)
    assert [c.run_name for c in configs] == ["erm", "mixstyle", "swa"]
    assert all(c.data.protocol == "leave_one_domain_out" for c in configs)
    named = family_ensembles(configs)
    assert named["ensemble_of_averages"] == ("soft_voting", ["swa_r0", "swa_r1", "swa_r2"])


def test_audit_reports_per_domain_and_warns_about_missing_classes(tmp_path):
    from ensemblecv.audit import run_audit

    root = _domain_folder(tmp_path / "data")
    result = run_audit(root, tmp_path / "audit", workers=0, progress=False, layout="domains")
    section = result.audit["domains"]
    assert set(section["domains"]) == {"art", "photo"}
    assert section["domains"]["art"]["class_counts"] == {"cat": 2, "dog": 2, "owl": 0}
    assert section["domains"]["photo"]["brightness_mean"] is not None
    assert section["missing_classes"] == {"art": ["owl"]}
    codes = [w["code"] for w in result.audit["warnings"]]
    assert codes.count("missing_domain_classes") == 1
    assert (tmp_path / "audit" / "plots" / "sample_grid_art.png").is_file()
    assert "<h2>Domains</h2>" in result.html_path.read_text(encoding="utf-8")


def test_training_with_coral_crossdomain_mixstyle_and_swa_saves_the_average(tmp_path):
    """One real fold with every option: best.ckpt holds the callback's averaged weights."""
    from ensemblecv.domains import held_out_config
    from ensemblecv.training.inputs import prepare_inputs
    from ensemblecv.training.runner import train_fold

    cfg = load_config(
        None,
        [
            "train.algorithm=coral",
            "model.mixstyle.mix=crossdomain",
            "model.mixstyle.p=1.0",
            "train.weight_averaging.start=0",
            "train.epochs=2",
        ],
        base=_lodo_config(tmp_path / "lodo").model_dump(),
    )
    sub = held_out_config(cfg, "photo")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        inputs = prepare_inputs(sub, progress=False)
    run_dir = inputs.workspace.run_dir("erm")
    run_dir.mkdir(parents=True)
    result = train_fold(sub, inputs, 0, run_dir, False, False)
    assert result.status == "done" and np.isfinite(result.val_loss)
    best = torch.load(run_dir / "fold_0" / "best.ckpt", map_location="cpu", weights_only=False)
    (state,) = [v for k, v in best["callbacks"].items() if "WeightAveraging" in k]
    assert state["count"] == best["global_step"] >= 4  # every optimizer step averaged
    for name, avg in state["average"].items():
        torch.testing.assert_close(best["state_dict"][name], avg, rtol=0, atol=0)
    last = torch.load(run_dir / "fold_0" / "last.ckpt", map_location="cpu", weights_only=False)
    conv = "model.stages.0.conv.weight"
    assert not torch.equal(best["state_dict"][conv], last["state_dict"][conv])
