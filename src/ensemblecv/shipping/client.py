"""A dependency-free client for ``serve``'s ``POST /predict`` (standard library only).

Used by the tests and ``benchmarks/serve_load.py``, and handy in scripts:

    from ensemblecv.shipping.client import post_images
    status, body = post_images("http://127.0.0.1:8000", [("cat.jpg", open("cat.jpg", "rb").read())])
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence


def encode_multipart(files: Sequence[tuple[str, bytes]], field: str = "files") -> tuple[bytes, str]:
    """``(body, content_type)`` of a multipart/form-data request with one part per file."""
    boundary = "ensemblecv-" + uuid.uuid4().hex
    chunks = []
    for name, data in files:
        safe = name.replace('"', "_").replace("\r", "_").replace("\n", "_")
        chunks.append(
            (
                f"--{boundary}\r\n"
                f'Content-Disposition: form-data; name="{field}"; filename="{safe}"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n"
            ).encode()
        )
        chunks += [data, b"\r\n"]
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"


def post_images(
    url: str,
    files: Sequence[tuple[str, bytes]],
    gradcam: bool = False,
    timeout: float = 60.0,
) -> tuple[int, dict]:
    """POST ``files`` (name, bytes) to ``url``/predict; returns (HTTP status, JSON body)."""
    body, ctype = encode_multipart(files)
    target = url.rstrip("/") + "/predict" + ("?gradcam=true" if gradcam else "")
    request = urllib.request.Request(
        target, data=body, method="POST", headers={"Content-Type": ctype}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def get_json(url: str, timeout: float = 30.0) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())
