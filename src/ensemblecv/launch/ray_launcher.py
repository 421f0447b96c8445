"""``--launcher ray``: every (config, fold) job as a Ray task with its own resources.

Ray does the scheduling, placement on machines and retry of tasks whose worker
died (``max_retries``); this module adds what Ray cannot know: which jobs are
already finished (``done.json``), which failures are the user's (a bad config
fails the same way every time, so it is reported, not retried), and a report
that names every failed job. Jobs resume from ``last.ckpt`` when retried.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from ..errors import ConfigError, EnsembleCVError
from .jobs import Job, run_job


class LaunchError(EnsembleCVError):
    """Some jobs failed after their retries; ``results`` holds the ones that finished."""

    def __init__(self, message: str, results: list, failures: dict[str, str]) -> None:
        super().__init__(message)
        self.results, self.failures = results, failures


def _user_error_guard(job_fn: Callable) -> Callable:
    """Return user errors as values so Ray does not retry what fails the same way again."""

    def job(*args, **kwargs):
        try:
            return job_fn(*args, **kwargs)
        except EnsembleCVError as exc:
            return exc

    job.__name__ = getattr(job_fn, "__name__", "job")
    job.__qualname__ = job.__name__
    return job


def _import_ray():
    try:
        import ray
    except ModuleNotFoundError as exc:
        raise ConfigError(
            "--launcher ray needs Ray: `pip install 'ensemblecv[ray]'` (or `pip install ray`)."
        ) from exc
    return ray


def connect(address: str | None = None, num_cpus: int | None = None):
    """Join the cluster at ``address`` (``auto``, ``ray://host:port``) or start a local one."""
    ray = _import_ray()
    if not ray.is_initialized():
        kwargs = {"include_dashboard": False, "log_to_driver": True}
        if address:
            kwargs["address"] = address
        elif num_cpus:
            kwargs["num_cpus"] = num_cpus
        try:
            ray.init(**kwargs)
        except ConnectionError as exc:
            raise ConfigError(
                f"Could not reach the Ray cluster at {address!r}: {exc}. Start it with "
                "`ray start --head` (and `ray start --address HEAD:6379` on the other machines)."
            ) from exc
    return ray


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    # Ray's RayTaskError puts the remote traceback first; the last line is the error itself.
    return text[-1][:300] if text else type(exc).__name__


def launch_ray(
    jobs: list[Job],
    address: str | None = None,
    cpus_per_job: float = 1,
    gpus_per_job: float = 0,
    max_retries: int = 2,
    progress: bool = True,
    job_fn: Callable = run_job,
    console=None,
) -> list:
    """Run ``jobs`` as Ray tasks; skip finished ones; raise :class:`LaunchError` naming failures.

    Relative workspace and data paths resolve against this process's folder on
    every worker, so a multi-machine cluster needs the workspace on storage
    mounted at the same path everywhere (the docs' two-machine recipe).
    """
    from ..training.runner import FoldResult

    if cpus_per_job <= 0:
        raise ConfigError(f"--cpus-per-job must be > 0, got {cpus_per_job}.")
    base_dir = os.getcwd()
    results: list = []
    todo = []
    for job in jobs:
        if job.is_done(Path(base_dir)):
            results.append(
                FoldResult(**{**job.done_record(Path(base_dir)), "status": "skipped (done)"})
            )
        else:
            todo.append(job)
    if not todo:
        return results
    ray = connect(address)
    task = ray.remote(_user_error_guard(job_fn)).options(
        num_cpus=cpus_per_job,
        num_gpus=gpus_per_job,
        max_retries=max_retries,
        retry_exceptions=True,
        name="ensemblecv-job",
    )
    threads = max(1, int(cpus_per_job))
    pending = {
        task.remote(job.config.model_dump(mode="json"), job.fold, base_dir, True, threads): job
        for job in todo
    }
    failures: dict[str, str] = {}
    start = time.perf_counter()
    with _job_bar(progress, len(pending)) as advance:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            job = pending.pop(ready[0])
            try:
                out = ray.get(ready[0])
            except Exception as exc:  # RayTaskError, WorkerCrashedError, ... after retries
                failures[job.name] = _reason(exc)
                out = None
            if isinstance(out, EnsembleCVError):
                failures[job.name] = str(out)
            elif out is not None:
                results.append(out)
            advance(1)
    if console is not None:
        console.print(
            f"Ray: {len(todo)} jobs in {time.perf_counter() - start:.1f} s, "
            f"{len(failures)} failed, {len(jobs) - len(todo)} already done."
        )
    summarize_runs(jobs, Path(base_dir))
    if failures:
        listing = "\n".join(f"  {name}: {why}" for name, why in sorted(failures.items()))
        raise LaunchError(
            f"{len(failures)} of {len(todo)} jobs failed (crashes were retried {max_retries} "
            f"times, user errors not at all):\n{listing}\n"
            "Finished jobs are kept; run the same command again to retry only the failed ones.",
            results,
            failures,
        )
    return results


def summarize_runs(jobs: list[Job], base_dir: Path) -> None:
    """After the jobs: each run's task-level summary (e.g. pooled detection mAP in the
    leaderboard), as local training does after a run's folds. Runs with folds still
    missing are left for a later call."""
    from ..tasks import get_task
    from ..workspace import Workspace

    seen = set()
    for job in jobs:
        ws = Path(job.config.workspace)
        key = (str(ws), job.config.run_name)
        if key in seen:
            continue
        seen.add(key)
        root = ws if ws.is_absolute() else base_dir / ws
        get_task(job.config.task).summarize_run(Workspace(root), job.config.run_name)


@contextmanager
def _job_bar(enabled: bool, total: int, label: str = "jobs"):
    """``advance(1)`` per finished job (or trial) on a rich bar with ETA, or a no-op."""
    if not enabled:
        yield lambda n: None
        return
    from .._progress import progress_bar

    with progress_bar(label, total, unit=label) as advance:
        yield advance
