"""Leave-one-domain-out on the built-in multi-domain set: ERM, MixStyle, weight averaging
(SWA) and the ensemble of averages (EoA), mean ± spread over seeds.

Fashion-MNIST rendered in four styles (photo, inverted, colour, sketch; digits when
Fashion-MNIST is not installed), each domain held out in turn. Every method trains
``--seeds`` runs per held-out domain; checkpoints, ensemble weights and the
"selected" row use training-domain out-of-fold predictions only. Prints the
DomainBed-style table (accuracy % on each held-out domain and the average) and the
ensemble of averages' gain over ERM on the average.

    python benchmarks/domains.py [--per-domain 200] [--folds 2] [--epochs 6] [--seeds 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-domain", type=int, default=200, help="images per domain")
    parser.add_argument("--folds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--workspace", type=Path, default=None, help="default: a temp folder")
    args = parser.parse_args()

    from rich.console import Console

    from ensemblecv.domains.demo import run_domains_demo
    from ensemblecv.domains.table import seed_summary

    console = Console(width=120)
    with tempfile.TemporaryDirectory() as tmp:
        ws = args.workspace or Path(tmp) / "lodo"
        start = time.perf_counter()
        frame = run_domains_demo(
            ws,
            console=console,
            progress=False,
            epochs=args.epochs,
            seeds=args.seeds,
            per_domain=args.per_domain,
            folds=args.folds,
            threads=args.threads,
        )
        seconds = time.perf_counter() - start
        summary = seed_summary(frame).set_index("family")
        erm, eoa = summary.loc["erm", "average"], summary.loc["ensemble_of_averages", "average"]
        console.print(
            f"{args.per_domain} images per domain, {args.folds} folds, {args.epochs} epochs, "
            f"{args.seeds} seeds, {seconds / 60:.1f} min wall, {time.process_time() / 60:.1f} min CPU. Ensemble of averages − ERM on the "
            f"average: [bold]{100 * (eoa - erm):+.1f}[/] points "
            f"({100 * eoa:.1f} vs {100 * erm:.1f} ± {100 * summary.loc['erm', 'average_std']:.1f})."
        )
        for family in ("mixstyle", "swa", "ensemble_of_erm"):
            if family in summary.index:
                v = summary.loc[family, "average"]
                console.print(f"  {family} − ERM: {100 * (v - erm):+.1f} points")


if __name__ == "__main__":
    main()
