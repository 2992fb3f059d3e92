"""The ``ninelives`` command.

Exit codes: 0 every requested partition is complete; 1 a partition failed; 2 a usage or
configuration error; 3 another runner holds the job. Every error is one readable line
on stderr (``NINELIVES_DEBUG=1`` adds the traceback).

Example::

    ninelives seed --days 7
    ninelives run orders_daily --from 2024-01-01 --to 2024-01-07
    ninelives status orders_daily --lakehouse /data/lake
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import shlex
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from rich.console import Console
from rich.table import Table

from framework.config import Config, load_config, parse_size
from framework.errors import DriverDiedError, NinelivesError, UsageError
from framework.failures import describe
from framework.job import Job
from framework.leases import held_message
from framework.ledger import utcnow
from framework.ops_cli import OPS_COMMANDS, observe_run, register_ops_commands
from framework.registry import get_job
from framework.report import date_range, error_hint, print_run_summary
from framework.runner import RunReport, RunRequest, new_run_id, reconcile, run_job
from framework.tables import Lakehouse

MAX_DATES = 3660  # ten years of daily partitions in one request


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, not the whole usage block: the message says what is wrong.
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def parse_date(text: str) -> dt.date:
    """``YYYY-MM-DD``, or ``today`` / ``yesterday`` (UTC), as schedulers like to pass."""
    today = dt.datetime.now(dt.timezone.utc).date()
    relative = {"today": today, "yesterday": today - dt.timedelta(days=1)}
    if text in relative:
        return relative[text]
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid date {text!r}: expected YYYY-MM-DD, today or yesterday"
        ) from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def build_parser() -> argparse.ArgumentParser:
    # --lakehouse and --conf are accepted before and after the subcommand's arguments;
    # SUPPRESS keeps a value given in one place from being reset by the other.
    common = _Parser(add_help=False)
    common.add_argument(
        "--lakehouse",
        default=argparse.SUPPRESS,
        help="lakehouse root (env NINELIVES_LAKEHOUSE, default ./lakehouse)",
    )
    common.add_argument(
        "--conf",
        default=argparse.SUPPRESS,
        help="TOML config file (env NINELIVES_CONF; default: built-in, as conf/local.toml)",
    )
    common.add_argument(
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="also show the JVM's start-up notices and Spark's warnings",
    )
    parser = _Parser(
        prog="ninelives",
        parents=[common],
        description="Run nightly Delta Lake jobs that survive kill -9, and see their state.",
        epilog="Exit codes: 0 every requested partition is complete; 1 a partition failed; "
        "2 a usage or configuration error; 3 another runner holds the job. "
        "NINELIVES_DEBUG=1 adds the traceback to an error.",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    seed = commands.add_parser("seed", parents=[common], help="write sample landing data")
    seed.add_argument("--days", type=_positive, default=7)
    seed.add_argument("--rows-per-day", type=_positive, default=1000)
    seed.add_argument("--seed", type=int, default=42)
    seed.add_argument("--if-absent", action="store_true", help="do nothing if data exists")

    def add_dates(p: argparse.ArgumentParser) -> None:
        p.add_argument("--date", type=parse_date, help="one partition, YYYY-MM-DD")
        p.add_argument("--from", dest="start", type=parse_date, help="first partition")
        p.add_argument("--to", dest="end", type=parse_date, help="last partition")

    run = commands.add_parser("run", parents=[common], help="process missing/failed partitions")
    run.add_argument("job")
    add_dates(run)
    run.add_argument("--force", action="store_true", help="reprocess complete partitions too")
    run.add_argument("--dry-run", action="store_true", help="print the plan, process nothing")
    run.add_argument("--fail-fast", action="store_true", help="stop at the first failure")
    run.add_argument("--wait", action="store_true", help="wait for partitions another runner holds")
    run.add_argument(
        "--max-parallel",
        type=_positive,
        default=1,
        help="work units processed at once in this Spark application (default 1)",
    )
    run.add_argument(
        "--unit-size",
        type=_size,
        help="a work unit's input at most, e.g. 512MB or 2GB (default: run.unit_size, 1GB)",
    )
    run.add_argument(
        "--max-partitions-per-unit",
        type=_positive,
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

    reconcile = commands.add_parser(
        "reconcile", parents=[common], help="settle partitions whose runner died"
    )
    reconcile.add_argument("job")

    quarantine = commands.add_parser(
        "quarantine", parents=[common], help="show quarantined records and their reasons"
    )
    quarantine.add_argument("job")
    quarantine.add_argument("--date", type=parse_date, help="one partition, YYYY-MM-DD")
    quarantine.add_argument("--limit", type=_positive, default=50, help="rows shown")

    status = commands.add_parser("status", parents=[common], help="show partition states")
    status.add_argument("job")
    add_dates(status)
    register_ops_commands(commands, common)
    return parser


def requested_dates(args: argparse.Namespace, *, required: bool) -> list[dt.date] | None:
    if args.date and (args.start or args.end):
        raise UsageError("give either --date or --from/--to, not both")
    if args.date:
        return [args.date]
    if bool(args.start) != bool(args.end):
        raise UsageError("--from and --to go together")
    if not args.start:
        if required:
            raise UsageError("give --date D or --from D --to D")
        return None
    if args.start > args.end:
        raise UsageError(f"--from {args.start} is after --to {args.end}")
    dates = date_range(args.start, args.end)
    if len(dates) > MAX_DATES:
        raise UsageError(f"{len(dates)} dates requested; at most {MAX_DATES} per run")
    return dates


def _config(args: argparse.Namespace) -> Config:
    conf = getattr(args, "conf", None) or os.environ.get("NINELIVES_CONF") or None
    lakehouse = getattr(args, "lakehouse", None) or os.environ.get("NINELIVES_LAKEHOUSE")
    config = load_config(conf, lakehouse=lakehouse)
    if getattr(args, "verbose", False):
        config = config.with_spark(quiet=False)
    if not config.lakehouse.catalog:
        check_lakehouse_root(config.lakehouse.root)
    return config


def check_lakehouse_root(root: str) -> None:
    """A local lakehouse root must be a readable, writable folder, or creatable."""
    path = Path(root)
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is None or not existing.is_dir():
        raise UsageError(f"lakehouse path {root} is unusable: {existing} is not a directory")
    # Try it: permission bits say nothing to root, and pseudo file systems (/proc)
    # refuse what their bits allow.
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".ninelives-probe-", dir=existing))
    except OSError as error:
        raise UsageError(
            f"lakehouse path {root} is unusable: cannot create a folder in {existing} "
            f"({error.strerror or error})"
        ) from None


def _cli_options(args: argparse.Namespace) -> str:
    """The options to repeat in a printed command so that it acts on the same lakehouse."""
    parts = []
    for name in ("lakehouse", "conf"):
        value = getattr(args, name, None)
        if value:
            parts.append(f" --{name} {shlex.quote(value)}")
    return "".join(parts)


def _cmd_seed(args: argparse.Namespace, config: Config, console: Console) -> int:
    from jobs.landing import seed_orders  # the sample data belongs to the example jobs

    lakehouse = Lakehouse(config.lakehouse)
    root = lakehouse.landing_path()
    if args.if_absent and os.path.isdir(lakehouse.landing_path("orders")):
        console.print(f"sample landing data already present under {root}")
        return 0
    from framework.session import get_or_create_session

    spark = get_or_create_session(config)
    seeded = seed_orders(
        spark, root, days=args.days, rows_per_day=args.rows_per_day, seed=args.seed
    )
    console.print(
        f"seeded {seeded.lines_written:,} lines ({seeded.duplicate_lines:,} re-delivered, "
        f"{seeded.malformed_lines:,} malformed) over {seeded.days} days under {seeded.path}"
    )
    return 0


def _cmd_run(args: argparse.Namespace, config: Config, console: Console) -> int:
    job = get_job(args.job)
    until = None
    if job.watermark_start is not None and not (args.date or args.start):
        # A watermark job picks its windows itself: from the watermark to --to/yesterday.
        until = args.end
        dates = []
    else:
        dates = requested_dates(args, required=not args.only_failed) or []
    if args.only_failed and args.force:
        raise UsageError("--only-failed and --force do not go together")
    request = RunRequest.for_dates(
        dates,
        only_failed=args.only_failed,
        until=until,
        include_stale=args.include_stale or config.run.include_stale,
        max_parallel=args.max_parallel,
        unit_bytes=args.unit_size or config.run.unit_bytes,
        unit_partitions=args.max_partitions_per_unit or config.run.max_partitions_per_unit,
        force=args.force,
        dry_run=args.dry_run,
        fail_fast=args.fail_fast or config.run.fail_fast,
        wait=args.wait,
        lease_seconds=config.run.lease_seconds,
    )
    if not args.dry_run and _nothing_to_do(config, job, request, console, args):
        return 0
    from framework.session import get_or_create_session

    spark = get_or_create_session(config)
    try:
        with observe_run(args, config, spark) as observers:
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
    print_run_summary(report, console, _cli_options(args))
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
    from framework import native

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
    with observe_run(args, config, None) as observers:
        for observer in observers:
            observer.run_started(report)
        report.finished_at = utcnow()
        for observer in observers:
            observer.run_finished(report)
    print_run_summary(report, console, _cli_options(args))
    return True


def _recorded(config: Config, died: DriverDiedError) -> DriverDiedError:
    """``died``, its failed states recorded by a new process, with what to do about it."""
    from framework.driver_death import record_in_new_process

    why_not = record_in_new_process(config, died.states)
    recorded = (
        f"the ledger records {', '.join(str(s.partition) for s in died.states)} as failed"
        if why_not is None
        else f"the failure could not be recorded ({why_not})"
    )
    hint = error_hint(died.states[0].error_class)
    return DriverDiedError(f"{died}; {recorded}. {hint[0].upper()}{hint[1:]}", died.states)


def _cmd_reconcile(args: argparse.Namespace, config: Config, console: Console) -> int:
    job = get_job(args.job)
    from framework.session import get_or_create_session

    fixed = reconcile(get_or_create_session(config), Lakehouse(config.lakehouse), job)
    for before, after in fixed:
        how = (
            f"complete from target commit v{after.target_version} (nothing recomputed)"
            if after.state == "complete"
            else "failed: its writes did not all reach Delta; a rerun processes it"
        )
        console.print(
            f"{job.name} {before.partition}: attempt {before.attempt} of run {before.run_id} "
            f"was abandoned by pid {before.pid} on {before.host} -> {how}"
        )
    console.print(f"{job.name}: reconciled {len(fixed)} partition(s)")
    return 0


def _cmd_quarantine(args: argparse.Namespace, config: Config, console: Console) -> int:
    job = get_job(args.job)
    from framework.quarantine import quarantine_table

    ref = quarantine_table(Lakehouse(config.lakehouse), job.name)
    found = _quarantined(config, job.name, args.date, args.limit)
    if found is None:
        console.print(f"{job.name}: no quarantined records ({ref} does not exist)")
        return 0
    total, rows = found
    table = Table(title=f"{job.name} quarantine", title_justify="left")
    for name in ("partition", "reason", "raw", "run_id", "attempt"):
        table.add_column(name, overflow="fold")
    for row in rows:
        raw = row["raw"]
        raw = raw if raw is None or len(raw) <= 120 else raw[:117] + "..."
        table.add_row(str(row["partition"]), row["reason"], raw, row["run_id"], str(row["attempt"]))
    console.print(table)
    console.print(
        f"{total} quarantined record(s)" + (f", {args.limit} shown" if total > args.limit else "")
    )
    return 0


def _quarantined(
    config: Config, job: str, date: dt.date | None, limit: int
) -> tuple[int, list[dict[str, Any]]] | None:
    """How many records ``job``'s quarantine holds (of ``date``), and the first ``limit``;
    None without a quarantine table. Through delta-rs, or else Spark."""
    from framework import native

    lakehouse = Lakehouse(config.lakehouse)

    def by_spark() -> tuple[int, list[dict[str, Any]]] | None:
        from framework.quarantine import quarantine_table
        from framework.session import get_or_create_session

        spark = get_or_create_session(config)
        ref = quarantine_table(lakehouse, job)
        if not ref.exists(spark):
            return None
        rows = ref.read(spark)
        if date:
            rows = rows.where(rows.partition == date)
        shown = rows.orderBy("partition", "reason", "raw").limit(limit).collect()
        return rows.count(), [row.asDict() for row in shown]

    return native.or_spark(lambda: native.quarantined(lakehouse, job, date, limit), by_spark)


COMMANDS = {
    "quarantine": _cmd_quarantine,
    "seed": _cmd_seed,
    "run": _cmd_run,
    "reconcile": _cmd_reconcile,
}
COMMANDS.update(OPS_COMMANDS)  # history, report; status with --state/--json


_PY4J_SINK = logging.NullHandler()


def quiet_py4j() -> None:
    """Keep py4j's tracebacks off stderr: it logs one for every call that meets a dead
    JVM, to its own logger and, for a failed send, to the root logger (which makes
    :mod:`logging` print it). The error that follows says what happened in one line."""
    py4j = logging.getLogger("py4j")
    py4j.addHandler(_PY4J_SINK)  # once, however often main() runs in one process
    py4j.propagate = False
    logging.getLogger().addFilter(_not_from_py4j)


def _not_from_py4j(record: logging.LogRecord) -> bool:
    return f"{os.sep}py4j{os.sep}" not in record.pathname


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ninelives`` script and of ``jobs/*.py`` under spark-submit."""
    args = build_parser().parse_args(argv)
    if not os.environ.get("NINELIVES_DEBUG"):
        quiet_py4j()
    console = Console(
        highlight=False, soft_wrap=False, width=200 if not sys.stdout.isatty() else None
    )
    try:
        config = _config(args)
        return COMMANDS[args.command](args, config, console)
    except NinelivesError as error:
        print(f"ninelives: {error}", file=sys.stderr)
        return error.exit_code
    except Exception as error:
        if os.environ.get("NINELIVES_DEBUG"):
            raise
        print(
            f"ninelives: internal error: {describe(error)} "
            "(set NINELIVES_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
