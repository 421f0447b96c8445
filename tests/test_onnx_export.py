"""``ensemblecv export``: one ONNX graph that gives ``predict``'s probabilities.

(``test_export.py`` is about ``datasets export``, writing datasets as PNGs.)

A real two-run workspace is trained for a few seconds (tests/ship_fixtures.py);
the PyTorch graph is checked against ``predict`` for every ensemble rule, and
the ONNX file (through ONNX Runtime and through the standalone script) against
``predict`` for stacking — both runs, fold models and a refit, and a fitted
meta-learner baked in.
"""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import make_image
from PIL import Image
from ship_fixtures import exported, new_images, trained_workspace

from ensemblecv.errors import EnsembleCVError

pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py

STANDALONE = Path(__file__).parents[1] / "src" / "ensemblecv" / "shipping" / "standalone.py"


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    return trained_workspace(tmp_path_factory)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    return new_images(tmp_path_factory)


@pytest.fixture(scope="module")
def predicted(ws, images):
    """``predict``'s probabilities for the new images, per ensemble name (computed on demand)."""
    from ensemblecv.inference import predict

    cache: dict[str, tuple[list[str], np.ndarray]] = {}

    def get(name: str):
        if name not in cache:
            frame, probs, table, _ = predict(ws, str(images), name)
            cache[name] = (list(table.frame["path"]), probs)
        return cache[name]

    return get


def _pixels(built, paths: list[str]) -> np.ndarray:
    from ensemblecv.shipping import Preprocessor

    prep = Preprocessor(built.input)
    return np.stack([prep(Path(p).read_bytes(), Path(p).name).pixels for p in paths])


@pytest.mark.slow  # trains the shared workspace (seconds) once per session
def test_every_rule_in_torch_equals_predict(ws, predicted):
    from ensemblecv.shipping import build_ensemble

    names = sorted(p.stem for p in (ws / "ensembles").glob("*.yaml"))
    methods = {
        yaml.safe_load((ws / "ensembles" / f"{n}.yaml").read_text())["method"] for n in names
    }
    assert {"single", "stacking", "hard_voting", "geometric_mean", "weighted_average"} <= methods
    for name in names:
        built = build_ensemble(ws, name)
        paths, want = predicted(name)
        with torch.inference_mode():
            got, members = built.graph(torch.from_numpy(_pixels(built, paths)))
        np.testing.assert_allclose(got.numpy(), want, atol=1e-5, err_msg=name)
        assert members.shape == (len(paths), len(built.members), want.shape[1])
        np.testing.assert_allclose(got.numpy().sum(1), 1.0, atol=1e-5)


@pytest.mark.slow  # trains the shared workspace (seconds) once per session
def test_members_are_fold_models_or_the_refit(ws):
    from ensemblecv.shipping import build_ensemble

    built = build_ensemble(ws, "stacking")
    by_name = {m.name: m for m in built.members}
    assert by_name["a"].checkpoints == ["runs/a/fold_0/best.ckpt", "runs/a/fold_1/best.ckpt"]
    assert by_name["b"].checkpoints == ["runs/b/full/last.ckpt"]
    assert built.input.to_dict() | {} == {
        "name": "images",
        "dtype": "uint8",
        "layout": "NHWC",
        "height": 16,
        "width": 16,
        "channels": 1,
        "resize": "letterbox",
        "interpolation": "auto",
        "crop_pct": None,
    }


@pytest.mark.slow  # trains the shared workspace (seconds) once per session
def test_onnx_runtime_equals_predict(tmp_path_factory, ws, predicted):
    import onnxruntime as ort

    from ensemblecv.shipping import OPSET, build_ensemble, read_model_info

    path, output = exported(tmp_path_factory, "stacking")
    assert "max |diff|" in output and "opset 18" in output
    info = json.loads(path.with_name("model.json").read_text())
    assert info == read_model_info(path) | {"parity_max_abs_diff": info["parity_max_abs_diff"]}
    assert info["method"] == "stacking" and info["opset"] == OPSET
    assert [m["name"] for m in info["members"]] == ["a", "b"]
    assert info["classes"] == [str(d) for d in range(10)]
    assert info["members"][0]["scores"]["cv"]["accuracy"] > 0
    assert 0 <= info["parity_max_abs_diff"] <= 1e-4

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    assert inp.name == "images" and inp.type == "tensor(uint8)" and inp.shape[1:] == [16, 16, 1]
    assert isinstance(inp.shape[0], str)  # the dynamic batch axis
    paths, want = predicted("stacking")
    pixels = _pixels(build_ensemble(ws, "stacking"), paths)
    probs, members = session.run(None, {"images": pixels})
    np.testing.assert_allclose(probs, want, atol=1e-4)
    assert members.shape == (len(paths), 2, 10)
    for n in (1, 3):  # other batch sizes, same rows
        np.testing.assert_allclose(
            session.run(None, {"images": pixels[:n]})[0], probs[:n], atol=1e-5
        )


