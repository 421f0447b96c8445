"""task: segment, model half: models, losses, augmentation, metrics parity, the OOF map store, map ensembles."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ensemblecv.config import ModelConfig, load_config
from ensemblecv.errors import ConfigError, EnsembleCVError
from ensemblecv.tasks.segment import ensemble as ens
from ensemblecv.tasks.segment.losses import build_seg_loss, list_seg_losses
from ensemblecv.tasks.segment.metrics import confusion, scores_from_confusion, segmentation_scores
from ensemblecv.tasks.segment.models import (
    SMP_ARCHITECTURES,
    TORCHVISION_SEGMENTERS,
    create_segmenter,
    encoder_stages,
    list_segmenters,
)
from ensemblecv.tasks.segment.store import MapWriter, decode, encode, open_maps, store_side

HEAVY = {"deeplabv3_resnet101", "fcn_resnet101", "deeplabv3_resnet50", "fcn_resnet50"}


def _cfg(name: str, **kw) -> ModelConfig:
    backbone = "tu-resnet10t" if name in SMP_ARCHITECTURES else None
    return ModelConfig(name=name, backbone=backbone, **kw)


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n for n in list_segmenters()],
)
def test_every_segmenter_trains_and_writes_oof_maps(name, tmp_path):
    torch.manual_seed(0)
    model = create_segmenter(_cfg(name), 3, [0.5] * 3, [0.25] * 3)
    h, w = (128, 112) if name == "pan" else (64, 48)  # PAN pools its stride-32 map 3 more times
    x = torch.randint(0, 255, (2, 3, h, w), dtype=torch.uint8)  # not a multiple of 32
    mask = torch.randint(0, 3, (2, h, w))
    mask[:, :4] = 255
    out = model.train()(x)
    assert out["out"].shape == (2, 3, h, w)
    loss = build_seg_loss({"cross_entropy": 1.0, "dice": 0.5})(out["out"], mask)
    if "aux" in out:
        assert out["aux"].shape == (2, 3, h, w)
        loss = loss + 0.5 * build_seg_loss("cross_entropy")(out["aux"], mask)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    model.eval()
    with torch.no_grad():
        probs = model(x)["out"].softmax(1)
    writer = MapWriter(tmp_path / "oof_maps.npy", 2, 3, 16, "uint8", 255)
    for i in range(2):
        writer.add(i, probs[i], mask[i].numpy().astype(np.uint8))
    writer.close(tmp_path / "oof_confusion.json")
    stored = open_maps(tmp_path / "oof_maps.npy")
    assert stored.shape == (2, 3, 16, 16) and stored.dtype == np.uint8
    assert writer.cm["full"].sum() == (mask != 255).sum()


def test_smp_mit_encoders_refused_and_names_checked():
    with pytest.raises(ConfigError, match="non-commercial"):
        create_segmenter(ModelConfig(name="unet", backbone="mit_b0"), 3, [0] * 3, [1] * 3)
    with pytest.raises(ConfigError, match="smp architecture: set model.backbone"):
        create_segmenter(ModelConfig(name="fpn"), 3, [0] * 3, [1] * 3)
    with pytest.raises(ConfigError, match="only for the smp architectures"):
        create_segmenter(ModelConfig(name="tiny_unet", backbone="resnet18"), 3, [0] * 3, [1] * 3)
    with pytest.raises(ConfigError, match="Unknown segmentation model 'unett'.*unet"):
        create_segmenter(ModelConfig(name="unett"), 3, [0] * 3, [1] * 3)
    with pytest.raises(ConfigError, match="smp encoder"):
        create_segmenter(ModelConfig(name="unet", backbone="resnet19"), 3, [0] * 3, [1] * 3)


def test_timm_encoder_under_smp_and_freeze_and_batchnorm():
    model = create_segmenter(
        ModelConfig(name="fpn", backbone="tu-resnet10t", freeze=2, batchnorm="freeze_stats"),
        4, [0] * 3, [1] * 3,
    )  # fmt: skip
    stages = encoder_stages(model)
    frozen = [p for g in stages[:2] for m in g for p in m.parameters()]
    assert frozen and not any(p.requires_grad for p in frozen)
    later = [p for g in stages[2:] for m in g for p in m.parameters()]
    assert all(p.requires_grad for p in later)
    assert model(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))["out"].shape == (1, 4, 32, 32)
    with pytest.raises(ConfigError, match="has only"):
        create_segmenter(ModelConfig(name="tiny_unet", freeze=9), 2, [0] * 3, [1] * 3)


def test_torchvision_offline_pretrained_fails_clearly(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import ensemblecv.tasks.detect.models as dm

    monkeypatch.setattr(dm, "_download_ok", lambda url: False)
    with pytest.raises(ConfigError, match="cannot be reached"):
        create_segmenter(
            ModelConfig(name="lraspp_mobilenet_v3_large", pretrained=True), 3, [0] * 3, [1] * 3
        )


@pytest.mark.parametrize("name", list_seg_losses())
def test_losses_ignore_the_ignore_index(name):
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 8, 8, requires_grad=True)
    mask = torch.randint(0, 3, (2, 8, 8))
    mask[:, :, :3] = 255
    loss = build_seg_loss(name)(logits, mask)
    assert torch.isfinite(loss)
    loss.backward()
    assert logits.grad[..., :3].abs().max() == 0  # ignored pixels get no gradient
    assert logits.grad[..., 3:].abs().max() > 0
    # and changing the logits there changes nothing
    other = logits.detach().clone()
    other[..., :3] = torch.randn_like(other[..., :3]) * 10
    assert torch.allclose(build_seg_loss(name)(other, mask), loss.detach(), atol=1e-5)


def test_weighted_loss_is_the_weighted_sum_and_unknown_names_fail():
    logits, mask = torch.randn(1, 3, 6, 6), torch.randint(0, 3, (1, 6, 6))
    both = build_seg_loss({"cross_entropy": 0.3, "lovasz": 2.0})(logits, mask)
    parts = 0.3 * build_seg_loss("cross_entropy")(logits, mask) + 2.0 * build_seg_loss("lovasz")(
        logits, mask
    )
    assert torch.allclose(both, parts)
    with pytest.raises(ConfigError, match="Unknown segmentation loss 'dise'.*dice"):
        build_seg_loss("dise")


# ----------------------------------------------------------------- metrics


def _reference_torchvision(truth, pred, k):
    """torchvision references/segmentation/utils.py ConfusionMatrix, verbatim arithmetic."""
    a, b = torch.as_tensor(truth).flatten(), torch.as_tensor(pred).flatten()
    keep = (a >= 0) & (a < k)
    inds = k * a[keep].to(torch.int64) + b[keep]
    h = torch.bincount(inds, minlength=k**2).reshape(k, k).float()
    acc_global = torch.diag(h).sum() / h.sum()
    iu = torch.diag(h) / (h.sum(1) + h.sum(0) - torch.diag(h))
    return acc_global.item(), iu.numpy()


def test_miou_parity_with_torchvision_reference_and_torchmetrics():
    from torchmetrics.classification import MulticlassJaccardIndex

    rng = np.random.default_rng(0)
    k = 5  # class 4 absent from truth and prediction; class 3 only predicted
    truths = [rng.integers(0, 3, (20, 30)).astype(np.uint8) for _ in range(4)]
    preds = [np.where(rng.random(t.shape) < 0.7, t, rng.integers(0, 4, t.shape)) for t in truths]
    for t in truths:
        t[:2] = 255  # void border, ignored
    ours = segmentation_scores(truths, preds, k)
    acc, iu = _reference_torchvision(np.stack(truths), np.stack(preds), k)
    assert np.isclose(ours["pixel_acc"], acc)
    assert np.isnan(ours["iou"][4]) and np.isnan(iu[4])  # absent class: no IoU, not 0 or 1
    assert np.allclose(ours["iou"][:4], iu[:4])
    assert ours["iou"][3] == 0.0  # predicted but never true: IoU 0, counted
    assert np.isclose(ours["miou"], np.nanmean(iu))
    tm = MulticlassJaccardIndex(k, ignore_index=255, average="macro")
    t_all = torch.as_tensor(np.stack(truths).astype(np.int64))
    p_all = torch.as_tensor(np.stack(preds).astype(np.int64))
    assert np.isclose(ours["miou"], float(tm(p_all, t_all)), atol=1e-6)
    per = MulticlassJaccardIndex(k, ignore_index=255, average="none")(p_all, t_all).numpy()
    assert np.allclose(ours["iou"][:4], per[:4], atol=1e-6)


def test_confusion_is_dataset_level_not_mean_of_images():
    t1, p1 = np.zeros((2, 2), np.uint8), np.zeros((2, 2), np.uint8)
    t2 = np.array([[1, 1], [1, 1]], np.uint8)
    p2 = np.array([[1, 0], [0, 0]], np.uint8)
    s = segmentation_scores([t1, t2], [p1, p2], 2)
    # class 0: tp 4, fp 3 -> 4/7; class 1: tp 1, fn 3 -> 1/4
    assert np.isclose(s["miou"], (4 / 7 + 1 / 4) / 2)
    assert s["confusion"].tolist() == [[4, 0], [3, 1]]
    assert np.isnan(scores_from_confusion(np.zeros((2, 2)))["miou"])


# ----------------------------------------------------------------- store


def test_store_budget_fits_the_target():
    side = store_side(21, 49152, "uint8")
    per_image = 21 * side * side
    assert per_image * 1000 <= 50e6
    assert store_side(21, 49152, "float16") < side
    assert store_side(5, 49152, "uint8", size=20) == 20


def test_encode_decode_round_trip():
    p = torch.rand(4, 6, 6)
    p = p / p.sum(0, keepdim=True)
    for dtype, tol in (("uint8", 2 / 255), ("float16", 1e-3)):
        back = decode(encode(p, dtype))
        assert back.dtype == np.float32 and np.abs(back - p.numpy()).max() <= tol
        assert np.allclose(back.sum(0), 1, atol=1e-5)


def test_stored_maps_score_close_to_full_resolution(tmp_path):
    """Smooth (model-like) probabilities of 60x80 images stored at 30x30 keep mIoU close."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    k, n = 4, 6
    writer = MapWriter(tmp_path / "m.npy", n, k, 30, "uint8", 255)
    for i in range(n):
        logits = F.interpolate(torch.randn(1, k, 4, 5) * 4, size=(60, 80), mode="bilinear")[0]
        truth = logits.argmax(0).numpy().astype(np.uint8)
        flip = torch.rand(60, 80) < 0.1
        truth[flip.numpy()] = 255
        writer.add(i, logits.softmax(0), truth)
    writer.close(tmp_path / "c.json")
    full = scores_from_confusion(writer.cm["full"])["miou"]
    stored = scores_from_confusion(writer.cm["stored"])["miou"]
    assert full == pytest.approx(1.0)  # truth is the full-resolution argmax here
    print("stored vs full mIoU", stored, full)
    assert abs(full - stored) < 0.03  # regions ~15 px wide, stored at ~2.3 px per cell
    assert (tmp_path / "m.npy").stat().st_size <= 128 + n * k * 30 * 30


