"""ensemblecv's EnsembleSelection against AutoGluon's, on the same inputs.

    python -m venv /tmp/agvenv --system-site-packages     # once: AutoGluon stays out of the
    /tmp/agvenv/bin/pip install autogluon.core              # project's own Python
    python benchmarks/ensemble_selection_vs_autogluon.py    # M=30, N=10,000, C=100, log_loss
    python benchmarks/ensemble_selection_vs_autogluon.py --ag-python /path/to/python -m 10 -n 2000

Synthetic member probabilities (float32, fixed seed) are written once to an
``.npz`` in /tmp. Each side then runs in its own child process — ensemblecv
with this Python, AutoGluon's
``autogluon.core.models.greedy_ensemble.ensemble_selection.EnsembleSelection``
with ``--ag-python`` — so wall time and peak RSS (``ru_maxrss`` of that child)
are measured separately. Both use AutoGluon's default ensemble size (25, from
``GreedyWeightedEnsembleModel``) and log loss; AutoGluon keeps the best prefix
of its trajectory, as ensemblecv does. Prints times, the speed-up, peak RSS
(whole child, and the rise during ``fit`` alone), members and weights of both,
and whether they match.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

AG_DEFAULT_ENSEMBLE_SIZE = 25  # autogluon.core GreedyWeightedEnsembleModel default params


def make_probas(m: int, n: int, c: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(M, N, C) float32 softmax probabilities and (N,) labels.

    Members come in families that share a noise component (correlated errors,
    like fold models of one architecture), with qualities from weak to strong
    and temperatures from under- to over-confident.
    """
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    n_families = max(1, m // 5)
    family_noise = [rng.standard_normal((n, c)).astype(np.float32) for _ in range(n_families)]
    probas = np.empty((m, n, c), dtype=np.float32)
    rows = np.arange(n)
    for i in range(m):
        quality = 5.0 + 2.0 * rng.random()  # true-class logit margin
        share = 0.3 + 0.6 * rng.random()  # how much of the member's noise its family shares
        temperature = 0.6 + 0.8 * rng.random()  # < 1 over-confident, > 1 under-confident
        logits = np.sqrt(share) * family_noise[i % n_families]
        logits += np.sqrt(1.0 - share) * rng.standard_normal((n, c)).astype(np.float32)
        logits *= 2.0
        logits[rows, y] += quality
        logits /= temperature
        logits -= logits.max(1, keepdims=True)
        np.exp(logits, out=logits)
        logits /= logits.sum(1, keepdims=True)
        probas[i] = logits
    return probas, y


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _child(side: str, data: str, size: int) -> None:
    """Run one side on ``data`` and print a JSON line of its figures."""
    if side == "ensemblecv":
        from ensemblecv.ensemble import EnsembleSelection
    else:
        from autogluon.core.metrics import log_loss
        from autogluon.core.models.greedy_ensemble.ensemble_selection import EnsembleSelection
    imported = _peak_mib()
    with np.load(data) as f:
        probas, y = f["probas"], f["y"]
    members = list(probas)  # views: both sides get the same list of (N, C) float32 arrays
    loaded = _peak_mib()
    t0 = time.perf_counter()
    if side == "ensemblecv":
        est = EnsembleSelection(n_iterations=size, metric="log_loss").fit(members, y)
        trajectory = est.trajectory_[: est.best_iteration_ + 1]
    else:
        est = EnsembleSelection(
            ensemble_size=size,
            problem_type="multiclass",
            metric=log_loss,
            random_state=np.random.RandomState(0),
        )
        est.fit(predictions=members, labels=y)
        trajectory = est.trajectory_
    seconds = time.perf_counter() - t0
    peak = _peak_mib()
    print(
        json.dumps(
            {
                "seconds": seconds,
                "peak_mib": peak,
                "imported_mib": imported,
                "loaded_mib": loaded,
                "indices": [int(i) for i in est.indices_],
                "weights": [float(w) for w in est.weights_],
                "trajectory": [float(t) for t in trajectory],
            }
        )
    )


def _run_child(python: str, side: str, data: Path, size: int) -> dict:
    cmd = [python, __file__, "--child", side, "--data", str(data), "--size", str(size)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{side} child failed ({' '.join(cmd)}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _fmt_weights(weights: list[float]) -> str:
    return ", ".join(f"{i}:{w:.4f}" for i, w in enumerate(weights) if w > 0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--ag-python",
        default="/tmp/agvenv/bin/python",
        help="Python of the virtual environment that has autogluon.core",
    )
    parser.add_argument("-m", "--members", type=int, default=30)
    parser.add_argument("-n", "--samples", type=int, default=10_000)
    parser.add_argument("-c", "--classes", type=int, default=100)
    parser.add_argument(
        "--size",
        type=int,
        default=AG_DEFAULT_ENSEMBLE_SIZE,
        help="ensemble_size / n_iterations for both (AutoGluon's default: 25)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", choices=["ensemblecv", "autogluon"], help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child, args.data, args.size)
        return
    data = Path(
        f"/tmp/ensemble_bench_m{args.members}_n{args.samples}_c{args.classes}_s{args.seed}.npz"
    )
    if not data.is_file():
        probas, y = make_probas(args.members, args.samples, args.classes, args.seed)
        tmp = data.with_suffix(".tmp.npz")
        np.savez(tmp, probas=probas, y=y)
        tmp.rename(data)
        del probas
    print(
        f"inputs: M={args.members} members, N={args.samples} samples, C={args.classes} classes "
        f"(float32, {data}); ensemble size {args.size}, metric log_loss"
    )
    ours = _run_child(sys.executable, "ensemblecv", data, args.size)
    theirs = _run_child(args.ag_python, "autogluon", data, args.size)
    for name, r in (("ensemblecv", ours), ("autogluon", theirs)):
        print(
            f"{name:>10}: fit {r['seconds']:.3f} s; peak RSS {r['peak_mib']:.0f} MiB "
            f"(after imports {r['imported_mib']:.0f}, after loading inputs {r['loaded_mib']:.0f}, "
            f"rise during fit {r['peak_mib'] - r['loaded_mib']:.0f} MiB)"
        )
    print(f"speed-up: {theirs['seconds'] / ours['seconds']:.1f}x")
    for name, r in (("ensemblecv", ours), ("autogluon", theirs)):
        print(f"{name:>10}: {len(r['indices'])} picks {r['indices']}")
        print(
            f"{'':>10}  weights {{{_fmt_weights(r['weights'])}}}; "
            f"best score {min(r['trajectory']):.6f}"
        )
    same_members = ours["indices"] == theirs["indices"]
    same_weights = np.allclose(ours["weights"], theirs["weights"])
    same_traj = len(ours["trajectory"]) == len(theirs["trajectory"]) and np.allclose(
        ours["trajectory"], theirs["trajectory"], rtol=0, atol=2e-6
    )
    print(
        f"same picks: {same_members}; weights match (np.allclose): {same_weights}; "
        f"trajectories match (atol 2e-6): {same_traj}"
    )


if __name__ == "__main__":
    main()
