"""``ensemblecv serve``: the JSON API on a real uvicorn server, bad input, batching, the page.

The server runs in a thread on 127.0.0.1 and a free port, serving the model
exported from the small trained workspace of tests/ship_fixtures.py (and, for
Grad-CAM, the workspace itself); requests go over real HTTP with the
standard-library client in ``ensemblecv.shipping.client``.
"""

from __future__ import annotations

import io
import struct
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from ship_fixtures import exported, live_server, new_images, trained_workspace

pytest.importorskip("fastapi")
pytest.importorskip("onnxruntime")
pytest.importorskip("multipart")

from ensemblecv.errors import EnsembleCVError  # noqa: E402
from ensemblecv.shipping.batching import MicroBatcher  # noqa: E402
from ensemblecv.shipping.client import get_json, post_images  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py

CHROMIUM = Path("/usr/bin/chromium")
LIMITS = dict(max_files=3, max_file_bytes=300_000, max_pixels=1_000_000, top_k=3)


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    return trained_workspace(tmp_path_factory)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[Path]:
    return sorted(new_images(tmp_path_factory).iterdir())


@pytest.fixture(scope="module")
def onnx_url(tmp_path_factory):
    from ensemblecv.shipping.backends import open_backend
    from ensemblecv.shipping.serve import ServeLimits, create_app

    path, _ = exported(tmp_path_factory, "stacking")
    with live_server(create_app(open_backend(path), ServeLimits(**LIMITS))) as url:
        yield url


@pytest.fixture(scope="module")
def workspace_url(ws):
    from ensemblecv.shipping.backends import open_backend
    from ensemblecv.shipping.serve import ServeLimits, create_app

    with live_server(create_app(open_backend(ws, "stacking"), ServeLimits(**LIMITS))) as url:
        yield url


def _files(paths) -> list[tuple[str, bytes]]:
    return [(p.name, p.read_bytes()) for p in paths]


def _png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


def _bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid PNG header claiming 10 gigapixels over a few bytes of data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


@pytest.mark.slow  # serves the shared trained workspace's export
def test_predict_equals_predict_command(ws, images, onnx_url):
    from ensemblecv.inference import predict, predict_members

    frame, want, table, classes = predict(ws, str(images[0].parent), "stacking")
    order = [Path(p).name for p in table.frame["path"]]
    by_name = dict(zip(order, want))
    members = {m.run: dict(zip(order, m.probs)) for m in predict_members(ws, ["a", "b"], table)}
    got = []
    for chunk in (images[:3], images[3:]):  # at most max_files per request
        status, body = post_images(onnx_url, _files(chunk))
        assert status == 200, body
        got += body["predictions"]
    assert [g["file"] for g in got] == [p.name for p in images]
    for g in got:
        p = by_name[g["file"]]
        probs = np.array([g["probabilities"][c] for c in classes])
        np.testing.assert_allclose(probs, p, atol=1e-4)
        assert g["class"] == classes[int(p.argmax())] and g["index"] == int(p.argmax())
        assert [t["class"] for t in g["top"]] == [classes[i] for i in np.argsort(-p)[:3]]
        assert [m["name"] for m in g["members"]] == ["a", "b"]
        for m in g["members"]:
            mp = members[m["name"]][g["file"]]
            assert m["class"] == classes[int(mp.argmax())]
            assert m["probability"] == pytest.approx(float(mp.max()), abs=1e-4)


@pytest.mark.slow  # serves the shared trained workspace's export
def test_health_and_model(onnx_url):
    health = get_json(onnx_url + "/health")
    assert health["status"] == "ok" and health["model"] == "stacking"
    info = get_json(onnx_url + "/model")
    assert info["classes"] == [str(d) for d in range(10)]
    assert [m["name"] for m in info["members"]] == ["a", "b"]
    assert info["members"][0]["scores"]["cv"]["accuracy"] > 0
    assert info["limits"]["max_files"] == 3 and info["gradcam"] is False


def _bad_inputs(images):
    good = images[0].read_bytes()
    noise = np.random.default_rng(0).integers(0, 256, (400, 400, 3), dtype=np.uint8)
    return {
        "not_an_image": ([("notes.txt", b"just some text, not pixels")], 415),
        "truncated": ([("cut.png", _png(noise[:64, :64])[:300])], 422),
        "empty": ([("empty.png", b"")], 400),
        "decompression_bomb": ([("bomb.png", _bomb_png())], 413),
        # Under PIL's own limit but over the server's 1 MP: refused the same way.
        "over_pixel_limit": ([("big.png", _png(np.zeros((1000, 1200), np.uint8)))], 413),
        "file_too_large": ([("noise.png", _png(noise))], 413),
        "too_many_files": ([(f"{i}.png", good) for i in range(4)], 413),
    }


