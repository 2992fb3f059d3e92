"""Find jobs by name through the ``ninelives.jobs`` entry-point group.

A package registers its jobs in its ``pyproject.toml``::

    [project.entry-points."ninelives.jobs"]
    orders_daily = "jobs.orders_daily:JOB"

and ``ninelives run orders_daily`` finds it without the framework importing it.
"""

from __future__ import annotations

from importlib.metadata import entry_points

from framework.errors import UsageError
from framework.job import Job

GROUP = "ninelives.jobs"


def job_names() -> list[str]:
    return sorted(ep.name for ep in entry_points(group=GROUP))


def get_job(name: str) -> Job:
    """The registered job called ``name``; an unknown name lists the known ones."""
    for ep in entry_points(group=GROUP):
        if ep.name == name:
            job = ep.load()
            if not isinstance(job, Job):
                raise UsageError(f"entry point {ep.value} for job {name!r} is not a framework Job")
            return job
    raise UsageError(f"unknown job {name!r}; known jobs: {', '.join(job_names()) or 'none'}")
