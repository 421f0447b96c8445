"""Server-side batching: concurrent requests share one model call.

Small models spend most of a call on fixed overhead (session setup, thread
hand-off, Python), so 32 images in one call cost little more than one. One
worker thread owns the model: it takes the first waiting request, then
gathers whatever else arrives within ``max_wait_ms`` up to ``max_batch``
images, runs them together and hands each request its rows. Inference stays
off the event loop, and the model is never called from two threads at once.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future

import numpy as np

Predict = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


class MicroBatcher:
    """``submit(images (n, H, W, C)) -> Future[(probs (n, K), members (n, M, K))]``."""

    def __init__(self, predict: Predict, max_batch: int = 32, max_wait_ms: float = 2.0) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self._predict = predict
        self.max_batch = int(max_batch)
        self.max_wait = max(0.0, float(max_wait_ms)) / 1000.0
        self._queue: queue.Queue = queue.Queue()
        self._stopped = threading.Event()
        #: Model calls and images so far (what ``/health`` reports).
        self.calls = 0
        self.images = 0
        self._thread = threading.Thread(target=self._run, name="ensemblecv-batcher", daemon=True)
        self._thread.start()

    def submit(self, images: np.ndarray) -> Future:
        future: Future = Future()
        if self._stopped.is_set():
            future.set_exception(RuntimeError("the model worker has stopped"))
        else:
            self._queue.put((images, future))
        return future

    def close(self) -> None:
        self._stopped.set()
        self._queue.put(None)
        self._thread.join(timeout=5)

    def _gather(self, first) -> list:
        items, count = [first], len(first[0])
        deadline = time.monotonic() + self.max_wait
        while count < self.max_batch:
            timeout = deadline - time.monotonic()
            try:
                item = self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:  # close(): finish this batch, then stop
                self._queue.put(None)
                break
            items.append(item)
            count += len(item[0])
        return items

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            items = self._gather(first)
            try:
                batch = np.concatenate([images for images, _ in items])
                probs, members = self._predict(batch)
            except Exception as exc:  # every waiting request learns of it; the worker goes on
                for _, future in items:
                    future.set_exception(exc)
                continue
            self.calls += 1
            self.images += len(batch)
            start = 0
            for images, future in items:
                stop = start + len(images)
                future.set_result((probs[start:stop], members[start:stop]))
                start = stop
