"""Leave-one-domain-out: each domain in turn is the unseen test set.

Layout of a protocol workspace::

    WORKSPACE/
      protocol.json                  protocol, domains, data source
      domains/<held_out>/            a normal workspace: samples/folds of the *training*
                                     domains only, runs/, leaderboard.csv, ensembles/
      domains.csv                    one row per run/ensemble, a column per held-out domain
      leaderboard.csv                the same rows: mean training-domain CV and test accuracy

Inside a sub-workspace the usual stratified (group-aware) K-fold over the training
domains gives out-of-fold predictions — DomainBed's *training-domain validation* —
on which checkpoints, ensemble weights and the leaderboard order are chosen. The
held-out domain is the sub-workspace's labelled test set: it is predicted, never
trained on, selected on or measured for normalisation statistics
(:func:`ensemblecv.training.inputs.load_training_table` removes it before the scan).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .._io import atomic_write_text
from ..config import ExperimentConfig
from ..errors import ConfigError, DataError
from .layout import PROTOCOL_FILE, sub_workspaces


def lodo_domains(config: ExperimentConfig) -> list[str]:
    """The domains of ``data.train`` (after ``data.limit``); at least two, or a clear error."""
    from ..data.domains import list_domains, missing_classes_message
    from ..data.samples import load_samples
    from ..training.inputs import data_layout, limited

    data = config.data
    table = limited(load_samples(data.train, layout=data_layout(data)), data.limit)
    domains = list_domains(table)
    if len(domains) < 2:
        raise DataError(
            f"data.protocol=leave_one_domain_out needs data with at least two domains; "
            f"{data.train!r} has {len(domains)}. Use ROOT/DOMAIN/CLASS/image folders, a 'domain' "
            "column in the CSV index, or a built-in multi-domain set "
            "(fashion-mnist-domains, digits-domains)."
        )
    message = missing_classes_message(table)
    if message:
        import warnings

        warnings.warn(message, UserWarning, stacklevel=3)
    return domains


def held_out_config(config: ExperimentConfig, domain: str) -> ExperimentConfig:
    """The sub-experiment config: workspace ``WORKSPACE/domains/<domain>``, ``data.held_out``."""
    if config.data.test is not None:
        raise ConfigError(
            "data.test is set, but under leave_one_domain_out each held-out domain is the test "
            "set; leave data.test unset."
        )
    data = config.data.model_copy(update={"held_out": domain})
    workspace = str(Path(config.workspace) / "domains" / domain)
    return config.model_copy(update={"data": data, "workspace": workspace})


def _write_protocol(config: ExperimentConfig, domains: list[str]) -> None:
    root = Path(config.workspace)
    root.mkdir(parents=True, exist_ok=True)
    info = {
        "protocol": "leave_one_domain_out",
        "source": config.data.train,
        "domains": domains,
        "folds": config.data.folds,
    }
    path = root / PROTOCOL_FILE
    if path.is_file():
        old = json.loads(path.read_text(encoding="utf-8"))
        if old.get("domains") != domains or old.get("source") != info["source"]:
            raise DataError(
                f"{root} holds a leave-one-domain-out experiment on {old.get('source')!r} with "
                f"domains {old.get('domains')}; this config has {info['source']!r} with {domains}. "
                "Use a new workspace."
            )
        return
    atomic_write_text(path, json.dumps(info, indent=1))


def train_lodo(
    config: ExperimentConfig,
    train,
    folds: list[int] | None = None,
    resume: bool = False,
    progress: bool = True,
    domains: list[str] | None = None,
) -> list:
    """Train ``config`` once per held-out domain (all domains, or ``domains``) with ``train``
    (``training.train``, which calls this for a protocol config: passed in, not imported)."""
    every = lodo_domains(config)
    _write_protocol(config, every)
    todo = domains or every
    unknown = sorted(set(todo) - set(every))
    if unknown:
        raise ConfigError(f"Unknown held-out domain(s) {unknown}; domains: {', '.join(every)}.")
    results = []
    for domain in todo:
        results += train(held_out_config(config, domain), folds, resume, progress)
    return results


def expand_lodo(configs: list[ExperimentConfig]) -> list[ExperimentConfig]:
    """Each leave-one-domain-out config → one config per held-out domain; others as they are.

    What launchers (local job list, Ray) plan over, so every (domain, member, fold)
    is an ordinary job.
    """
    out = []
    for config in configs:
        if config.data.protocol == "leave_one_domain_out" and config.data.held_out is None:
            domains = lodo_domains(config)
            _write_protocol(config, domains)
            out += [held_out_config(config, d) for d in domains]
        else:
            out.append(config)
    return out


def build_lodo_ensembles(
    root: str | Path,
    methods: list[str] | None = None,
    metric: str = "accuracy",
    runs: list[str] | None = None,
    named: dict[str, tuple[str, list[str]]] | None = None,
) -> pd.DataFrame:
    """``ensemblecv ensemble`` on every sub-workspace (fitted on training-domain OOF only),
    plus ``named`` ensembles ``{name: (method, member runs)}`` such as an ensemble of the
    weight-averaged runs; then the domain table. Returns it (see :func:`.table.domain_table`)."""
    from ..ensemble import build_ensembles
    from ..ensemble.build import build_named_ensemble
    from .table import write_domain_table

    subs = sub_workspaces(root)
    if not subs:
        raise DataError(f"{root} has no trained held-out domains yet; run `ensemblecv train`.")
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for ws in subs.values():
            build_ensembles(ws, methods=methods, metric=metric, runs=runs)
            for name, (method, members) in (named or {}).items():
                build_named_ensemble(ws, name, method, members, metric)
    # Every held-out domain trains the same runs: say each thing once, not once per domain.
    for message, category in dict.fromkeys((str(w.message), w.category) for w in caught):
        warnings.warn(message, category, stacklevel=2)
    return write_domain_table(root)
