"""``ensemblecv demo --task domains``: ERM vs MixStyle vs weight averaging vs the ensemble of
averages, leave-one-domain-out, on a built-in multi-domain set, offline.

The set is Fashion-MNIST (or digits, when Fashion-MNIST is not installed) rendered in
four styles — photo, inverted, colour, sketch — one domain each. Every method is
trained with several seeds (``train.repeats``) in every held-out sub-experiment;
the ensembles are fitted on training-domain out-of-fold predictions only.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from rich.console import Console

from ..config import ExperimentConfig, load_config
from ..data import builtin

#: The families compared, as config overrides on the shared base config.
METHODS: dict[str, dict] = {
    "erm": {},
    "mixstyle": {"model": {"mixstyle": {"p": 0.5, "alpha": 0.1, "mix": "random"}}},
    "swa": {"train": {"weight_averaging": {"method": "swa", "start": 0.5}}},
}
#: Ensembles of one family over its seeds, fitted on training-domain OOF.
ENSEMBLE_METHOD = "soft_voting"


def domains_dataset() -> str:
    return "fashion-mnist-domains" if builtin.fashion_mnist_available() else "digits-domains"


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out.get(k, {}), v) if isinstance(v, dict) else v
    return out


def domain_demo_configs(
    workspace: Path,
    fast: bool = False,
    dataset: str | None = None,
    seeds: int = 3,
    epochs: int | None = None,
    per_domain: int | None = None,
    folds: int | None = None,
    methods: list[str] | None = None,
) -> list[ExperimentConfig]:
    """One leave-one-domain-out config per method, sharing data settings (so they share folds).

    Defaults: ``fast`` — 150 images per domain, 4 epochs; full — 300 per domain, 8 epochs;
    both 2 folds, 16×16 RGB, the built-in ``cnn_small`` (BatchNorm after every conv, so
    MixStyle and BatchNorm recomputation have something to act on; it learns these
    small sets much faster than ``mnist_cnn``), batch 32, constant learning rate (as
    DomainBed), ``seeds`` runs per method.
    """
    dataset = dataset or domains_dataset()
    per_domain = per_domain or (150 if fast else 300)
    n_domains = 4
    data = {
        "train": dataset,
        "protocol": "leave_one_domain_out",
        "image_size": 16,
        "channels": 3,
        "folds": folds or 2,
        "resize": "stretch",
        "limit": per_domain * n_domains,
    }
    base = {
        "workspace": str(workspace),
        "data": data,
        "model": {"name": "cnn_small"},
        "train": {
            "epochs": epochs or (4 if fast else 8),
            "batch_size": 32,
            "lr": 0.002,
            "weight_decay": 0.01,
            "scheduler": "none",
            "seed": 0,
            "repeats": seeds,
            # Every method's held-out-domain score averages its fold models, the same protocol
            # for all, so the table compares like with like; a refit each would double the time.
            "refit_full": False,
        },
        "augment": {"preset": "light"},
        "tracking": "none",
    }
    return [
        load_config(None, [], base=_merge(base, {"name": name, **METHODS[name]}))
        for name in (methods or list(METHODS))
    ]


def family_ensembles(configs: list[ExperimentConfig]) -> dict[str, tuple[str, list[str]]]:
    """``ensemble_of_<family>``: soft voting over one family's seeds (e.g. the ensemble of
    averages, EoA, from the ``swa`` runs)."""
    from ..training.runner import bag_members

    out = {}
    for cfg in configs:
        members = [m.run_name for m in bag_members(cfg)]
        if len(members) >= 2:
            label = "averages" if cfg.train.weight_averaging is not None else cfg.run_name
            out[f"ensemble_of_{label}"] = (ENSEMBLE_METHOD, members)
    return out


def run_domains_demo(
    workspace: Path,
    fast: bool = False,
    console: Console | None = None,
    progress: bool = True,
    dataset: str | None = None,
    epochs: int | None = None,
    seeds: int = 3,
    per_domain: int | None = None,
    folds: int | None = None,
    threads: int | None = 1,
) -> pd.DataFrame:
    """Train every method on every held-out domain, ensemble, print and return the domain table.

    ``threads``: torch CPU threads while it runs (restored after). One is the default
    because these 16-px models are too small to gain from intra-op parallelism, and on a
    shared machine two threads per process oversubscribe the cores (measured 5× slower
    at load 10 on 2 cores).
    """
    import torch

    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return _run(workspace, fast, console, progress, dataset, epochs, seeds, per_domain, folds)
    finally:
        torch.set_num_threads(previous)


def _run(workspace, fast, console, progress, dataset, epochs, seeds, per_domain, folds):
    from ..training import train
    from .protocol import build_lodo_ensembles, lodo_domains
    from .table import print_domain_table

    console = console or Console()
    configs = domain_demo_configs(workspace, fast, dataset, seeds, epochs, per_domain, folds)
    first = configs[0]
    domains = lodo_domains(first)
    console.rule(
        f"[bold]ensemblecv demo --task domains[/] on {first.data.train}: "
        f"leave one of {len(domains)} domains out ({', '.join(domains)})"
        + (" (fast)" if fast else "")
    )
    for cfg in configs:
        console.rule(
            f"train {cfg.run_name} × {cfg.train.repeats} seeds: {len(domains)} held-out domains × "
            f"{cfg.data.folds} folds × {cfg.train.epochs} epochs"
        )
        train(cfg, progress=progress)
    console.rule("ensembles (fitted on training-domain out-of-fold predictions only)")
    frame = build_lodo_ensembles(
        workspace,
        methods=["soft_voting", "ensemble_selection"],
        named=family_ensembles(configs),
    )
    print_domain_table(frame, console)
    console.print(
        f"Per run and ensemble: [bold]{workspace / 'domains.csv'}[/]; each held-out domain is a "
        f"normal workspace under {workspace / 'domains'}/ (train, ensemble, report work there)."
    )
    return frame