@pytest.mark.slow
@pytest.mark.parametrize(
    "case",
    [
        "not_an_image",
        "truncated",
        "empty",
        "decompression_bomb",
        "over_pixel_limit",
        "file_too_large",
        "too_many_files",
    ],
)
def test_bad_input_is_a_clear_4xx_and_the_server_goes_on(case, images, onnx_url):
    files, status_want = _bad_inputs(images)[case]
    status, body = post_images(onnx_url, files)
    assert status == status_want, body
    err = body["error"]
    code = {"over_pixel_limit": "decompression_bomb"}.get(case, case)
    assert err["code"] == code
    assert err["message"] and "Traceback" not in err["message"]
    if case not in ("too_many_files",):
        assert err["file"] == files[0][0] and files[0][0] in err["message"]
    status, body = post_images(onnx_url, _files(images[:1]))  # still serving
    assert status == 200 and body["predictions"][0]["file"] == images[0].name


@pytest.mark.slow  # serves the shared trained workspace's export
def test_requests_that_are_not_image_uploads(onnx_url):
    import urllib.error
    import urllib.request

    def post(data: bytes, ctype: str):
        req = urllib.request.Request(
            onnx_url + "/predict", data=data, method="POST", headers={"Content-Type": ctype}
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    import json

    status, body = post(b'{"files": []}', "application/json")
    assert status == 400 and b"multipart/form-data" in body
    from ensemblecv.shipping.client import encode_multipart

    data, ctype = encode_multipart([("a.png", b"x")], field="images")
    status, body = post(data, ctype)
    assert status == 400 and json.loads(body)["error"]["code"] == "no_files"
    assert b"fields sent: images" in body
    huge = str(10**9)
    req = urllib.request.Request(onnx_url + "/nope")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=30)
    assert info.value.code == 404 and json.loads(info.value.read())["error"]["code"] == "not_found"
    # A declared body larger than max_files × max_file_bytes is refused before it is read.
    import http.client

    host, port = onnx_url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.putrequest("POST", "/predict")
    conn.putheader("Content-Type", "multipart/form-data; boundary=x")
    conn.putheader("Content-Length", huge)
    conn.endheaders()
    response = conn.getresponse()
    assert response.status == 413
    assert json.loads(response.read())["error"]["code"] == "request_too_large"
    conn.close()


@pytest.mark.slow  # serves the shared trained workspace's export
def test_workspace_server_explains_and_agrees_with_onnx(images, onnx_url, workspace_url):
    files = _files(images[:2])
    status, body = post_images(workspace_url, files, gradcam=True)
    assert status == 200, body
    _, onnx_body = post_images(onnx_url, files)
    for got, want in zip(body["predictions"], onnx_body["predictions"]):
        assert got["class"] == want["class"]
        for c, p in want["probabilities"].items():
            assert got["probabilities"][c] == pytest.approx(p, abs=1e-4)
        assert got["gradcam"].startswith("data:image/png;base64,")
        import base64

        png = base64.b64decode(got["gradcam"].split(",", 1)[1])
        with Image.open(io.BytesIO(png)) as img:
            assert img.size[0] > 100 and np.asarray(img.convert("L")).std() > 5
    status, body = post_images(onnx_url, files, gradcam=True)
    assert status == 400 and body["error"]["code"] == "gradcam_unavailable"
    assert get_json(workspace_url + "/model")["gradcam"] is True


def test_open_backend_refuses_what_it_cannot_serve(tmp_path):
    from ensemblecv.shipping.backends import open_backend

    with pytest.raises(EnsembleCVError, match="neither a workspace folder nor a .onnx"):
        open_backend(tmp_path / "missing")
    with pytest.raises(EnsembleCVError, match="not a workspace"):
        open_backend(tmp_path)


