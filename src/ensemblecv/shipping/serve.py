"""``ensemblecv serve``: a web page and a JSON API over an exported model or a workspace.

Routes: ``GET /`` (the drop-images page), ``POST /predict`` (multipart field
``files``, one or more images), ``GET /model`` (classes, members, scores,
limits) and ``GET /health``. Every bad input gets a 4xx JSON body
``{"error": {"code", "message", "file"}}`` and the server goes on: images are
decoded by the project's own loader (so a truncated file, a non-image or a
decompression bomb is named, never a traceback), and the limits below bound
what one request can make the server hold.

Needs FastAPI, uvicorn and python-multipart (``pip install 'ensemblecv[serve]'``).
"""

# No `from __future__ import annotations`: FastAPI reads the route annotations
# (Request, declared inside create_app) at definition time.

import asyncio
import base64
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass

import numpy as np

from ..errors import EnsembleCVError, ImageLoadError
from .batching import MicroBatcher
from .preprocess import PreparedImage, Preprocessor

#: HTTP status per decoder reason (see ``ensemblecv.data.imageio.REASONS``).
_STATUS = {
    "empty": 400,
    "not_an_image": 415,
    "unsupported_mode": 415,
    "truncated": 422,
    "unreadable": 422,
    "decompression_bomb": 413,
}


@dataclass(frozen=True)
class ServeLimits:
    """What one request may hold; all over-limit input gets a 413."""

    max_files: int = 16
    max_file_bytes: int = 10 * 2**20
    #: Pixels (width × height) of one decoded image; larger files are refused
    #: from their header, before any pixel is decoded.
    max_pixels: int = 40_000_000
    top_k: int = 5
    max_batch: int = 32
    max_wait_ms: float = 2.0


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, file: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.file = status, code, message, file


def _error_body(code: str, message: str, file: str | None = None) -> dict:
    return {"error": {"code": code, "message": message, "file": file}}


class _Service:
    """The model side of the app: decode, batch, predict, describe, explain."""

    def __init__(self, backend, limits: ServeLimits) -> None:
        self.backend = backend
        self.limits = limits
        self.classes = list(backend.info["classes"])
        self.member_names = [m["name"] for m in backend.info["members"]]
        self.member_weights = [m.get("weight") for m in backend.info["members"]]
        self.preprocess = Preprocessor(backend.input, limits.max_pixels)
        self.batcher = MicroBatcher(backend.predict, limits.max_batch, limits.max_wait_ms)

    def decode(self, data: bytes, name: str) -> PreparedImage:
        try:
            return self.preprocess(data, name)
        except ImageLoadError as exc:
            from ..data.imageio import REASONS

            why = REASONS.get(exc.reason, exc.reason) + (f" ({exc.detail})" if exc.detail else "")
            raise ApiError(
                _STATUS.get(exc.reason, 422), exc.reason, f"{name}: {why}", name
            ) from None

    def result(self, image: PreparedImage, probs: np.ndarray, members: np.ndarray) -> dict:
        k = min(self.limits.top_k, len(self.classes))
        order = np.argsort(-probs, kind="stable")
        best = int(order[0])
        votes = []
        for name, weight, p in zip(self.member_names, self.member_weights, members):
            vote = int(p.argmax())
            votes.append(
                {
                    "name": name,
                    "weight": weight,
                    "class": self.classes[vote],
                    "probability": float(p[vote]),
                    "probability_of_ensemble_class": float(p[best]),
                }
            )
        return {
            "file": image.name,
            "class": self.classes[best],
            "index": best,
            "probability": float(probs[best]),
            "top": [
                {"class": self.classes[int(i)], "probability": float(probs[int(i)])}
                for i in order[:k]
            ],
            "probabilities": {c: float(v) for c, v in zip(self.classes, probs)},
            "members": votes,
        }

    def model_info(self) -> dict:
        info = dict(self.backend.info)
        info["gradcam"] = bool(self.backend.can_explain)
        info["limits"] = asdict(self.limits)
        return info


