"""A small trained workspace, its ONNX export and a live server, shared by the shipping tests.

Training and exporting take seconds each, so both are cached under pytest's
base temp folder for the whole session (test_onnx_export.py and
test_serve.py use the same ones; under xdist each worker has its own).

The workspace has two real runs on digits at 16 px, 1 channel, letterbox:
``a`` (mnist_cnn, one model per fold) and ``b`` (cnn_small with
``refit_full``, so ``predict`` uses its one refit model), and every ensemble
``ensemblecv ensemble`` writes.
"""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

from ensemblecv.config import load_config

#: Images ``predict`` and the exported model are compared on: varied sizes and modes.
IMAGE_MODES = {"wide_rgb.png": "RGB", "tall_gray.png": "L", "rgba.png": "RGBA", "palette.png": "P"}


def _config(ws: Path, name: str, model: str, **train):
    return load_config(
        None,
        [],
        base={
            "workspace": str(ws),
            "name": name,
            "data": {
                "train": "digits",
                "image_size": 16,
                "channels": 1,
                "resize": "letterbox",
                "folds": 2,
                "limit": 120,
                "num_workers": 0,
            },
            "model": {"name": model},
            "train": {"epochs": 1, "batch_size": 32, **train},
            "augment": {"preset": "none"},
            "tracking": {"backend": "none"},
        },
    )


def trained_workspace(tmp_path_factory) -> Path:
    root = tmp_path_factory.getbasetemp() / "shipping"
    ws = root / "ws"
    if (root / "trained").is_file():
        return ws
    from ensemblecv.ensemble import build_ensembles
    from ensemblecv.training.runner import train

    train(_config(ws, "a", "mnist_cnn", refit_full=False), progress=False)  # the fold-mean path
    train(_config(ws, "b", "cnn_small", refit_full=True), progress=False)
    build_ensembles(ws)
    (root / "trained").touch()
    return ws


def new_images(tmp_path_factory) -> Path:
    """A folder of unlabelled digit images, none 16×16 and none square, in several PIL modes."""
    folder = tmp_path_factory.getbasetemp() / "shipping" / "new_images"
    if folder.is_dir():
        return folder
    from sklearn.datasets import load_digits

    digits = load_digits().images[-len(IMAGE_MODES) :]
    folder.mkdir(parents=True)
    sizes = [(30, 20), (18, 40), (25, 25), (9, 13)]
    for (name, mode), pixels, size in zip(IMAGE_MODES.items(), digits, sizes):
        img = Image.fromarray((pixels * 16).clip(0, 255).astype(np.uint8)).resize(size)
        img.convert(mode).save(folder / name)
    return folder


def exported(tmp_path_factory, ensemble: str = "stacking"):
    """``(model.onnx path, CLI output)`` of ``ensemblecv export WS --ensemble NAME``, run once."""
    from typer.testing import CliRunner

    from ensemblecv.cli import app

    ws = trained_workspace(tmp_path_factory)
    out = tmp_path_factory.getbasetemp() / "shipping" / f"export_{ensemble}" / "model.onnx"
    log = out.with_name("cli.txt")
    if not log.is_file():
        result = CliRunner().invoke(
            app, ["export", str(ws), "--ensemble", ensemble, "-o", str(out)]
        )
        assert result.exit_code == 0, result.output
        log.write_text(result.output, encoding="utf-8")
    return out, log.read_text(encoding="utf-8")


@contextlib.contextmanager
def live_server(app):
    """Run ``app`` with uvicorn on 127.0.0.1 and a free port in a thread; yields its base URL."""
    import uvicorn

    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