# ----------------------------------------------------------------- ensembles


def _members(rng, n=12, k=3, s=6, m=3):
    truth = rng.integers(0, k, (n, s, s)).astype(np.uint8)
    truth[:, 0] = 255
    maps = []
    for j in range(m):
        noise = rng.random((n, k, s, s)).astype(np.float32) * (1 + j)
        onehot = np.eye(k, dtype=np.float32)[np.minimum(truth, k - 1)].transpose(0, 3, 1, 2)
        p = onehot * 1.5 + noise
        maps.append(p / p.sum(1, keepdims=True))
    return maps, truth


def test_mean_and_geometric_mean_match_direct_computation():
    maps, truth = _members(np.random.default_rng(0))
    mean = ens.MapMean().fit(maps, truth).predict_proba(maps)
    assert np.allclose(mean, np.mean(maps, axis=0), atol=1e-6)
    weighted = ens.MapMean(weights=[1, 0, 3]).fit(maps).predict_proba(maps)
    assert np.allclose(weighted, 0.25 * maps[0] + 0.75 * maps[2], atol=1e-6)
    geo = ens.MapGeometricMean().fit(maps).predict_proba(maps)
    direct = np.exp(np.mean([np.log(m + 1e-4) for m in maps], axis=0))
    assert np.allclose(geo, direct / direct.sum(1, keepdims=True), atol=1e-5)
    with pytest.raises(EnsembleCVError, match="do not fit 3 members"):
        ens.MapMean(weights=[1, 2]).fit(maps)


