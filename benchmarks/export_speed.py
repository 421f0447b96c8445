"""ONNX Runtime (CPU) vs eager PyTorch for the same exported ensemble and batch.

    PYTHONPATH=src python benchmarks/export_speed.py runs/demo                  # best ensemble
    PYTHONPATH=src python benchmarks/export_speed.py runs/demo --ensemble stacking --batch 64
    PYTHONPATH=src python benchmarks/export_speed.py runs/demo --data digits:test   # + vs predict

Builds the ensemble module (every member's models, normalisation and rule,
exactly what ``ensemblecv export`` traces), exports it to a temporary .onnx,
then times both on the same uint8 batch of real workspace images (resized
once, as ``serve`` would), with the same number of threads, after a warm-up.
Also prints the largest |ONNX Runtime - PyTorch| over the batch. Target: ONNX
Runtime at least 1.5× faster. Prints::

    ensemble stacking: 9 models in 3 members, input (64, 16, 16, 1) uint8, 2 threads
    pytorch eager : 2,345 images/s (27.3 ms per batch of 64, median of 20)
    onnxruntime   : 5,678 images/s (11.3 ms per batch of 64, median of 20)
    speed-up 2.42x; max |ORT - torch| 3.0e-07 over 64 images x 10 classes
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def _median_ms(fn, repeats: int) -> float:
    fn()  # warm-up: first calls allocate and pick kernels
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def _versus_predict(args, built, session) -> None:
    """ONNX Runtime on every image of ``args.data`` vs ``predict`` (decoded the same way)."""
    import numpy as np

    from ensemblecv.data.resize import resize_op
    from ensemblecv.data.samples import load_samples
    from ensemblecv.inference import predict
    from ensemblecv.training.data import ImageSource

    table = load_samples(args.data)
    _, want, _, _ = predict(args.workspace, table, args.ensemble)
    spec = built.input
    source = ImageSource(table, spec.channels, resize_op(spec.resize, spec.size), spec.size, 512)
    got = np.concatenate(
        [
            session.run(
                None, {"images": np.stack([source[i] for i in range(a, min(a + 256, len(source)))])}
            )[0]
            for a in range(0, len(source), 256)
        ]
    )
    same = float((got.argmax(1) == want.argmax(1)).mean())
    print(
        f"vs `predict` on {args.data}: {len(got):,} images, max |ORT - predict| "
        f"{float(np.abs(got - want).max()):.1e}, same class for {same:.2%}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workspace", type=Path)
    parser.add_argument("--ensemble", default="best")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=0, help="0 = torch's default")
    parser.add_argument(
        "--data", help="also compare with `ensemblecv predict` on these images (e.g. digits:test)"
    )
    args = parser.parse_args()

    import numpy as np
    import onnxruntime as ort
    import torch

    from ensemblecv.shipping import build_ensemble
    from ensemblecv.shipping.onnx_export import export_onnx, sample_images

    threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    built = build_ensemble(args.workspace, args.ensemble)
    images = sample_images(args.workspace, built, n=args.batch)
    if len(images) < args.batch:  # a tiny workspace: repeat its images
        images = np.resize(images, (args.batch, *images.shape[1:]))
    n_models = sum(len(m.models) for m in built.graph.members)
    print(
        f"ensemble {built.spec['name']}: {n_models} models in {len(built.members)} members, "
        f"input {tuple(images.shape)} uint8, {threads} threads"
    )
    with tempfile.TemporaryDirectory() as tmp:
        result = export_onnx(args.workspace, Path(tmp) / "model.onnx", args.ensemble)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(
            str(result.onnx_path), options, providers=["CPUExecutionProvider"]
        )
        x = torch.from_numpy(images)

        def eager():
            with torch.inference_mode():
                return built.graph(x)

        def onnx():
            return session.run(None, {"images": images})

        t_torch = _median_ms(eager, args.repeats)
        t_ort = _median_ms(onnx, args.repeats)
        diff = float(np.abs(onnx()[0] - eager()[0].numpy()).max())
        if args.data:
            _versus_predict(args, built, session)
    for name, ms in (("pytorch eager", t_torch), ("onnxruntime", t_ort)):
        print(
            f"{name:14s}: {args.batch / ms * 1000:,.0f} images/s "
            f"({ms:.1f} ms per batch of {args.batch}, median of {args.repeats})"
        )
    print(
        f"speed-up {t_torch / t_ort:.2f}x; max |ORT - torch| {diff:.1e} over "
        f"{len(images)} images x {len(built.classes)} classes"
    )


if __name__ == "__main__":
    main()