def test_batcher_batches_concurrent_requests_and_survives_errors():
    calls = []

    def predict(x):
        calls.append(len(x))
        if (x == 255).any():
            raise ValueError("boom")
        return x.reshape(len(x), -1).astype(np.float32), x[:, None].astype(np.float32)

    batcher = MicroBatcher(predict, max_batch=64, max_wait_ms=50)
    try:
        inputs = [np.full((2, 1), i, np.uint8) for i in range(20)]
        barrier = threading.Barrier(len(inputs))
        results = [None] * len(inputs)

        def go(i):
            barrier.wait()
            results[i] = batcher.submit(inputs[i]).result(timeout=10)

        threads = [threading.Thread(target=go, args=(i,)) for i in range(len(inputs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for i, (probs, members) in enumerate(results):
            np.testing.assert_array_equal(probs, inputs[i].astype(np.float32))
            assert members.shape == (2, 1, 1)
        assert sum(calls) == 40 and len(calls) < len(inputs)
        with pytest.raises(ValueError, match="boom"):
            batcher.submit(np.full((1, 1), 255, np.uint8)).result(timeout=10)
        probs, _ = batcher.submit(np.full((1, 1), 7, np.uint8)).result(timeout=10)
        assert probs[0, 0] == 7
    finally:
        batcher.close()


@pytest.mark.skipif(not CHROMIUM.is_file(), reason="needs Debian's chromium at /usr/bin/chromium")
@pytest.mark.slow  # serves the shared trained workspace's export
def test_page_in_headless_chromium(images, workspace_url, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    expected = post_images(workspace_url, _files(images[:1]))[1]["predictions"][0]
    messages, page_errors = [], []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: messages.append((m.type, m.text)))
            page.on("pageerror", lambda e: page_errors.append(str(e)))
            page.goto(workspace_url + "/")
            page.wait_for_selector("body[data-ready=yes]")
            assert "stacking" in page.inner_text("header")
            # Upload through the file input ...
            page.set_input_files("#files", str(images[0]))
            card = page.wait_for_selector(".card[data-status=ok]", timeout=60_000)
            assert card.get_attribute("data-predicted") == expected["class"]
            assert card.query_selector(".top1 .name").inner_text() == expected["class"]
            assert len(card.query_selector_all("table.members tr")) == 3  # header + 2 members
            cam = card.query_selector("img.gradcam")
            page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=cam)
            # ... and by dropping a file (and a bad one) onto the drop zone.
            data = list(images[1].read_bytes())
            page.evaluate(
                """([bytes, name]) => {
                    const dt = new DataTransfer();
                    dt.items.add(new File([new Uint8Array(bytes)], name, {type: "image/png"}));
                    dt.items.add(new File(["not an image"], "notes.txt", {type: "text/plain"}));
                    document.getElementById("drop").dispatchEvent(
                        new DragEvent("drop", {dataTransfer: dt, bubbles: true, cancelable: true}));
                }""",
                [data, images[1].name],
            )
            page.wait_for_function(
                "document.querySelectorAll('.card').length === 3 && document.body.dataset.pending === '0'"
            )
            dropped = page.query_selector(f".card[data-file='{images[1].name}']")
            assert dropped.get_attribute("data-status") == "ok"
            bad = page.query_selector(".card[data-file='notes.txt']")
            assert bad.get_attribute("data-status") == "error"
            assert bad.get_attribute("data-code") == "not_an_image"
            assert "not a recognised image" in bad.inner_text()
            assert page.get_attribute("body", "data-js-errors") == ""
            shot = tmp_path / "serve_page.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert page_errors == []
    # The only console error allowed is the browser's note on the deliberate 415.
    errors = [t for kind, t in messages if kind == "error" and "status of 415" not in t]
    assert errors == []
    with Image.open(shot) as img:
        pixels = np.asarray(img.convert("RGB"))
    assert pixels.shape[1] == 1280 and pixels.std() > 10


@pytest.mark.slow
def test_serve_cli_binds_loopback_and_answers(tmp_path_factory):
    import socket
    import subprocess
    import sys
    import time

    path, _ = exported(tmp_path_factory, "stacking")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "ensemblecv", "serve", str(path), "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                health = get_json(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except OSError:
                assert time.monotonic() < deadline, "serve did not answer"
                time.sleep(0.3)
        assert health["status"] == "ok"
        psutil = pytest.importorskip("psutil")
        others = [
            a.address
            for addrs in psutil.net_if_addrs().values()
            for a in addrs
            if a.family == socket.AF_INET and not a.address.startswith("127.")
        ]
        for address in others:  # loopback only: refused on the machine's other addresses
            with pytest.raises(OSError):
                socket.create_connection((address, port), timeout=2).close()
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert f"http://127.0.0.1:{port}/" in " ".join(out.split())
