"""What ``ninelives status`` shows of a job, read once and printed the same way by the
command and by the ``partition_status`` notebook: the job's partition states, its
upstream jobs' states, the dates shown and the stale ones, then the watermark line of a
watermark job, the partition table, the runbook and the recovery command.

Example::

    status = read_by_spark(spark, lakehouse, job, dates=None)
    print_job_status(console, job, status)
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from pyspark.sql import SparkSession
from rich.console import Console

from framework.core.dates import date_range
from framework.engine.chunks import with_chunks_committed
from framework.engine.job import Job
from framework.engine.runner import stale_partitions, watermark
from framework.lake.tables import Lakehouse
from framework.ops import native
from framework.ops.report import print_status
from framework.state.ledger import COMPLETE, Ledger, PartitionState


@dataclass(frozen=True)
class JobStatus:
    states: dict[dt.date, PartitionState]
    upstream: dict[str, dict[dt.date, PartitionState]]
    dates: list[dt.date]
    """The dates asked for, or every date from the job's first to its last."""
    stale: frozenset[dt.date]


def _dates(states: dict[dt.date, PartitionState], dates: list[dt.date] | None) -> list[dt.date]:
    if dates is not None:
        return dates
    return date_range(min(states), max(states)) if states else []


def read_without_jvm(lakehouse: Lakehouse, job: Job, dates: list[dt.date] | None) -> JobStatus:
    """The job's status through delta-rs. A date in chunks that is not complete has its
    chunk count in the target's log, which only Spark reads here: NativeUnavailable."""
    every = native.ledger_states(lakehouse, [job.name, *job.depends_on])
    states = every[job.name]
    if any(s.manifest is not None and s.state != COMPLETE for s in states.values()):
        raise native.NativeUnavailable("a date in chunks counts its chunks in the target's log")
    dates = _dates(states, dates)
    upstream = {name: every[name] for name in job.depends_on if name != job.name}
    return JobStatus(states, upstream, dates, native.stale(lakehouse, job, states, dates))


def read_by_spark(
    spark: SparkSession, lakehouse: Lakehouse, job: Job, dates: list[dt.date] | None
) -> JobStatus:
    """:func:`read_without_jvm` through Spark, chunk counts from the target's log."""
    every = Ledger(spark, lakehouse.framework_table("ledger")).states(job.name, *job.depends_on)
    states = with_chunks_committed(spark, lakehouse, job, every[job.name])
    upstream = {name: every[name] for name in job.depends_on if name != job.name}
    dates = _dates(states, dates)
    return JobStatus(
        states, upstream, dates, stale_partitions(spark, lakehouse, job, states, dates)
    )


def print_job_status(
    console: Console,
    job: Job,
    status: JobStatus,
    cli_options: str = "",
    *,
    only: Sequence[str] = (),
    as_json: bool = False,
    command_job: str = "",
) -> None:
    """Print ``status`` as ``ninelives status`` does; ``cli_options`` go into the
    recovery command, ``only`` keeps the partitions in those states."""
    if job.watermark_start is not None and not as_json:
        console.print(
            f"{job.name} watermark: {watermark(job, status.states)} (windows before it are "
            "complete; a window behind it is reprocessed only with --force)"
        )
    print_status(
        job.name,
        status.dates,
        status.states,
        console,
        cli_options,
        only=only,
        as_json=as_json,
        upstream=status.upstream,
        stale=status.stale,
        command_job=command_job,
    )