@pytest.mark.slow  # trains the shared workspace (seconds) once per session
def test_standalone_script_equals_predict(tmp_path_factory, predicted):
    path, _ = exported(tmp_path_factory, "stacking")
    script = path.with_name("predict_onnx.py")
    assert script.read_bytes() == STANDALONE.read_bytes()
    paths, want = predicted("stacking")
    run = subprocess.run(
        [sys.executable, str(script), str(path), *paths, "--json", "--top", "10"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=path.parent,
    )
    assert run.returncode == 0, run.stderr
    rows = [json.loads(line) for line in run.stdout.splitlines()]
    assert [r["image"] for r in rows] == paths
    for row, p in zip(rows, want):
        assert row["class"] == str(int(p.argmax()))
        got = np.array([row["top"][str(c)] for c in range(10)])
        np.testing.assert_allclose(got, p, atol=1e-4)


def test_standalone_imports_nothing_from_ensemblecv():
    tree = ast.parse(STANDALONE.read_text(encoding="utf-8"))
    modules = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    modules |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not {m for m in modules if m.split(".")[0] in ("ensemblecv", "torch")}
    assert {"onnxruntime", "cv2", "numpy", "PIL"} <= {m.split(".")[0] for m in modules}


def _standalone():
    import importlib.util

    spec = importlib.util.spec_from_file_location("predict_onnx", STANDALONE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("resize", "interpolation", "crop_pct"),
    [
        ("stretch", "auto", None),
        ("letterbox", "auto", None),
        ("center_crop", "auto", None),
        ("stretch", "bicubic", None),
        ("letterbox", "nearest", None),
        ("center_crop", "bicubic", 0.875),  # timm's eval crop
    ],
)
def test_standalone_preprocessing_equals_ensemblecv(tmp_path, resize, interpolation, crop_pct):
    from ensemblecv.augment import resize_op
    from ensemblecv.data.imageio import load_image

    alone = _standalone()
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (23, 37, 3), dtype=np.uint8)
    rgba = np.dstack([rgb, rng.integers(0, 256, (23, 37), dtype=np.uint8)])
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: must be turned upright by both
    files = [
        make_image(tmp_path / "rgb.png", mode=None, array=rgb),
        make_image(tmp_path / "rgba.png", mode=None, array=rgba),
        make_image(tmp_path / "la.png", mode="LA", array=rgba),
        make_image(tmp_path / "p.png", mode="P", array=rgb),
        make_image(tmp_path / "p_t.png", mode="P", array=rgb, transparency=0),
        make_image(tmp_path / "one.png", mode="1", array=rgb),
        make_image(tmp_path / "i16.png", mode="I;16", size=(9, 31)),
        make_image(tmp_path / "cmyk.jpg", mode="CMYK", array=rgb),
        make_image(tmp_path / "exif.jpg", mode=None, array=rgb, exif=exif),
        make_image(tmp_path / "tiny.png", mode=None, array=rgb[:5, :3]),  # enlarged
    ]
    for channels in (1, 3):
        for size in (16, 48):
            ours = resize_op(resize, size, interpolation, crop_pct)
            for f in files:
                want = ours(load_image(f, channels))
                image = alone.load_image(str(f), channels)
                got = alone.resize(image, resize, size, interpolation, crop_pct or 1.0)
                np.testing.assert_array_equal(got, want, err_msg=f"{f.name} {channels} {size}")