async def _read_uploads(request, limits: ServeLimits) -> list[tuple[str, bytes]]:
    """(filename, bytes) of every ``files`` part, with the request-level limits applied."""
    from starlette.exceptions import HTTPException

    ctype = request.headers.get("content-type", "")
    if not ctype.startswith("multipart/form-data"):
        raise ApiError(
            400,
            "bad_request",
            "POST /predict takes multipart/form-data with one or more images in the field 'files'.",
        )
    # Refuse an oversized body from its declared length before reading any of it.
    declared = request.headers.get("content-length")
    cap = limits.max_files * limits.max_file_bytes + 64 * 1024
    if declared and declared.isdigit() and int(declared) > cap:
        raise ApiError(
            413,
            "request_too_large",
            f"The request is {int(declared):,} bytes; at most {limits.max_files} files of "
            f"{limits.max_file_bytes:,} bytes each are accepted.",
        )
    try:
        form = await request.form(max_files=limits.max_files, max_fields=limits.max_files + 8)
    except HTTPException as exc:
        if "Too many files" in str(exc.detail):
            raise ApiError(
                413, "too_many_files", f"At most {limits.max_files} files per request."
            ) from None
        raise ApiError(
            400, "bad_form", f"The multipart body cannot be read: {exc.detail}"
        ) from None
    uploads = []
    try:
        parts = form.getlist("files")
        if not parts:
            fields = sorted(set(form.keys()))
            raise ApiError(
                400,
                "no_files",
                "No images in the field 'files'"
                + (f" (fields sent: {', '.join(fields)})." if fields else "."),
            )
        for i, part in enumerate(parts):
            if isinstance(part, str):
                raise ApiError(400, "not_a_file", f"Part {i} of 'files' is text, not a file.")
            name = part.filename or f"file {i}"
            data = await part.read(limits.max_file_bytes + 1)
            if len(data) > limits.max_file_bytes:
                raise ApiError(
                    413,
                    "file_too_large",
                    f"{name} is over the limit of {limits.max_file_bytes:,} bytes per file.",
                    name,
                )
            uploads.append((name, data))
    finally:
        await form.close()
    return uploads


def create_app(backend, limits: ServeLimits | None = None):
    """The FastAPI app serving ``backend`` (see :func:`.backends.open_backend`)."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from .page import page_html

    limits = limits or ServeLimits()
    service = _Service(backend, limits)

    @asynccontextmanager
    async def lifespan(app):
        yield
        service.batcher.close()

    app = FastAPI(title="ensemblecv", docs_url="/docs", redoc_url=None, lifespan=lifespan)
    app.state.service = service

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return JSONResponse(_error_body(exc.code, exc.message, exc.file), status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(_error_body(code, str(exc.detail)), status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        return JSONResponse(_error_body("bad_request", str(exc.errors())), status_code=400)

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page_html(service.model_info())

    @app.get("/health")
    def health() -> dict:
        return {
            "status": "ok",
            "model": backend.info.get("ensemble"),
            "model_calls": service.batcher.calls,
            "images": service.batcher.images,
        }

    @app.get("/model")
    def model() -> dict:
        return service.model_info()

    @app.post("/predict")
    async def predict(request: Request, gradcam: bool = False) -> dict:
        uploads = await _read_uploads(request, limits)
        images = [await run_in_threadpool(service.decode, data, name) for name, data in uploads]
        batch = np.stack([im.pixels for im in images])
        probs, members = await asyncio.wrap_future(service.batcher.submit(batch))
        results = [service.result(im, p, m) for im, p, m in zip(images, probs, members)]
        if gradcam:
            if not backend.can_explain:
                raise ApiError(
                    400,
                    "gradcam_unavailable",
                    "Grad-CAM needs the checkpoints: serve the workspace, not the .onnx file.",
                )
            for im, res in zip(images, results):
                png = await run_in_threadpool(backend.explain, im.pixels, im.name, res["index"])
                res["gradcam"] = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
                res["gradcam_member"] = backend.explained_member
        return {"predictions": results}

    return app


def serve(
    target: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    ensemble: str = "best",
    limits: ServeLimits | None = None,
    threads: int = 0,
    log_level: str = "info",
    announce=None,
) -> None:
    """Open ``target`` (workspace or .onnx) and serve it with uvicorn until interrupted.

    ``announce(info)`` is called with the model description once the model is loaded,
    just before the server starts listening.
    """
    try:
        import fastapi  # noqa: F401
        import multipart  # noqa: F401  (python-multipart)
        import uvicorn
    except ImportError as exc:
        raise EnsembleCVError(
            f"serve needs FastAPI, uvicorn and python-multipart ({exc.name} is missing): "
            "pip install 'ensemblecv[serve]'"
        ) from None
    from .backends import open_backend

    backend = open_backend(target, ensemble, threads)
    app = create_app(backend, limits)
    if announce is not None:
        announce(backend.info)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)
