"""Shipping a trained ensemble: ``export`` to one ONNX file and ``serve`` it over HTTP.

:func:`build_ensemble` turns a workspace's ensemble into one PyTorch module
(uint8 images in, probabilities out), :func:`export_onnx` writes it as ONNX
with ``model.json`` and a standalone script, and :func:`create_app` (in
``ensemblecv.shipping.serve``, which needs FastAPI) serves either.
"""

from .graph import EXPORTABLE_METHODS, BuiltEnsemble, EnsembleGraph, InputSpec, build_ensemble
from .onnx_export import OPSET, PARITY_TOL, ExportResult, export_onnx, read_model_info
from .preprocess import PreparedImage, Preprocessor

__all__ = [
    "EXPORTABLE_METHODS", "OPSET", "PARITY_TOL", "BuiltEnsemble", "EnsembleGraph", "ExportResult",
    "InputSpec", "PreparedImage", "Preprocessor", "build_ensemble", "export_onnx",
    "read_model_info",
]  # fmt: skip
