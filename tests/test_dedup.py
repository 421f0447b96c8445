"""Dedup: planted exact, flipped, resized and cross-class copies in a tiny generated set."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from PIL import Image
from scipy.ndimage import gaussian_filter
from typer.testing import CliRunner

from ensemblecv.data.folds import make_folds
from ensemblecv.data.samples import load_samples
from ensemblecv.dedup import (
    apply_groups,
    cleaned_index,
    find_duplicates,
    leakage_report,
    phash_pair,
    write_outputs,
)
from ensemblecv.dedup.groups import mark_keep
from ensemblecv.errors import DataError
from ensemblecv.workspace import prepare_workspace

CLASSES = ("a", "b", "c")
KINDS = ("exact", "flip", "resize", "cross")


def _smooth(rng: np.random.Generator, side: int = 32) -> np.ndarray:
    """A smooth random image with an off-centre block (so it is not mirror-symmetric)."""
    base = (rng.random((5, 5)) * 255).astype(np.uint8)
    a = np.asarray(Image.fromarray(base).resize((side, side), Image.BICUBIC)).astype(np.int16)
    x0, y0 = rng.integers(0, side - 10, 2)
    a[y0 : y0 + 8, x0 : x0 + 5] = rng.integers(0, 255)
    return np.clip(a, 0, 255).astype(np.uint8)


def _make(root: Path, per_class: int = 20, n_plant: int = 4, seed: int = 0) -> list[tuple]:
    """60 originals in 3 classes + planted copies; returns (sample a, sample b, kind) truth."""
    rng = np.random.default_rng(seed)
    origs = []
    for c in CLASSES:
        (root / c).mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            p = root / c / f"img{k:03d}.png"
            Image.fromarray(_smooth(rng)).save(p)
            origs.append((c, p))
    truth = []
    picks = iter(rng.permutation(len(origs)))
    for kind in KINDS:
        for m in range(n_plant):
            c, p = origs[next(picks)]
            arr = np.asarray(Image.open(p))
            q = root / c / f"copy_{kind}{m}.png"
            if kind == "exact":
                shutil.copyfile(p, q)
            elif kind == "flip":
                Image.fromarray(arr[:, ::-1].copy()).save(q)
            elif kind == "resize":
                side = 48 if m % 2 else 24
                Image.fromarray(arr).resize((side, side), Image.BICUBIC).save(q)
            else:  # the same picture, re-encoded with noise, filed under another class
                q = root / [x for x in CLASSES if x != c][m % 2] / f"copy_cross{m}.png"
                noise = rng.integers(-2, 3, arr.shape)
                Image.fromarray(np.clip(arr.astype(int) + noise, 0, 255).astype(np.uint8)).save(q)
            truth.append((p.relative_to(root).as_posix(), q.relative_to(root).as_posix(), kind))
    return truth


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    root = tmp_path_factory.mktemp("dedup") / "data"
    truth = _make(root)
    return root, truth


def _pred_pairs(members: pd.DataFrame) -> set[tuple[str, str]]:
    out = set()
    for _, g in members.groupby("group"):
        out |= set(itertools.combinations(sorted(g["sample_id"]), 2))
    return out


def _snapshot(root: Path) -> dict:
    return {
        p.as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_phash_resize_and_flip_invariance():
    rng = np.random.default_rng(1)
    a = _smooth(rng)
    h0, h1 = phash_pair(a)
    big = np.asarray(Image.fromarray(a).resize((64, 64), Image.BICUBIC))
    assert bin(h0 ^ phash_pair(big)[0]).count("1") <= 4
    assert phash_pair(a[:, ::-1].copy())[0] == h1


def test_recall_precision_and_kinds(planted):
    root, truth = planted
    table = load_samples(root)
    result = find_duplicates(table, flip_invariant=True)
    pred = _pred_pairs(result.members)
    want = {tuple(sorted(t[:2])) for t in truth}
    assert want <= pred  # recall 1 on every kind
    assert len(pred & want) / len(pred) >= 0.9
    kind = result.members.groupby("group")["kind"].first()
    group_of = dict(zip(result.members["sample_id"], result.members["group"]))
    for a, _b, k in truth:
        assert kind[group_of[a]] == ("cross_class" if k == "cross" else "within_class")
    within = result.members[result.members["kind"] == "within_class"]
    assert (within.groupby("group")["keep"].sum() == 1).all()
    assert result.stats["cross_class_groups"] == 4


def test_flips_not_found_without_flip_invariance(planted):
    root, truth = planted
    result = find_duplicates(load_samples(root), flip_invariant=False)
    pred = _pred_pairs(result.members)
    for a, b, k in truth:
        assert (tuple(sorted((a, b))) in pred) == (k != "flip")


def test_outputs_apply_policies_and_sources_unchanged(planted, tmp_path):
    root, truth = planted
    before = _snapshot(root)
    table = load_samples(root)
    result = find_duplicates(table, flip_invariant=True, conflicts="flag")
    summary = write_outputs(result, table, tmp_path / "out", {}, apply=True, conflicts="flag")
    assert _snapshot(root) == before
    out = tmp_path / "out"
    dup = pd.read_csv(out / "duplicates.csv")
    assert list(dup.columns) == [
        "group",
        "kind",
        "sample_id",
        "path",
        "class_name",
        "similarity",
        "keep",
    ]
    assert "data:image/png;base64," in (out / "gallery.html").read_text()
    assert json.loads((out / "summary.json").read_text())["cleaned"]["conflict_policy"] == "flag"
    cleaned = pd.read_csv(out / "cleaned.csv", keep_default_na=False)
    excluded = pd.read_csv(out / "excluded.csv")
    # one member per redundant group dropped (12 within-class pairs), conflicts kept and flagged
    assert len(cleaned) == len(table) - 12 and len(excluded) == 12
    assert (cleaned["flag"] == "label_conflict").sum() == 8
    assert summary["classes_below_k"] == {}
    dropped = cleaned_index(table, result.members.assign(keep=mark_keep(result.members, "drop")))
    assert len(dropped) == len(table) - 12 - 8
    # a cleaned class below K is reported
    low = write_outputs(result, table, tmp_path / "low", {}, min_per_class=30)
    assert set(low["classes_below_k"]) == set(CLASSES)
    with pytest.raises(DataError, match="inside the dataset folder"):
        write_outputs(result, table, root / "out", {})
    with pytest.raises(DataError, match="flag, drop, keep"):
        find_duplicates(table, conflicts="delete")


def test_groups_never_straddle_folds_and_leakage(planted, tmp_path):
    root, truth = planted
    table = load_samples(root)
    result = find_duplicates(table, flip_invariant=True)
    write_outputs(result, table, tmp_path / "dd", {})
    # plain workspace: exact copies are grouped, near copies may leak across folds
    ws = prepare_workspace(tmp_path / "ws", table, folds=3, workers=0)
    folds = ws.load_folds().set_index("sample_id")["fold"]
    expected = set()
    for a, b, _ in truth:
        if folds[a] != folds[b]:
            expected |= {a, b}
    assert expected  # the planted near copies do straddle folds here
    rep = leakage_report(ws.root, tmp_path / "dd")
    assert rep["leaked"] == len(expected)
    assert sum(f["leaked"] for f in rep["folds"]) == len(expected)
    assert leakage_report(ws.root, flip_invariant=True)["leaked"] >= len(expected)
    # grouped: every duplicate group in one fold, no leak left
    grouped = apply_groups(table, tmp_path / "dd")
    fold_table = make_folds(grouped, k=3, seed=0).set_index("sample_id")["fold"]
    for _, g in result.members.groupby("group"):
        assert fold_table[g["sample_id"]].nunique() == 1
    ws2 = prepare_workspace(tmp_path / "ws2", grouped, folds=3, workers=0)
    assert leakage_report(ws2.root, tmp_path / "dd")["leaked"] == 0


def test_cli(planted, tmp_path):
    from ensemblecv.cli.dedup_commands import register

    root, _ = planted
    app = typer.Typer()
    register(app)
    runner = CliRunner()
    res = runner.invoke(
        app,
        [
            "dedup",
            str(root),
            "--out",
            str(tmp_path / "o"),
            "--flip-invariant",
            "--apply",
            "--workers",
            "0",
            "--conflicts",
            "drop",
        ],  # fmt: skip
    )
    assert res.exit_code == 0, res.output
    assert (tmp_path / "o" / "cleaned.csv").is_file()
    assert "cross class groups" in res.output
    ws = prepare_workspace(tmp_path / "ws", load_samples(root), folds=3, workers=0)
    res = runner.invoke(app, ["audit-leakage", str(ws.root), "--dedup", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    assert "Leakage" in res.output


def test_embedding_candidates_and_cross_class_rule():
    from ensemblecv.dedup.search import _confirm, embedding_candidates

    rng = np.random.default_rng(0)
    emb = rng.normal(size=(50, 16)).astype(np.float32)
    emb[7] = emb[3] + 0.01
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    cand = embedding_candidates(emb, min_cosine=0.95, top_k=3, block=16)
    assert list(zip(cand["i"], cand["j"])) == [(3, 7)]
    labels = np.array([0] * 50)
    labels[7] = 1
    low_ssim = np.array([0.5])
    assert _confirm(cand, labels, low_ssim, 0.95, 0.99).tolist() == [True]  # cross: cosine alone
    labels[7] = 0
    assert _confirm(cand, labels, low_ssim, 0.95, 0.99).tolist() == [False]  # within: needs SSIM


def test_timm_embedder_runs(planted):
    from ensemblecv.dedup.search import embed_images

    root, _ = planted
    paths = [str(p) for p in sorted(root.rglob("*.png"))[:4]]
    emb = embed_images(paths, "test_resnet")
    assert emb.shape[0] == 4 and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    with pytest.raises(DataError, match="needs --workspace"):
        embed_images(paths, "run:cnn")


def test_resize_invariant_finds_blurred_rescaled_copy(tmp_path):
    """A copy shrunk to 60% and enlarged again loses detail: found only with resize invariance."""
    rng = np.random.default_rng(3)
    root = tmp_path / "d"
    (root / "a").mkdir(parents=True)
    for k in range(8):
        big = np.asarray(Image.fromarray(_smooth(rng, 16)).resize((32, 32), Image.NEAREST))
        Image.fromarray(big).save(root / "a" / f"img{k}.png")
    small = Image.open(root / "a" / "img0.png").resize((19, 19), Image.BILINEAR)
    small.resize((32, 32), Image.BILINEAR).save(root / "a" / "copy.png")
    table = load_samples(root)
    pair = ("a/copy.png", "a/img0.png")
    plain = _pred_pairs(find_duplicates(table, resize_invariant=False).members)
    invariant = _pred_pairs(find_duplicates(table).members)  # resize invariance is the default
    assert pair in invariant and invariant == {pair}
    assert pair not in plain


def _garments(n: int, rng: np.random.Generator, side: int = 28) -> list[np.ndarray]:
    """``n`` Fashion-MNIST-like images: one garment silhouette, each with its own fine texture.

    Alike at low resolution (blurred, most of them pass SSIM 0.95 against
    some other), distinct in detail — the plain-T-shirt case.
    """
    yy, xx = np.mgrid[:side, :side]
    body = (np.abs(xx - side / 2 + 0.5) < 8) & (yy > 4) & (yy < side - 4)
    sleeves = (yy > 4) & (yy < 10) & (np.abs(xx - side / 2 + 0.5) < 12)
    shade = np.asarray(Image.fromarray(rng.random((4, 4)) * 90).resize((side, side), Image.BICUBIC))
    base = gaussian_filter((body | sleeves) * 120.0 + 30, 1.0) + shade
    out = []
    for _ in range(n):
        noise = rng.normal(0, 14, (side, side))
        texture = noise - gaussian_filter(noise, 1.5)  # fine detail only: the pHash barely moves
        out.append(np.clip(base + texture + rng.normal(0, 2), 0, 255).astype(np.uint8))
    return out


def _shrunk(a: np.ndarray, side: int = 20) -> np.ndarray:
    small = Image.fromarray(a).resize((side, side), Image.BILINEAR)
    return np.asarray(small.resize(a.shape[::-1], Image.BILINEAR))


def _make_garments(root: Path) -> tuple[list[tuple], dict]:
    """40 similar garments (+ 30 of another class); planted: 6 resized, 3 flipped, 3 exact copies."""
    rng = np.random.default_rng(5)
    imgs = {"shirt": _garments(40, rng), "coat": _garments(30, rng, 28)[::-1]}
    for c, arrs in imgs.items():
        (root / c).mkdir(parents=True)
        for k, a in enumerate(arrs):
            Image.fromarray(a).save(root / c / f"img{k:03d}.png")
    truth = []
    for m, (c, k) in enumerate([("shirt", 0), ("shirt", 7), ("shirt", 21), ("coat", 3)]):
        Image.fromarray(_shrunk(imgs[c][k])).save(root / c / f"copy_resize{m}.png")
        truth.append((f"{c}/img{k:03d}.png", f"{c}/copy_resize{m}.png", "resize"))
    for m, (c, k) in enumerate([("shirt", 30), ("coat", 12)]):  # 28 → 16 → 28
        Image.fromarray(_shrunk(imgs[c][k], 16)).save(root / c / f"copy_resize16_{m}.png")
        truth.append((f"{c}/img{k:03d}.png", f"{c}/copy_resize16_{m}.png", "resize"))
    for m, (c, k) in enumerate([("shirt", 2), ("shirt", 14), ("coat", 20)]):
        Image.fromarray(imgs[c][k][:, ::-1].copy()).save(root / c / f"copy_flip{m}.png")
        truth.append((f"{c}/img{k:03d}.png", f"{c}/copy_flip{m}.png", "flip"))
    for m, (c, k) in enumerate([("shirt", 5), ("shirt", 33), ("coat", 8)]):
        shutil.copyfile(root / c / f"img{k:03d}.png", root / c / f"copy_exact{m}.png")
        truth.append((f"{c}/img{k:03d}.png", f"{c}/copy_exact{m}.png", "exact"))
    return truth, imgs


@pytest.fixture(scope="module")
def garments(tmp_path_factory):
    root = tmp_path_factory.mktemp("garments") / "data"
    return (root, *_make_garments(root))


def test_resized_copies_among_similar_images_recall_and_precision(garments):
    """Resize invariance finds shrunk-and-enlarged copies without merging look-alikes."""
    root, truth, imgs = garments
    # the set is hard: blurring both sides (the old resize test) matches distinct garments
    from ensemblecv.dedup.search import batch_ssim, resized_ssim

    th = np.stack(
        [np.asarray(Image.fromarray(a).resize((32, 32), Image.LANCZOS)) for a in imgs["shirt"]]
    )
    i, j = np.triu_indices(len(th), 1)
    soft = gaussian_filter(th.astype(np.float32), (0, 1, 1))
    assert (batch_ssim(soft[i], soft[j]) >= 0.95).sum() >= 50
    assert resized_ssim(th, i, j).max() < 0.95  # one side blurred: look-alikes stay apart
    table = load_samples(root)
    result = find_duplicates(table, flip_invariant=True)
    pred = _pred_pairs(result.members)
    want = {tuple(sorted(t[:2])) for t in truth}
    assert want <= pred  # recall 1 on resized (two scales), flipped and exact copies
    assert pred == want  # precision 1: no look-alike joins a group
    assert result.members.groupby("group").size().max() == 2
    # a shrunk copy also looks like other garments once they are blurred; connected components
    # of the confirmed pairs would chain those into one group, complete linkage does not
    from ensemblecv.dedup.search import union_find

    pairs_i, pairs_j = result.pairs["i"].to_numpy(), result.pairs["j"].to_numpy()
    assert np.bincount(union_find(len(table), pairs_i, pairs_j)).max() > 3
    methods = set(result.pairs["method"])
    assert {"exact", "phash", "phash_resized"} <= methods
    # without resize invariance the resized copies are missed, the others still found
    plain = _pred_pairs(find_duplicates(table, flip_invariant=True, resize_invariant=False).members)
    assert plain == {tuple(sorted(t[:2])) for t in truth if t[2] != "resize"}


def test_near_duplicate_groups_do_not_chain(planted):
    """A~B and B~C with A, C not matching: never one group; exact copies join transitively."""
    from ensemblecv.dedup import build_groups
    from ensemblecv.dedup.search import cluster_pairs

    e = np.empty(0, dtype=np.int64)
    chain = cluster_pairs(3, e, e, np.array([0, 1]), np.array([1, 2]), np.array([0.99, 0.97]))
    assert chain[0] == chain[1] >= 0 and chain[2] == -1  # C stays out: it does not match A
    chain = cluster_pairs(3, e, e, np.array([0, 1]), np.array([1, 2]), np.array([0.97, 0.99]))
    assert chain[1] == chain[2] >= 0 and chain[0] == -1  # the better pair wins B
    tri = cluster_pairs(3, e, e, np.array([0, 1, 0]), np.array([1, 2, 2]), np.ones(3) * 0.98)
    assert tri[0] == tri[1] == tri[2] >= 0  # all three match each other: one group
    # 0 = 3 exact copies; 0~1 near; 1~2 near, 2 matches neither 0 nor 3
    ex = cluster_pairs(5, np.array([0]), np.array([3]), np.array([0, 1]), np.array([1, 2]),
                       np.array([0.99, 0.98]))  # fmt: skip
    assert ex[0] == ex[3] == ex[1] >= 0 and ex[2] == -1 and ex[4] == -1
    # a long chain of look-alikes 0~1~2~...~9 (each only like its neighbours)
    k = np.arange(9)
    long = cluster_pairs(10, e, e, k, k + 1, np.linspace(0.99, 0.96, 9))
    assert pd.Series(long[long >= 0]).value_counts().max() == 2
    # through build_groups on a sample table
    root, _ = planted
    table = load_samples(root)
    pairs = pd.DataFrame(
        {"i": [0, 1, 5], "j": [1, 2, 6], "method": ["phash", "phash", "exact"],
         "similarity": [0.99, 0.97, 1.0]}
    )  # fmt: skip
    members = build_groups(table, pairs)
    sid = table.frame["sample_id"].to_numpy()
    assert _pred_pairs(members) == {
        tuple(sorted((sid[0], sid[1]))),
        tuple(sorted((sid[5], sid[6]))),
    }


def test_config_groups_reach_the_fold_table(tmp_path):
    """data.groups (a dedup duplicates.csv) makes near-duplicates share a fold in training's workspace."""
    import numpy as np
    import pandas as pd
    from PIL import Image

    from ensemblecv.config import load_config
    from ensemblecv.training.inputs import open_workspace

    root = tmp_path / "data"
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(8):
            Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).save(
                root / c / f"{i}.png"
            )
    pairs = [("a/0.png", "a/1.png"), ("b/2.png", "b/3.png"), ("a/4.png", "a/5.png")]
    rows = []
    for g, (x, y) in enumerate(pairs):
        for sid in (x, y):
            rows.append(
                {
                    "group": g,
                    "kind": "within_class",
                    "sample_id": sid,
                    "path": str(root / sid),
                    "class_name": sid[0],
                    "similarity": 0.99,
                    "keep": sid == x,
                }
            )
    dup = tmp_path / "dedup" / "duplicates.csv"
    dup.parent.mkdir()
    pd.DataFrame(rows).to_csv(dup, index=False)
    cfg = load_config(
        None,
        [],
        base={
            "workspace": str(tmp_path / "ws"),
            "tracking": "none",
            "data": {"train": str(root), "folds": 4, "groups": str(dup)},
        },
    )
    ws = open_workspace(cfg, progress=False)
    folds = ws.load_folds().set_index("sample_id")["fold"]
    for x, y in pairs:
        assert folds[x] == folds[y]


def test_audit_forecasts_classes_left_too_small_by_cleaning(tmp_path):
    import json

    import numpy as np
    import pandas as pd
    from PIL import Image

    from ensemblecv.audit import run_audit

    root = tmp_path / "data"
    rng = np.random.default_rng(1)
    for c, n in (("big", 8), ("small", 4)):
        (root / c).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).save(
                root / c / f"{i}.png"
            )
    rows = [  # three of "small"'s four images are one near-duplicate group: cleaning keeps one
        {
            "group": 0,
            "kind": "within_class",
            "sample_id": f"small/{i}.png",
            "path": str(root / f"small/{i}.png"),
            "class_name": "small",
            "similarity": 0.99,
            "keep": i == 0,
        }
        for i in range(3)
    ]
    dup = tmp_path / "dup.csv"
    pd.DataFrame(rows).to_csv(dup, index=False)
    result = run_audit(
        str(root), tmp_path / "audit", workers=0, min_per_class=3, progress=False, dedup=dup
    )
    forecast = json.loads(result.json_path.read_text())["cleaning_forecast"]
    assert forecast["classes_below_k"] == {"small": {"before": 4, "after": 2}}
    assert "would leave 1 class" in result.html_path.read_text()