def test_greedy_prefers_the_best_member_and_tracks_its_score():
    rng = np.random.default_rng(1)
    maps, truth = _members(rng)
    k = maps[0].shape[1]
    perfect = np.eye(k, dtype=np.float32)[np.minimum(truth, k - 1)].transpose(0, 3, 1, 2)
    fitted = ens.MapGreedy(n_iterations=5).fit([maps[2], perfect, maps[1]], truth)
    assert fitted.indices_[0] == 1 and fitted.weights_[1] == 1.0
    assert fitted.trajectory_[0] == pytest.approx(1.0)
    geo = ens.MapGreedyGeometric(n_iterations=5).fit([maps[2], perfect], truth)
    assert geo.weights_.tolist() == [0.0, 1.0]


def test_nested_scoring_equals_a_manual_loop():
    rng = np.random.default_rng(2)
    maps, truth = _members(rng, n=12)
    masks = list(truth)  # full size = stored size here
    fold_of = np.arange(12) % 3
    method = ens.MapGreedy(n_iterations=4)
    cm = ens.nested_map_confusion(method, maps, truth, fold_of, masks, 3, 255)
    manual = np.zeros((3, 3), np.int64)
    for f in range(3):
        inner, outer = fold_of != f, fold_of == f
        w = ens.MapGreedy(n_iterations=4).fit([m[inner] for m in maps], truth[inner]).weights_
        pred = sum(wi * m[outer] for wi, m in zip(w, maps)).argmax(1)
        manual += confusion(truth[outer], pred, 3, 255)
    assert (cm == manual).all()


