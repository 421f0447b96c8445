"""``ensemblecv export``: an ensemble as ONE ONNX file, checked against PyTorch on export.

The file holds every member's models, their normalisation and the ensemble's
rule (see :mod:`.graph`); it takes ``images``, uint8 (N, H, W, C) at the
members' input size with a dynamic batch N, and returns ``probabilities``
(N, K) float64 (as ``predict``; hard voting's tie-break needs it) and
``member_probabilities`` (N, M, K) float32. Opset
:data:`OPSET`, written by torch's ``torch.export``-based exporter.

Beside it go ``model.json`` (classes, input, members and their scores — the
same text is embedded in the ONNX file's metadata under ``ensemblecv``, so
``serve`` and the standalone script need only the .onnx) and
``predict_onnx.py``, a script that needs onnxruntime, numpy, Pillow and
OpenCV but not ensemblecv.

Every export runs ONNX Runtime on real workspace images at two batch sizes and
compares with the PyTorch module; a difference over :data:`PARITY_TOL` is an
error, and the measured figure is written into ``model.json``.
"""

from __future__ import annotations

import json
import shutil
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from .._io import atomic_write_text
from ..errors import EnsembleCVError
from .graph import BuiltEnsemble, build_ensemble
from .model_info import INPUT_NAME, METADATA_KEY, OUTPUT_NAMES, read_model_info  # noqa: F401

#: ONNX opset of exported files; ONNX Runtime >= 1.14 runs it.
OPSET = 18
#: Largest |ONNX Runtime - PyTorch| allowed on any probability.
PARITY_TOL = 1e-4
#: Above this many bytes of weights the tensors go to ``NAME.onnx.data`` (protobuf's 2 GB cap).
EXTERNAL_DATA_BYTES = 1_500_000_000
STANDALONE_NAME = "predict_onnx.py"


@dataclass
class ExportResult:
    onnx_path: Path
    json_path: Path
    script_path: Path
    info: dict
    max_abs_diff: float


def sample_images(workspace: Path, built: BuiltEnsemble, n: int = 8) -> np.ndarray:
    """Up to ``n`` workspace images, decoded and resized as the members expect: (n, H, W, C) uint8."""
    from ..augment import resize_op
    from ..training.data import ImageSource
    from ..workspace import Workspace

    table = Workspace(workspace).load_table()
    mask = np.zeros(len(table), dtype=bool)
    mask[np.linspace(0, len(table) - 1, num=min(n, len(table))).round().astype(int)] = True
    spec = built.input
    source = ImageSource(
        table.subset(mask),
        spec.channels,
        resize_op(spec.resize, spec.size, spec.interpolation, spec.crop_pct),
        spec.size,
        0,
    )
    images = np.stack([source[i] for i in range(len(source))])
    if len(images) < 2:  # the dynamic batch axis needs an example of more than one
        images = np.concatenate([images, images[:, :, ::-1]])
    return images


def _model_info(built: BuiltEnsemble, opset: int) -> dict:
    from .. import __version__

    spec = built.spec
    return {
        "format": "ensemblecv-onnx",
        "format_version": 1,
        "ensemble": spec.get("alias") and f"best ({spec['name']})" or spec["name"],
        "method": spec["method"],
        "classes": list(built.classes),
        "input": built.input.to_dict(),
        "outputs": {
            OUTPUT_NAMES[0]: "float64 (N, classes): the ensemble's probabilities",
            OUTPUT_NAMES[1]: "float32 (N, members, classes): each member's probabilities",
        },
        "members": [
            {
                "name": m.name,
                "weight": m.weight,
                "model": m.model,
                "tta": m.tta,
                "checkpoints": m.checkpoints,
                "scores": m.scores,
            }
            for m in built.members
        ],
        "scores": spec.get("scores", {}),
        "opset": opset,
        "ensemblecv_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _export(graph: torch.nn.Module, example: torch.Tensor, out: Path, info: dict, big: bool):
    import logging

    batch = torch.export.Dim("batch", min=1)
    # The exporter narrates each step on stdout/logging; a CLI verb should not.
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            program = torch.onnx.export(
                graph,
                (example,),
                input_names=[INPUT_NAME],
                output_names=list(OUTPUT_NAMES),
                opset_version=info["opset"],
                dynamo=True,
                dynamic_shapes={"images": {0: batch}},
                verbose=False,
            )
        except Exception as exc:  # the exporter's own errors are long and internal
            models = ", ".join(sorted({m["model"] for m in info["members"]}))
            raise EnsembleCVError(
                f"torch.onnx could not export the ensemble (models: {models}): "
                f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
            ) from exc
    program.model.metadata_props[METADATA_KEY] = json.dumps(info, sort_keys=False)
    program.save(out, external_data=big)


def _parity(out: Path, graph: torch.nn.Module, images: np.ndarray) -> float:
    """Largest |ORT - torch| over both outputs, at the full example batch and at batch 1."""
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    except Exception as exc:  # an exporter bug: say so instead of ORT's internal trace
        raise EnsembleCVError(
            f"ONNX Runtime cannot load the exported {out}: {str(exc).splitlines()[0][:300]}"
        ) from exc
    worst = 0.0
    for batch in (images, images[:1]):
        got = session.run(list(OUTPUT_NAMES), {INPUT_NAME: batch})
        with torch.inference_mode():
            want = [t.numpy() for t in graph(torch.from_numpy(batch))]
        for g, w in zip(got, want):
            if g.shape != w.shape:
                raise EnsembleCVError(f"ONNX output shape {g.shape} != PyTorch's {w.shape}.")
            worst = max(worst, float(np.abs(g - w).max()))
    return worst


def export_onnx(
    workspace: str | Path, out: str | Path, ensemble: str = "best", opset: int = OPSET
) -> ExportResult:
    """Write ``out`` (.onnx), ``model.json`` and ``predict_onnx.py`` beside it; returns what was written.

    Raises :class:`EnsembleCVError` for an ensemble that one graph cannot
    express (members with different input settings, an unknown rule) or an
    export whose ONNX Runtime output differs from PyTorch's by more than
    :data:`PARITY_TOL`.
    """
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise EnsembleCVError(
            f"export needs onnx and onnxruntime ({exc.name} is missing): "
            "pip install 'ensemblecv[serve]'"
        ) from None
    workspace, out = Path(workspace), Path(out)
    if out.is_dir():
        raise EnsembleCVError(
            f"--out {out} is a folder; give a file path such as {out}/model.onnx."
        )
    if out.suffix.lower() != ".onnx":
        raise EnsembleCVError(f"--out {out} should end in .onnx.")
    built = build_ensemble(workspace, ensemble)
    info = _model_info(built, opset)
    images = sample_images(workspace, built)
    out.parent.mkdir(parents=True, exist_ok=True)
    big = sum(p.numel() * p.element_size() for p in built.graph.parameters()) > EXTERNAL_DATA_BYTES
    _export(built.graph, torch.from_numpy(images), out, info, big)
    diff = _parity(out, built.graph, images)
    if diff > PARITY_TOL:
        raise EnsembleCVError(
            f"The exported graph differs from PyTorch by {diff:.2e} (> {PARITY_TOL:g}); {out} "
            "should not be trusted. Please report this with the models' names."
        )
    info["parity_max_abs_diff"] = diff
    json_path = out.with_name("model.json") if out.stem == "model" else out.with_suffix(".json")
    atomic_write_text(json_path, json.dumps(info, indent=2) + "\n")
    script = out.with_name(STANDALONE_NAME)
    shutil.copyfile(Path(__file__).with_name("standalone.py"), script)
    return ExportResult(out, json_path, script, info, diff)
