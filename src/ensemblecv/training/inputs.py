"""Everything a training call needs before its first fold, built once.

The workspace (samples, folds, classes, dataset statistics) is prepared on
first use and only verified afterwards; images are decoded once into the
cache and shared by all folds of the call.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import ExperimentConfig
from ..data.domains import DOMAIN_COLUMN, domain_split, has_domains, list_domains
from ..data.samples import SampleTable, load_samples
from ..data.scan import exclude_bad, scan_table
from ..errors import DataError
from ..workspace import Workspace, prepare_workspace
from .data import ImageSource, default_workers
from .distributed import is_rank_zero, wait_for


@dataclass
class RunInputs:
    workspace: Workspace
    table: SampleTable
    folds: pd.DataFrame
    targets: np.ndarray
    num_classes: int
    source: ImageSource
    train_tf: object
    eval_tf: object
    workers: int
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    #: False for samples that must not be trained on (data.exclude); None = all train.
    train_mask: np.ndarray | None = None
    test_table: SampleTable | None = None
    test_source: ImageSource | None = None
    test_targets: np.ndarray | None = None
    #: Domain names (sorted) and each row's index into them, for multi-domain data.
    domains: list[str] | None = None
    domain_codes: np.ndarray | None = None
    #: Set by ``train`` when the same call also trains the refit: the store reads test
    #: predictions from ``full/`` alone, so the fold models skip the test set.
    refit_follows: bool = False


def _progress(enabled: bool, label: str, total: int):
    from .._progress import maybe_progress

    return maybe_progress(enabled, label, total)


def limited(table: SampleTable, limit: int | None) -> SampleTable:
    """At most ``limit`` samples, taking classes in turn (see ``data.limit``)."""
    if limit is None or limit >= len(table):
        return table
    from ..data.export import balanced_subset

    keep = balanced_subset(table.frame["label"].to_numpy(), limit)
    return table.subset(np.isin(np.arange(len(table)), keep))


def data_layout(data) -> str:
    """The folder layout to read ``data.train`` with: the protocol implies ``domains``."""
    return "domains" if data.protocol == "leave_one_domain_out" else data.layout


def load_training_table(data) -> SampleTable:
    """``data.train`` as read with its layout, limited; without ``data.held_out``'s domain.

    ``data.limit`` applies before the split, so every held-out sub-experiment of a
    leave-one-domain-out protocol draws from the same images.
    """
    table = limited(load_samples(data.train, layout=data_layout(data)), data.limit)
    if data.held_out is not None:
        table = domain_split(table, data.held_out)[0]
    return table


def held_out_table(data) -> SampleTable:
    """The unseen test domain ``data.held_out`` of ``data.train`` (``data.test_limit`` applied)."""
    table = limited(load_samples(data.train, layout=data_layout(data)), data.limit)
    return limited(domain_split(table, data.held_out)[1], data.test_limit)


def _note_protocol(table: SampleTable, data) -> None:
    """Said once, when a workspace is made: domains without the protocol train as before."""
    if has_domains(table) and data.protocol == "kfold":
        import warnings

        warnings.warn(
            f"This data has domains ({', '.join(list_domains(table))}); they are pooled into "
            "ordinary K-fold cross-validation. For domain generalisation set "
            "data.protocol=leave_one_domain_out (docs/domains.md).",
            UserWarning,
            stacklevel=3,
        )


def open_workspace(config: ExperimentConfig, progress: bool = True) -> Workspace:
    """The config's workspace, prepared from ``data.train`` if it is new.

    In a multi-process (DDP) launch only global rank 0 prepares a new
    workspace; the other ranks, which have no process group to wait on yet,
    poll until it is prepared and then only read it. Polling is safe because
    :func:`~ensemblecv.workspace.prepare_workspace` writes every table
    atomically (temporary file + rename) with ``folds.parquet`` last, so
    ``is_prepared()`` never sees half a table; and should two processes prepare
    at once anyway (e.g. a launcher that sets no rank), they write identical
    bytes and the last rename wins. Rank 0 alone also scans the dataset, once
    instead of once per rank.
    """
    from ..tasks import get_task

    ws = Workspace(Path(config.workspace))
    data = config.data
    task = get_task(config.task)
    if data.protocol == "leave_one_domain_out" and data.held_out is None:
        from ..errors import ConfigError

        raise ConfigError(
            "data.protocol=leave_one_domain_out trains one workspace per held-out domain: use "
            "`ensemblecv train` (it runs them all) or set data.held_out=DOMAIN for one of them."
        )
    if not is_rank_zero():
        wait_for(ws.is_prepared, f"preparing the workspace {ws.root}")
    if ws.is_prepared():
        info = ws.info()
        made_for = info.get("task", "classify")
        if made_for != config.task:
            raise DataError(
                f"Workspace {ws.root} holds a {made_for!r} dataset, but the config says "
                f"task: {config.task}; use a new workspace for another task."
            )
        source = task.source_id(data)
        if info.get("source") not in (None, source):
            raise DataError(
                f"Workspace {ws.root} was made from {info['source']!r}, but data.train is {source!r}. "
                "All runs of a workspace must share one dataset and one fold table; use a new workspace."
            )
        if info.get("folds") not in (None, data.folds):
            raise DataError(
                f"Workspace {ws.root} has {info['folds']} folds but data.folds is {data.folds}; "
                f"set data.folds={info['folds']} or use a new workspace."
            )
        return ws
    return task.create_workspace(config, ws.root, progress)


def create_classify_workspace(config: ExperimentConfig, root: Path, progress: bool) -> Workspace:
    """Classification: sample table from a folder/CSV/built-in, scanned, class-stratified folds."""
    data = config.data
    table = load_training_table(data)
    _note_protocol(table, data)
    with _progress(progress, "scan", len(table)) as advance:
        scan = scan_table(table, progress=advance)
    return prepare_workspace(
        root,
        table,
        folds=data.folds,
        seed=data.fold_seed,
        strict=data.strict,
        scan=scan,
        groups=data.groups,
    )


def _load_test(
    config: ExperimentConfig, classes: list[str], progress: bool
) -> tuple[SampleTable, np.ndarray]:
    """The test table (bad files excluded, listed) and targets mapped to the workspace classes.

    Under leave-one-domain-out the test set is the held-out domain of ``data.train``.
    """
    if config.data.held_out is not None:
        table = held_out_table(config.data)
    else:
        table = limited(load_samples(config.data.test), config.data.test_limit)
    with _progress(progress, "scan test", len(table)) as advance:
        scan = scan_table(table, progress=advance, stats=False)  # decodability is all it needs
    table = exclude_bad(
        scan,
        strict=config.data.strict,
        # one writer: every rank of a DDP launch finds the same bad files
        report_path=Path(config.workspace) / "bad_test_files.csv" if is_rank_zero() else None,
    )
    if not table.labelled:
        return table, np.full(len(table), -1, dtype=np.int64)
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted(set(table.frame["class_name"]) - set(index))
    if unknown:
        raise DataError(
            f"The test set has classes the training set lacks: {', '.join(map(str, unknown[:10]))}."
        )
    return table, table.frame["class_name"].map(index).to_numpy(dtype=np.int64)


def exclusion_mask(path: Path, sample_ids: np.ndarray) -> np.ndarray:
    """True for samples to train on; ids in ``path`` (CSV, column sample_id) are left out."""
    import warnings

    from ..data.exclusions import read_exclusions

    wanted = set(read_exclusions(path)["sample_id"])
    unknown = sorted(wanted - set(sample_ids))
    if unknown:
        warnings.warn(
            f"{len(unknown)} sample id(s) in {path} are not in this workspace and are ignored, "
            f"e.g. {', '.join(unknown[:5])}.",
            UserWarning,
            stacklevel=3,
        )
    return ~np.isin(sample_ids, list(wanted))


def prepare_inputs(config: ExperimentConfig, progress: bool = True):
    """What a training call of ``config``'s task needs: that task's ``RunInputs``."""
    from ..tasks import get_task

    return get_task(config.task).prepare_inputs(config, progress)


def prepare_classify_inputs(config: ExperimentConfig, progress: bool = True) -> RunInputs:
    from ..augment import build_resize, build_transforms, resolve_normalization
    from ..models import resolve_inputs

    config = resolve_inputs(config)  # idempotent; callers that skipped train() get it too
    ws = open_workspace(config, progress)
    table, folds = ws.load_table(), ws.load_folds()
    if not (folds["sample_id"].to_numpy() == table.frame["sample_id"].to_numpy()).all():
        raise DataError(
            f"{ws.folds_path} and {ws.samples_path} are out of step; re-create the workspace."
        )
    data = config.data
    mean, std = resolve_normalization(data.normalize, data.channels, ws.normalization())
    train_tf, eval_tf = build_transforms(data, config.augment, mean, std, include_resize=False)
    resize = build_resize(data)
    with _progress(progress, "decode", len(table)) as advance:
        source = ImageSource(
            table, data.channels, resize, data.image_size, data.cache_ram_mb, advance
        )
    workers = (
        data.num_workers
        if data.num_workers is not None
        else default_workers(source.cache is not None)
    )
    inputs = RunInputs(
        ws,
        table,
        folds,
        table.frame["label"].to_numpy(dtype=np.int64),
        len(table.classes),
        source,
        train_tf,
        eval_tf,
        workers,
        mean,
        std,
    )
    if data.exclude:
        inputs.train_mask = exclusion_mask(Path(data.exclude), table.frame["sample_id"].to_numpy())
    if DOMAIN_COLUMN in table.frame.columns and has_domains(table):
        inputs.domains = list_domains(table)
        codes = {d: i for i, d in enumerate(inputs.domains)}
        inputs.domain_codes = table.frame[DOMAIN_COLUMN].map(codes).fillna(-1).to_numpy(np.int64)
    if data.test and data.held_out is not None:
        raise DataError(
            f"data.test={data.test!r} and data.held_out={data.held_out!r} are both set; under "
            "leave-one-domain-out the held-out domain is the test set. Leave data.test unset."
        )
    if data.test or data.held_out is not None:
        test_table, test_targets = _load_test(config, table.classes, progress)
        inputs.test_table, inputs.test_targets = test_table, test_targets
        with _progress(progress, "decode test", len(test_table)) as advance:
            inputs.test_source = ImageSource(
                test_table, data.channels, resize, data.image_size, data.cache_ram_mb, advance
            )
    return inputs
