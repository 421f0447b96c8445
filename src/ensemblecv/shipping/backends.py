"""What ``serve`` runs: an exported ONNX file (ONNX Runtime) or a workspace (PyTorch + Grad-CAM).

Both give the same thing — ``predict(uint8 (N, H, W, C)) -> (probabilities
(N, K), member probabilities (N, M, K))`` and the ``model.json`` description —
so the web app does not care which it serves. Only a workspace has the
checkpoints Grad-CAM needs, so only :class:`TorchBackend` can explain.
"""

from __future__ import annotations

import copy
import threading
from pathlib import Path

import numpy as np

from ..errors import EnsembleCVError
from .preprocess import InputSpec


class OnnxBackend:
    """An exported ensemble run by ONNX Runtime on the CPU."""

    can_explain = False

    def __init__(self, path: str | Path, threads: int = 0) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise EnsembleCVError(
                "serving an .onnx file needs onnxruntime: pip install 'ensemblecv[serve]'"
            ) from None
        from .model_info import INPUT_NAME, OUTPUT_NAMES, read_model_info

        self.path = Path(path)
        self.info = read_model_info(self.path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads)
        self._session = ort.InferenceSession(
            str(self.path), options, providers=["CPUExecutionProvider"]
        )
        self._input, self._outputs = INPUT_NAME, list(OUTPUT_NAMES)
        spec = self.info["input"]
        self.input = InputSpec.from_dict(spec)

    def predict(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        probs, members = self._session.run(self._outputs, {self._input: images})
        return probs, members


class TorchBackend:
    """A workspace's ensemble in PyTorch (CPU), with Grad-CAM overlays of its leading member."""

    can_explain = True

    def __init__(self, workspace: str | Path, ensemble: str = "best", threads: int = 0) -> None:
        import torch

        from .graph import build_ensemble
        from .onnx_export import OPSET, _model_info

        if threads:
            torch.set_num_threads(int(threads))
        self.workspace = Path(workspace)
        self.built = build_ensemble(self.workspace, ensemble)
        self.info = _model_info(self.built, OPSET)
        self.info.pop("opset")
        self.input = self.built.input
        # Grad-CAM hooks its layer; a private copy keeps them off the graph that predicts.
        lead = max(self.built.members, key=lambda m: m.weight or 0.0)
        self.explained_member = lead.name
        self._explain_module = copy.deepcopy(self.built.explain_modules[lead.name])
        self._explain_lock = threading.Lock()

    def predict(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import torch

        with torch.inference_mode():
            probs, members = self.built.graph(torch.from_numpy(np.ascontiguousarray(images)))
        return probs.numpy(), members.numpy()

    def explain(self, pixels: np.ndarray, name: str, target: int) -> bytes:
        """A PNG of ``pixels`` (the resized input) beside its Grad-CAM for class ``target``."""
        import torch

        from ..explain import gradcam_map, overlay_png

        classes = self.built.classes
        x = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1)[None]
        with self._explain_lock:
            module = self._explain_module
            cam, probs = gradcam_map(module.model, module.normalize(x), int(target))
        title = f"{name}\n{self.explained_member}: {classes[int(probs.argmax())]}"
        right = f"Grad-CAM: {classes[target]} ({probs[target]:.2f})"
        return overlay_png(pixels, cam, title, "model input", right)


def open_backend(target: str | Path, ensemble: str = "best", threads: int = 0):
    """An :class:`OnnxBackend` for a ``.onnx`` file, a :class:`TorchBackend` for a workspace."""
    target = Path(target)
    if target.is_file() and target.suffix.lower() == ".onnx":
        if ensemble != "best":
            raise EnsembleCVError(
                "--ensemble applies to a workspace; an .onnx file holds one ensemble already."
            )
        return OnnxBackend(target, threads)
    if target.is_dir():
        if not (target / "classes.json").is_file():
            raise EnsembleCVError(
                f"{target} is not a workspace (no classes.json); give a workspace or a .onnx file."
            )
        return TorchBackend(target, ensemble, threads)
    raise EnsembleCVError(f"{target} is neither a workspace folder nor a .onnx file.")
