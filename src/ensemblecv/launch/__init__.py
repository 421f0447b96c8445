"""Spreading trainings over processes and machines: (config, fold) jobs, Ray, sweeps.

A workspace run is a set of independent (config, fold) jobs whose results are
folders with ``done.json``; everything here schedules those jobs somewhere
else and relies on that contract for skipping, retrying and resuming.
"""

from .jobs import Job, plan_jobs, run_job, train_many
from .ray_launcher import LaunchError, launch_ray

__all__ = ["Job", "LaunchError", "launch_ray", "plan_jobs", "run_job", "train_many"]
