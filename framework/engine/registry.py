"""Find jobs by name through the ``ninelives.jobs`` entry-point group.

A package registers its jobs in its ``pyproject.toml``::

    [project.entry-points."ninelives.jobs"]
    orders_daily = "jobs.orders_daily:JOB"

and ``ninelives run orders_daily`` finds it without the framework importing it. A job
that is not registered (yet) runs by its import path: ``ninelives run my_jobs.clicks:JOB``.
"""

from __future__ import annotations

import importlib
import os
import sys
from importlib.metadata import entry_points

from framework.core.errors import UsageError
from framework.engine.job import Job

GROUP = "ninelives.jobs"


def job_names() -> list[str]:
    return sorted(ep.name for ep in entry_points(group=GROUP))


def get_job(name: str) -> Job:
    """The registered job called ``name``, or the ``module:attribute`` it names; an
    unknown name lists the known ones."""
    if ":" in name:
        return _imported(name)
    for ep in entry_points(group=GROUP):
        if ep.name == name:
            job = ep.load()
            if not isinstance(job, Job):
                raise UsageError(f"entry point {ep.value} for job {name!r} is not a framework Job")
            return job
    raise UsageError(f"unknown job {name!r}; known jobs: {', '.join(job_names()) or 'none'}")


def _imported(reference: str) -> Job:
    """``module:attribute``, the module looked for in the working directory too (as
    ``python -m`` does; the ``ninelives`` script's own folder is the venv's bin)."""
    module_name, _, attribute = reference.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    try:
        job = getattr(importlib.import_module(module_name), attribute)
    except ImportError as error:
        raise UsageError(f"cannot import job {reference}: {error}") from None
    except AttributeError:
        raise UsageError(
            f"cannot import job {reference}: {module_name} has no {attribute}"
        ) from None
    if not isinstance(job, Job):
        raise UsageError(f"{reference} is not a framework Job but a {type(job).__name__}")
    return job
