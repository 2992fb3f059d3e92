"""``ninelives run JOB [--date D | --from D --to D] [options]``: process the partitions
that are missing or failed, and print what to do about any that still are.

A run plans before any JVM starts: when nothing is to be done it prints its summary and
exits 0 without Spark (:func:`_nothing_to_do`).
"""

from __future__ import annotations

import argparse
import sys

from rich.console import Console

from framework.cli import observe, reads
from framework.cli.args import Commands, add_dates, positive, repeated_options, requested_dates
from framework.cli.args import size as byte_size
from framework.core.config import Config
from framework.core.errors import DriverDiedError, UsageError
from framework.engine.job import Job
from framework.engine.registry import get_job
from framework.engine.runner import RunReport, RunRequest, new_run_id, run_job
from framework.lake.tables import Lakehouse
from framework.ops import native
from framework.ops.report import print_run_summary
from framework.ops.runbook import error_hint
from framework.state.leases import held_message
from framework.state.ledger import utcnow


def register(commands: Commands, common: argparse.ArgumentParser) -> None:
    run = commands.add_parser("run", parents=[common], help="process missing/failed partitions")
    run.add_argument("job")
    add_dates(run)
    run.add_argument("--force", action="store_true", help="reprocess complete partitions too")
    run.add_argument("--dry-run", action="store_true", help="print the plan, process nothing")
    run.add_argument("--fail-fast", action="store_true", help="stop at the first failure")
    run.add_argument("--wait", action="store_true", help="wait for partitions another runner holds")
    run.add_argument(
        "--max-parallel",
        type=positive,
        default=1,
        help="work units processed at once in this Spark application (default 1)",
    )
    run.add_argument(
        "--unit-size",
        type=byte_size,
        help="a work unit's input at most, e.g. 512MB or 2GB (default: run.unit_size, 1GB)",
    )
    run.add_argument(
        "--max-partitions-per-unit",
        type=positive,
        help="a work unit's dates at most; 1 processes each date alone "
        "(default: run.max_partitions_per_unit, 31)",
    )
    run.add_argument(
        "--include-stale",
        action="store_true",
        help="also reprocess complete partitions whose input changed since (late files)",
    )
    run.add_argument(
        "--only-failed",
        action="store_true",
        help="only partitions whose last attempt failed (all of them without dates)",
    )
    observe.add_options(run)
    run.set_defaults(handler=cmd_run)


def request_of(args: argparse.Namespace, config: Config, job: Job) -> RunRequest:
    """The run the options ask for, with the configuration's defaults."""
    until = None
    if job.watermark_start is not None and not (args.date or args.start):
        # A watermark job picks its windows itself: from the watermark to --to/yesterday.
        until = args.end
        dates = []
    else:
        dates = requested_dates(args, required=not args.only_failed) or []
    if args.only_failed and args.force:
        raise UsageError("--only-failed and --force do not go together")
    return RunRequest.configured(
        dates,
        config.run,
        only_failed=args.only_failed,
        until=until,
        include_stale=args.include_stale,
        max_parallel=args.max_parallel,
        unit_bytes=args.unit_size,
        unit_partitions=args.max_partitions_per_unit,
        force=args.force,
        dry_run=args.dry_run,
        fail_fast=args.fail_fast,
        wait=args.wait,
    )


def cmd_run(args: argparse.Namespace, config: Config, console: Console) -> int:
    job = get_job(args.job)
    request = request_of(args, config, job)
    if not args.dry_run and _nothing_to_do(config, job, request, console, args):
        return 0
    spark = reads.session(config)
    try:
        with observe.observe_run(args, config, spark) as observers:
            report = run_job(spark, Lakehouse(config.lakehouse), job, request, observers=observers)
    except DriverDiedError as died:
        raise _recorded(config, died) from None
    if args.dry_run:
        to_run = ", ".join(map(str, report.plan.to_run)) or "nothing"
        console.print(
            f"{job.name} plan: would process {to_run}; "
            f"{len(report.plan.skipped)} complete partition(s) skipped"
        )
        return 0
    print_run_summary(report, console, repeated_options(args), command_job=args.job)
    for state in report.held.values():
        print(f"ninelives: {held_message(job.name, state)}", file=sys.stderr)
    return report.exit_code


def _nothing_to_do(
    config: Config, job: Job, request: RunRequest, console: Console, args: argparse.Namespace
) -> bool:
    """Whether the plan, read without a JVM, has nothing to process; if so, the run's
    observers see it and its summary is printed, and Spark never starts. Such a run
    records no row in the run history (a Delta table Spark writes); its JSON log
    lines, metrics and alerts are as through Spark. False whenever the plan has work
    or cannot be read without Spark."""
    if request.force or not native.enabled():
        return False
    try:
        plan, states = native.plan(Lakehouse(config.lakehouse), job, request)
    except native.NativeUnavailable as why:
        native.notice(why)
        return False
    if plan.to_run:
        return False
    report = RunReport(job.name, new_run_id(), plan, states=states)
    with observe.observe_run(args, config, None) as observers:
        for observer in observers:
            observer.run_started(report)
        report.finished_at = utcnow()
        for observer in observers:
            observer.run_finished(report)
    print_run_summary(report, console, repeated_options(args), command_job=args.job)
    return True


def _recorded(config: Config, died: DriverDiedError) -> DriverDiedError:
    """``died``, its failed states recorded by a new process, with what to do about it."""
    from framework.engine.driver_death import record_in_new_process

    why_not = record_in_new_process(config, died.states)
    recorded = (
        f"the ledger records {', '.join(str(s.partition) for s in died.states)} as failed"
        if why_not is None
        else f"the failure could not be recorded ({why_not})"
    )
    hint = error_hint(died.states[0].error_class)
    return DriverDiedError(f"{died}; {recorded}. {hint[0].upper()}{hint[1:]}", died.states)
