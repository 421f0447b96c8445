"""Does ``torch.compile`` make the small-image networks train faster here?

Issue 16 asks for ``torch.compile`` only where it measures faster. This times
training steps of ``resnet9_small`` (channels_last, SGD, random 28 px batches)
eager and compiled, on whatever device is present, and prints the compile time
(the first steps) beside the steady images/s:

    python benchmarks/compile_speed.py [--widths 8 16 32] [--batch 256] [--steps 30]

On the 2-core development machine (torch 2.14.1, inductor with gcc) compiled ÷ eager
was 0.85–1.07 at width 8 and 0.83–0.95 at widths 16 and 32, after 3–64 s of compiling,
so no recipe turns it on (docs/recipes.md).
"""

from __future__ import annotations

import argparse
import time


def _steps(model, x, y, n: int) -> float:
    import torch

    opt = torch.optim.SGD(model.parameters(), 0.01, momentum=0.9)
    start = time.perf_counter()
    for _ in range(n):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    if x.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--widths", type=int, nargs="+", default=[8, 32])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=30)
    args = ap.parse_args()

    import timm
    import torch

    import ensemblecv.models  # noqa: F401  (registers resnet9_small)

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    x = torch.randn(args.batch, 1, 28, 28, device=device).to(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (args.batch,), device=device)
    print(f"device {device}, torch {torch.__version__}, batch {args.batch}")
    for width in args.widths:
        torch.manual_seed(0)
        model = timm.create_model("resnet9_small", num_classes=10, width=width)
        model = model.to(device, memory_format=torch.channels_last)
        rows = []
        for label, m in (("eager", model), ("compiled", torch.compile(model))):
            first = _steps(m, x, y, 3)  # compiling happens here
            steady = args.batch * args.steps / _steps(m, x, y, args.steps)
            rows.append(steady)
            print(f"width {width:3d} {label:8s}: first 3 steps {first:6.1f} s, {steady:7.0f} img/s")
        print(f"width {width:3d} compiled / eager: {rows[1] / rows[0]:.2f}")


if __name__ == "__main__":
    main()