# ----------------------------------------------------------------- augmentation, recipe


def test_joint_augmentation_moves_the_mask_and_fills_void():
    from ensemblecv.config import AugmentConfig
    from ensemblecv.tasks.segment.augment import build_mask_transform

    image = np.zeros((16, 16, 3), np.uint8)
    image[:, :4] = 200
    mask = np.zeros((16, 16), np.uint8)
    mask[:, :4] = 2
    flip = build_mask_transform(AugmentConfig(ops=[{"name": "hflip", "p": 1.0}]), 16, 255)
    img, m = flip(image, mask, seed=0)
    assert (m[:, -4:] == 2).all() and (img[:, -4:] == 200).all() and (m[:, :-4] == 0).all()
    spec = {"name": "rotate", "limit": 45, "border": "constant", "p": 1.0}
    rot = build_mask_transform(AugmentConfig(ops=[spec]), 16, 255)
    _, m = rot(image, np.ones((16, 16), np.uint8), seed=3)
    assert set(np.unique(m)) <= {1, 255} and (m == 255).any()  # new corners are void
    ref = build_mask_transform(AugmentConfig(preset="reference"), 16, 255)
    a = ref(image, mask, seed=7)
    b = ref(image, mask, seed=7)
    assert (a[1] == b[1]).all() and a[0].shape == (16, 16, 3)
    with pytest.raises(ConfigError, match="moves pixels without moving the mask"):
        build_mask_transform(AugmentConfig(ops=[{"name": "randaugment"}]), 16, 255)
    with pytest.raises(ConfigError, match="not a segmentation preset"):
        build_mask_transform(AugmentConfig(preset="sketch"), 16, 255)


def test_torchvision_recipe_fills_unset_keys_and_poly_schedule():
    from ensemblecv.tasks import resolve_config
    from ensemblecv.training.optim import _poly_with_warmup

    base = {
        "task": "segment", "data": {"train": "x", "image_size": 32},
        "model": {"name": "tiny_unet"}, "train": {"lr": 0.005},
        "segment": {"recipe": "torchvision"},
    }  # fmt: skip
    cfg = resolve_config(load_config(None, [], base=base))
    assert cfg.train.optimizer == "sgd" and cfg.train.scheduler == "poly"
    assert cfg.train.lr == 0.005  # set by the user: kept
    assert cfg.augment.preset == "reference" and cfg.segment.aux_weight == 0.5
    f = _poly_with_warmup(100, 0, 0.9)
    assert f(0) == 1.0 and f(50) == pytest.approx(0.5**0.9) and f(100) == 0.0
    with pytest.raises(ConfigError, match="center_crop"):
        resolve_config(load_config(None, ["data.resize=center_crop"], base=base))
    with pytest.raises(ConfigError, match="image_size is unset"):
        resolve_config(load_config(None, ["data.image_size=null"], base=base))


def test_segment_task_is_registered():
    from ensemblecv.tasks import get_task, task_info

    info = task_info("segment")
    assert info.monitor == "val_miou" and info.mode == "max"
    task = get_task("segment")
    for hook in ("build_ensembles", "leaderboard_view", "predict", "build_report"):
        assert callable(getattr(task, hook))
    assert set(TORCHVISION_SEGMENTERS) <= set(list_segmenters())