@pytest.mark.slow  # trains the shared workspace (seconds) once per session
def test_members_with_different_inputs_are_refused(ws, tmp_path):
    from ensemblecv.shipping.graph import common_input

    copy = tmp_path / "ws"
    shutil.copytree(ws / "runs" / "a", copy / "runs" / "a", ignore=shutil.ignore_patterns("*.ckpt"))
    cfg = yaml.safe_load((copy / "runs" / "a" / "config.yaml").read_text())
    cfg["data"]["image_size"] = 24
    (copy / "runs" / "c").mkdir()
    (copy / "runs" / "c" / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert common_input(copy, ["a"]).size == 16
    with pytest.raises(EnsembleCVError, match=r"do not share one input.*c: 24 px"):
        common_input(copy, ["a", "c"])


@pytest.mark.slow  # trains the shared workspace (seconds) once per session
def test_unexportable_rule_and_bad_out_are_refused(ws, tmp_path):
    from ensemblecv.shipping import export_onnx
    from ensemblecv.shipping.graph import _rule

    spec = {"name": "x", "method": "magic", "members": ["a"]}
    with pytest.raises(EnsembleCVError, match=r"'magic' cannot be expressed.*stacking"):
        _rule(spec, ws, ["a"], 10)
    with pytest.raises(EnsembleCVError, match="is a folder"):
        export_onnx(ws, tmp_path)
    with pytest.raises(EnsembleCVError, match=r"should end in \.onnx"):
        export_onnx(ws, tmp_path / "model.pt")
    with pytest.raises(EnsembleCVError, match="No ensemble 'nope'"):
        export_onnx(ws, tmp_path / "m.onnx", "nope")
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.slow  # trains the shared workspace (seconds) once per session
def test_export_cli_error_exits_2(ws, tmp_path, capsys):
    from ensemblecv.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["export", str(ws), "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "is a folder" in " ".join(capsys.readouterr().err.split())


def test_read_model_info_refuses_foreign_onnx(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from ensemblecv.shipping import read_model_info

    node = helper.make_node("Identity", ["x"], ["y"])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    onnx.save(helper.make_model(graph), tmp_path / "other.onnx")
    with pytest.raises(EnsembleCVError, match="not written by `ensemblecv export`"):
        read_model_info(tmp_path / "other.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not onnx")
    with pytest.raises(EnsembleCVError, match="not a readable ONNX file"):
        read_model_info(tmp_path / "junk.onnx")


def _random_members(rng, n=40, m=3, k=4, decimals=None) -> np.ndarray:
    logits = rng.normal(size=(m, n, k)) * 2
    p = np.exp(logits) / np.exp(logits).sum(2, keepdims=True)
    return p.astype(np.float32)


def _rules(rng):
    """(name, torch rule, fitted numpy estimator) for every exportable non-trivial rule."""
    from ensemblecv.ensemble import GeometricMean, HardVoting, SoftVoting, Stacking
    from ensemblecv.shipping.graph import (
        GeometricMeanRule,
        HardVotingRule,
        LinearRule,
        StackingRule,
    )

    oof = _random_members(rng, n=200)
    y = np.asarray(oof.mean(0).argmax(1))
    soft = SoftVoting([0.2, 0.5, 0.3]).fit(oof, y)
    stack = Stacking(cv=2).fit(oof, y)
    binary = Stacking(cv=0).fit(oof, (y > 1).astype(int))  # the meta-learner saw 2 classes only
    return [
        ("linear", LinearRule(soft.weights_), soft),
        ("geometric_mean", GeometricMeanRule(), GeometricMean().fit(oof)),
        ("hard_voting", HardVotingRule(), HardVoting().fit(oof)),
        ("stacking", StackingRule(stack, 4), stack),
        ("stacking_binary", StackingRule(binary, 4), binary),
    ]


def test_rules_equal_the_numpy_estimators():
    rng = np.random.default_rng(0)
    rules = _rules(rng)
    members = _random_members(rng)
    # Rows where the members vote 1-1-1 for classes whose mean probabilities differ by
    # less than float32 resolves at 0.5 after the 1e-6 factor: the tie-break must survive.
    members[:2, :5] = np.array([[0.6, 0.4 - 2e-3, 1e-3, 1e-3], [0.4 - 2e-3, 0.6, 1e-3, 1e-3]])[
        :, None
    ]
    members[2, :5] = np.array([0.2, 0.2003, 0.3997, 0.2])  # a 1-1-1 vote
    x = torch.from_numpy(members.transpose(1, 0, 2)).double()
    for name, rule, est in rules:
        want = est.predict_proba(list(members))
        got = rule(x).numpy()
        np.testing.assert_allclose(got, want, atol=1e-6, err_msg=name)
        np.testing.assert_array_equal(got.argmax(1), want.argmax(1), err_msg=name)


@pytest.mark.slow  # one torch.onnx export per rule, seconds each
def test_every_rule_through_onnx_runtime(tmp_path):
    import onnxruntime as ort
    from torch import nn

    from ensemblecv.shipping.graph import EnsembleGraph, MemberNet, _Normalised
    from ensemblecv.shipping.onnx_export import OPSET

    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (6, 8, 8, 1), dtype=np.uint8)
    # Linear and multi-class stacking also go through ONNX in test_onnx_runtime_equals_predict;
    # one export per rule (a graph holding several rules trips the exporter's optimiser).
    rules = _rules(rng)
    for name, rule, _ in [rules[2], rules[4]]:  # hard voting, binary stacking
        torch.manual_seed(0)
        members = []
        for tta in (False, True, False):
            net = nn.Sequential(
                nn.Conv2d(1, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 4)
            )
            members.append(
                MemberNet(
                    [_Normalised(net, torch.tensor([[[[30.0]]]]), torch.tensor([[[[60.0]]]]))], tta
                )
            )
        graph = EnsembleGraph(members, rule).eval()
        path = tmp_path / f"{name}.onnx"
        torch.onnx.export(
            graph,
            (torch.from_numpy(images),),
            str(path),
            input_names=["images"],
            output_names=["probabilities", "member_probabilities"],
            opset_version=OPSET,
            dynamo=True,
            dynamic_shapes={"images": {0: torch.export.Dim("batch", min=1)}},
            verbose=False,
        )
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = session.run(None, {"images": images[:5]})
        with torch.inference_mode():
            want = [t.numpy() for t in graph(torch.from_numpy(images[:5]))]
        assert got[0].dtype == np.float64 and got[1].dtype == np.float32
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, atol=1e-6, err_msg=name)
