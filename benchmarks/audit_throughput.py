"""Throughput and peak memory of ``run_audit`` on a folder of PNGs.

    PYTHONPATH=src python benchmarks/audit_throughput.py                 # 60k Fashion-MNIST
    PYTHONPATH=src python benchmarks/audit_throughput.py --limit 6000 --workers 4
    PYTHONPATH=src python benchmarks/audit_throughput.py --data path/to/folder

Without ``--data`` it audits Fashion-MNIST train exported as real PNG files in
ImageFolder layout (``/tmp/fmnist_export``, or ``/tmp/fmnist_export_<limit>``
with ``--limit``), so the figures include file I/O and PNG decoding as a user's
folder would. The export runs in this process; the audit is measured in a fresh
child process, so its peak RSS is not inflated by the export: ``ru_maxrss``
of the process itself, and for the decode workers the larger of
``RUSAGE_CHILDREN`` and their sampled ``VmHWM`` (see :class:`DescendantPeak`).
Prints one line such as::

    audit: 60000 images in 41.2 s = 1456 images/s; peak RSS main 310 MiB, workers 120 MiB
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

EXPORT_ROOT = Path("/tmp/fmnist_export")


def export_fashion_mnist(root: Path, limit: int | None = None) -> Path:
    """Write Fashion-MNIST train as ``root/<class_name>/<index>.png`` unless already there.

    The export is written to a temporary folder and renamed at the end, so an
    interrupted export is never mistaken for a complete one.
    """
    if root.is_dir():
        return root
    from PIL import Image

    from ensemblecv.data.builtin import load_split

    split = load_split("fashion-mnist", "train")
    n = len(split.labels) if limit is None else min(limit, len(split.labels))
    tmp = Path(tempfile.mkdtemp(prefix=root.name + ".", dir=root.parent))
    for name in split.classes:
        (tmp / name).mkdir()
    t0 = time.perf_counter()
    for i in range(n):
        name = split.classes[int(split.labels[i])]
        Image.fromarray(split.images[i]).save(tmp / name / f"{i:05d}.png")
    os.rename(tmp, root)
    print(f"exported {n} PNGs to {root} in {time.perf_counter() - t0:.1f} s")
    return root


def _mib(kib: float) -> float:
    return kib / 1024  # ru_maxrss and VmHWM are in KiB on Linux


class DescendantPeak(threading.Thread):
    """Largest peak RSS (VmHWM) seen among this process's descendants, sampled.

    RUSAGE_CHILDREN only counts children that have exited *and been reaped by
    this process*. The scan's pool uses the forkserver start method, so its
    workers are children of the fork server, which lives until interpreter
    exit: RUSAGE_CHILDREN alone would report 0. Sampling ``/proc`` every
    ``interval`` seconds sees them while they run; VmHWM is the kernel's own
    high-water mark, so a sample taken any time before exit is exact for
    everything up to that moment.
    """

    def __init__(self, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.peak_kib = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self._sample()
            self._stop_event.wait(self.interval)

    def stop(self) -> float:
        self._stop_event.set()
        self.join()
        self._sample()
        return _mib(self.peak_kib)

    def _sample(self) -> None:
        for pid in _descendants(os.getpid()):
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue  # exited between listing and reading
            for line in status.splitlines():
                if line.startswith("VmHWM:"):
                    self.peak_kib = max(self.peak_kib, int(line.split()[1]))


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                kids = [int(k) for k in (task / "children").read_text().split()]
            except OSError:
                continue
            out += kids
            todo += kids
    return out


def measure(data: str, workers: int | None, limit: int | None, progress: bool) -> None:
    """Run one audit in this process and print the figures (the child side)."""
    from ensemblecv.audit import run_audit
    from ensemblecv.data.samples import load_samples

    # Baseline: what importing the package already costs, before any image is read.
    base_main = _mib(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    table = load_samples(data)
    if limit is not None and limit < len(table):
        table = table.subset([i < limit for i in range(len(table))])
    sampler = DescendantPeak()
    sampler.start()
    with tempfile.TemporaryDirectory(prefix="audit_bench_") as out:
        t0 = time.perf_counter()
        result = run_audit(table, Path(out), workers=workers, progress=progress)
        wall = time.perf_counter() - t0
    sampled = sampler.stop()
    n = result.audit["n_images"]
    secs = result.audit["run"]["seconds"]
    main = _mib(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    reaped = _mib(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    print(
        f"audit: {n} images in {wall:.1f} s = {n / wall:.0f} images/s; "
        f"peak RSS main {main:.0f} MiB, workers {max(sampled, reaped):.0f} MiB"
    )
    print(
        f"  breakdown: scan {secs['scan_s']:.1f} s ({result.audit['run']['images_per_s']:.0f} "
        f"images/s), compute {secs['compute_s']:.2f} s, plots {secs['plots_s']:.1f} s; "
        f"workers={workers if workers is not None else 'default'}, cpus={os.cpu_count()}"
    )
    print(
        f"  memory detail: main {base_main:.0f} MiB after imports; workers: largest sampled "
        f"VmHWM {sampled:.0f} MiB, RUSAGE_CHILDREN {reaped:.0f} MiB (reaped children only)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", help="folder, CSV or built-in name (default: exported FMNIST)")
    parser.add_argument("--limit", type=int, help="audit only the first N samples")
    parser.add_argument("--workers", type=int, help="decode processes (default: up to 8)")
    parser.add_argument("--progress", action="store_true", help="show the progress bar")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(args.data, args.workers, args.limit, args.progress)
        return
    data = args.data
    if data is None:
        root = EXPORT_ROOT if args.limit is None else Path(f"{EXPORT_ROOT}_{args.limit}")
        data = str(export_fashion_mnist(root, args.limit))
    cmd = [sys.executable, os.path.abspath(__file__), "--measure", "--data", data]
    for flag, value in (("--limit", args.limit), ("--workers", args.workers)):
        if value is not None:
            cmd += [flag, str(value)]
    if args.progress:
        cmd.append("--progress")
    sys.exit(subprocess.run(cmd, check=False).returncode)


if __name__ == "__main__":
    main()
