"""``ninelives status JOB [--state S ...] [--date D | --from D --to D] [--json]``: the
partition table, then the runbook (what failed, why, what a rerun does) and the recovery
command(s); its last line is ``To recover: ninelives run ...``."""

from __future__ import annotations

import argparse
import datetime as dt

from pyspark.sql import SparkSession
from rich.console import Console

from framework.cli import reads
from framework.cli.args import Commands, add_dates, repeated_options, requested_dates
from framework.core.config import Config
from framework.core.dates import date_range
from framework.engine.chunks import with_chunks_committed
from framework.engine.job import Job
from framework.engine.registry import get_job
from framework.engine.runner import stale_partitions, watermark
from framework.lake.tables import Lakehouse
from framework.ops import native
from framework.ops.report import STATUS_STATES, print_status
from framework.state.ledger import COMPLETE, Ledger, PartitionState


def register(commands: Commands, common: argparse.ArgumentParser) -> None:
    status = commands.add_parser("status", parents=[common], help="show partition states")
    status.add_argument("job")
    add_dates(status)
    status.add_argument(
        "--state",
        action="append",
        choices=STATUS_STATES,
        help="show only partitions in this state (repeatable)",
    )
    status.add_argument("--json", action="store_true", help="one JSON document on stdout")
    status.set_defaults(handler=cmd_status)


_Status = tuple[
    dict[dt.date, PartitionState],
    dict[str, dict[dt.date, PartitionState]],
    list[dt.date],
    frozenset[dt.date],
]


def _status_without_jvm(lakehouse: Lakehouse, job: Job, dates: list[dt.date] | None) -> _Status:
    """What ``status`` shows, read through delta-rs: the job's states, its upstream
    jobs', the dates and the stale ones. A date in chunks that is not complete has its
    count in the target's log, which only Spark reads here."""
    every = native.ledger_states(lakehouse, [job.name, *job.depends_on])
    states = every[job.name]
    if any(s.manifest is not None and s.state != COMPLETE for s in states.values()):
        raise native.NativeUnavailable("a date in chunks counts its chunks in the target's log")
    if dates is None:
        dates = date_range(min(states), max(states)) if states else []
    upstream = {name: every[name] for name in job.depends_on if name != job.name}
    return states, upstream, dates, native.stale(lakehouse, job, states, dates)


def _status_by_spark(
    spark: SparkSession, lakehouse: Lakehouse, job: Job, dates: list[dt.date] | None
) -> _Status:
    """:func:`_status_without_jvm` through Spark, chunk counts from the target's log."""
    every = Ledger(spark, lakehouse.framework_table("ledger")).states(job.name, *job.depends_on)
    states = with_chunks_committed(spark, lakehouse, job, every[job.name])
    upstream = {name: every[name] for name in job.depends_on if name != job.name}
    if dates is None:
        dates = date_range(min(states), max(states)) if states else []
    return states, upstream, dates, stale_partitions(spark, lakehouse, job, states, dates)


def cmd_status(args: argparse.Namespace, config: Config, console: Console) -> int:
    job = get_job(args.job)
    dates = requested_dates(args, required=False)
    lakehouse = Lakehouse(config.lakehouse)
    states, upstream, dates, stale = native.or_spark(
        lambda: _status_without_jvm(lakehouse, job, dates),
        lambda: _status_by_spark(reads.session(config), lakehouse, job, dates),
    )
    if job.watermark_start is not None and not args.json:
        console.print(
            f"{job.name} watermark: {watermark(job, states)} (windows before it are complete; "
            "a window behind it is reprocessed only with --force)"
        )
    print_status(
        job.name,
        dates,
        states,
        console,
        repeated_options(args),
        only=args.state or (),
        as_json=args.json,
        upstream=upstream,
        stale=stale,
    )
    return 0
