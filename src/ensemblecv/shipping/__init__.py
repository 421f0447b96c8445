"""Shipping a trained ensemble: ``export`` to one ONNX file and ``serve`` it over HTTP.

:func:`build_ensemble` turns a workspace's ensemble into one PyTorch module
(uint8 images in, probabilities out), :func:`export_onnx` writes it as ONNX
with ``model.json`` and a standalone script, and
``ensemblecv.shipping.serve.create_app`` (needs FastAPI) serves either.

Names are imported on first use: serving an .onnx file must not load torch.
"""

from __future__ import annotations

import importlib

_HOMES = {
    "EXPORTABLE_METHODS": "graph",
    "BuiltEnsemble": "graph",
    "EnsembleGraph": "graph",
    "build_ensemble": "graph",
    "OPSET": "onnx_export",
    "PARITY_TOL": "onnx_export",
    "ExportResult": "onnx_export",
    "export_onnx": "onnx_export",
    "read_model_info": "model_info",
    "InputSpec": "preprocess",
    "PreparedImage": "preprocess",
    "Preprocessor": "preprocess",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
