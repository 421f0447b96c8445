"""The names an exported file promises, and reading its embedded ``model.json`` (no torch)."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import EnsembleCVError

INPUT_NAME = "images"
OUTPUT_NAMES = ("probabilities", "member_probabilities")
#: Key of the ``model.json`` text in the ONNX file's metadata_props.
METADATA_KEY = "ensemblecv"


def read_model_info(onnx_path: str | Path) -> dict:
    """The ``model.json`` content embedded in an exported file (no session is created)."""
    import onnx

    path = Path(onnx_path)
    if not path.is_file():
        raise EnsembleCVError(f"{path} does not exist.")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise EnsembleCVError(f"{path} is not a readable ONNX file: {exc}") from None
    meta = {p.key: p.value for p in model.metadata_props}
    if METADATA_KEY not in meta:
        raise EnsembleCVError(
            f"{path} was not written by `ensemblecv export` (no {METADATA_KEY!r} metadata); "
            "serve needs its classes and input settings."
        )
    return json.loads(meta[METADATA_KEY])
