"""CLI verbs that hand a model to others: ``export`` (one ONNX file) and ``serve`` (web page + API)."""

from __future__ import annotations

import ipaddress
import warnings
from pathlib import Path

import typer

from ._console import console


def export_command(
    workspace: Path = typer.Argument(..., help="Workspace with runs and ensembles."),
    out: Path = typer.Option(..., "--out", "-o", help="The .onnx file to write."),
    ensemble_name: str = typer.Option(
        "best", "--ensemble", help="best, an ensemble name or a run name."
    ),
) -> None:
    """Write the ensemble as ONE ONNX file (+ model.json, predict_onnx.py), checked against PyTorch."""
    from ..shipping import PARITY_TOL, export_onnx

    result = export_onnx(workspace, out, ensemble_name)
    info = result.info
    spec = info["input"]
    console.print(
        f"Wrote [bold]{result.onnx_path}[/] ({result.onnx_path.stat().st_size / 2**20:.1f} MB, "
        f"opset {info['opset']}): {info['method']} of {len(info['members'])} member(s), "
        f"input uint8 (N, {spec['height']}, {spec['width']}, {spec['channels']}) "
        f"resized by {spec['resize']}"
    )
    console.print(
        f"ONNX Runtime vs PyTorch: max |diff| {result.max_abs_diff:.2e} (limit {PARITY_TOL:g}). "
        f"Also wrote {result.json_path} and {result.script_path}"
    )


def serve_command(
    target: Path = typer.Argument(..., help="A workspace folder or an exported .onnx file."),
    host: str = typer.Option("127.0.0.1", help="Address to bind (loopback by default)."),
    port: int = typer.Option(8000, min=0, max=65535, help="Port to listen on."),
    ensemble_name: str = typer.Option(
        "best", "--ensemble", help="best, an ensemble name or a run name (workspace only)."
    ),
    max_files: int = typer.Option(16, min=1, help="Images per request."),
    max_mb: float = typer.Option(10.0, min=0.001, help="Size limit of one uploaded file, MB."),
    max_megapixels: float = typer.Option(
        40.0, min=0.001, help="Pixel limit of one image (decompression bombs are refused)."
    ),
    top_k: int = typer.Option(5, min=1, help="Classes listed per image."),
    max_batch: int = typer.Option(32, min=1, help="Images batched into one model call."),
    batch_wait_ms: float = typer.Option(
        2.0, min=0.0, help="How long a model call waits for more requests to batch."
    ),
    threads: int = typer.Option(0, min=0, help="Inference threads (0 = library default)."),
) -> None:
    """Serve a web page (drop images) and a JSON API (POST /predict, GET /model, GET /health)."""
    from ..shipping.serve import ServeLimits, serve

    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        warnings.warn(
            f"Binding to {host}: anyone who can reach this machine can use the model "
            "(there is no authentication). Use 127.0.0.1 behind a reverse proxy to control access.",
            UserWarning,
            stacklevel=1,
        )
    limits = ServeLimits(
        max_files=max_files,
        max_file_bytes=int(max_mb * 2**20),
        max_pixels=int(max_megapixels * 1e6),
        top_k=top_k,
        max_batch=max_batch,
        max_wait_ms=batch_wait_ms,
    )

    def announce(info: dict) -> None:
        console.print(
            f"Serving {info['ensemble']} ({info['method']}, {len(info['members'])} member(s), "
            f"{len(info['classes'])} classes) from {target} on http://{host}:{port}/  "
            "(Ctrl+C stops)"
        )

    serve(str(target), host, port, ensemble_name, limits, threads, announce=announce)


def register(app: typer.Typer) -> None:
    app.command("export")(export_command)
    app.command("serve")(serve_command)
