"""Load-test ``ensemblecv serve`` on loopback: throughput, latency, errors, memory.

    PYTHONPATH=src python benchmarks/serve_load.py model.onnx                       # 10,000 requests
    PYTHONPATH=src python benchmarks/serve_load.py model.onnx --concurrency 16 --duration 60
    PYTHONPATH=src python benchmarks/serve_load.py model.onnx --compare              # batching on/off

Starts the real server (``python -m ensemblecv serve TARGET --port P``) in a
child process, waits for ``/health``, then ``--concurrency`` client threads,
each with its own keep-alive connection, POST one image per request (real
PNGs of the workspace's size, a few of them deliberately larger than the
model input so resizing is timed too) until ``--requests`` have been sent or
``--duration`` seconds have passed. The server's resident memory (RSS) is read
before the first request, after a warm-up of ``--warmup`` requests and at the
end: growth between the last two is what a leak would show. ``--compare``
runs the server twice, without server-side batching (``--max-batch 1``) and
with it, so the faster setting is measured, not assumed. Targets: zero errors,
no memory growth across 10,000 requests. Prints::

    batching max_batch=32 wait=2.0ms: 10000 requests in 41.2 s, 243 req/s, p50 31 ms, p95 58 ms,
      errors 0, server RSS 212 MB at start, 231 MB after 500 warm-up, 231 MB at the end (+0.0 MB)
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _images(size: int, channels: int, n: int = 16) -> list[bytes]:
    from PIL import Image

    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        side = size if i % 4 else size * 3  # every 4th is larger: the server resizes it
        shape = (side, side + i % 3) + ((3,) if channels == 3 else ())
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(buf, "PNG")
        out.append(buf.getvalue())
    return out


def _rss_mb(pid: int) -> float:
    import psutil

    return psutil.Process(pid).memory_info().rss / 2**20


def _wait_ready(port: int, proc: subprocess.Popen, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with code {proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/model")
            info = json.loads(conn.getresponse().read())
            conn.close()
            return info
        except OSError:
            time.sleep(0.3)
    raise SystemExit("the server did not answer in time")


class _Load:
    """Client threads sharing a request budget; each records (latency ms, ok)."""

    def __init__(self, port: int, bodies: list[tuple[bytes, str]], total: int, until: float):
        self.port, self.bodies = port, bodies
        self.lock = threading.Lock()
        self.sent, self.total, self.until = 0, total, until
        self.latencies: list[float] = []
        self.errors: list[str] = []

    def _take(self) -> int | None:
        with self.lock:
            if self.sent >= self.total or time.monotonic() > self.until:
                return None
            self.sent += 1
            return self.sent

    def worker(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        while (k := self._take()) is not None:
            body, ctype = self.bodies[k % len(self.bodies)]
            t = time.perf_counter()
            try:
                conn.request("POST", "/predict", body=body, headers={"Content-Type": ctype})
                response = conn.getresponse()
                payload = response.read()
                ok = response.status == 200 and b'"predictions"' in payload
                if not ok:
                    self.errors.append(f"HTTP {response.status}: {payload[:200]!r}")
            except (OSError, http.client.HTTPException) as exc:
                self.errors.append(f"{type(exc).__name__}: {exc}")
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                continue
            with self.lock:
                self.latencies.append((time.perf_counter() - t) * 1000)
        conn.close()


def _run_load(port: int, bodies, total: int, duration: float, concurrency: int) -> tuple:
    load = _Load(port, bodies, total, time.monotonic() + duration)
    threads = [threading.Thread(target=load.worker) for _ in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return load, time.perf_counter() - start


def bench(args, max_batch: int, wait_ms: float) -> None:
    from ensemblecv.shipping.client import encode_multipart

    port = _free_port()
    cmd = [sys.executable, "-m", "ensemblecv", "serve", str(args.target), "--port", str(port)]
    cmd += ["--max-batch", str(max_batch), "--batch-wait-ms", str(wait_ms)]
    cmd += ["--threads", str(args.threads)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ)
    try:
        info = _wait_ready(port, proc)
        spec = info["input"]
        bodies = [
            encode_multipart([(f"{i}.png", b)])
            for i, b in enumerate(_images(spec["height"], spec["channels"]))
        ]
        rss_start = _rss_mb(proc.pid)
        warm, _ = _run_load(port, bodies, args.warmup, args.duration, args.concurrency)
        rss_warm = _rss_mb(proc.pid)
        load, seconds = _run_load(port, bodies, args.requests, args.duration, args.concurrency)
        rss_end = _rss_mb(proc.pid)
        alive = proc.poll() is None
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    lat = np.array(load.latencies) if load.latencies else np.array([np.nan])
    errors = load.errors + warm.errors
    print(
        f"{'batching' if max_batch > 1 else 'no batching'} max_batch={max_batch} wait={wait_ms}ms, "
        f"{args.concurrency} clients: {len(load.latencies):,} requests in {seconds:.1f} s, "
        f"{len(load.latencies) / seconds:,.0f} req/s, p50 {np.percentile(lat, 50):.1f} ms, "
        f"p95 {np.percentile(lat, 95):.1f} ms, errors {len(errors)}, server alive {alive}"
    )
    print(
        f"  server RSS {rss_start:.0f} MB at start, {rss_warm:.0f} MB after {args.warmup} "
        f"warm-up requests, {rss_end:.0f} MB at the end ({rss_end - rss_warm:+.1f} MB)"
    )
    for e in errors[:5]:
        print("  error:", e)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", type=Path, help="an exported .onnx file (or a workspace)")
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--duration", type=float, default=300.0, help="upper bound, seconds")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--batch-wait-ms", type=float, default=2.0)
    parser.add_argument("--threads", type=int, default=0, help="server inference threads")
    parser.add_argument("--compare", action="store_true", help="also without batching")
    args = parser.parse_args()
    if args.compare:
        bench(args, 1, 0.0)
    bench(args, args.max_batch, args.batch_wait_ms)


if __name__ == "__main__":
    main()
