"""The operations half of the ``ninelives`` command: what the person paged at 3 AM uses.

- ``ninelives status JOB [--state S ...] [--date D | --from D --to D] [--json]``: the
  partition table, then the runbook (what failed, why, what a rerun does) and the
  recovery command(s); its last line is ``To recover: ninelives run ...``.
- ``ninelives history JOB [--limit N] [--json]``: the job's runs, newest first.
- ``ninelives report JOB -o report.html [--date D | --from D --to D]``: a static HTML
  calendar of the partitions coloured by state, with the runbook.
- ``ninelives run`` gains a progress bar (plain lines without a terminal or on
  Databricks), JSON logs, run history, Prometheus metrics and webhook alerts, through
  :func:`observe_run`.

Run options and their environment variables (the option wins):

=============================  ===============================  ============================
option                         environment                      effect
=============================  ===============================  ============================
``--progress MODE``            ``NINELIVES_PROGRESS``           auto (default), bar, plain, off
``--log-format text|json``     ``NINELIVES_LOG_FORMAT``         json: JSON lines on stderr
``--log-file PATH``            ``NINELIVES_LOG_FILE``           JSON lines appended to PATH
``--pushgateway URL``          ``NINELIVES_PUSHGATEWAY``        push metrics at the end
``--webhook-url URL``          ``NINELIVES_WEBHOOK_URL``        POST alerts (prefer the env:
                                                                a URL on a command line is
                                                                visible to ``ps``)
``--alert-quarantine-ratio R``  ``NINELIVES_ALERT_QUARANTINE_RATIO``  warn above R (0.01)
=============================  ===============================  ============================

``framework.cli`` hooks this module in with :func:`register_ops_commands` (parser),
:data:`OPS_COMMANDS` (handlers) and :func:`observe_run` (around ``run_job``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from pyspark.sql import SparkSession
from rich.console import Console
from rich.table import Table

from framework import native
from framework.alerts import DEFAULT_WARN_RATIO, AlertObserver
from framework.chunks import with_chunks_committed
from framework.config import Config
from framework.errors import UsageError
from framework.history import HistoryObserver, RunHistory, RunRecord
from framework.job import Job
from framework.leases import this_host
from framework.ledger import COMPLETE, Ledger, PartitionState
from framework.metrics import MetricsObserver
from framework.observers import Guarded, JsonLogObserver, ProgressObserver, progress_mode
from framework.partition_calendar import render_calendar
from framework.registry import get_job
from framework.report import (
    STATUS_STATES,
    date_range,
    filter_partitions,
    iso,
    plan_recovery,
    print_status,
    state_name,
)
from framework.runner import RunObserver, stale_partitions, watermark
from framework.tables import Lakehouse

PROGRESS_MODES = ("auto", "bar", "plain", "off")
LOG_FORMATS = ("text", "json")
_OUTCOME_STYLE = {"succeeded": "green", "nothing_to_do": "dim", "failed": "bold red"}


def _ratio(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a ratio between 0 and 1, got {text!r}")
    return value


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def register_ops_commands(
    commands: argparse._SubParsersAction,
    common: argparse.ArgumentParser,
) -> None:
    """Add ``history`` and ``report``, and the operations options of ``run`` and ``status``.

    Call at the end of ``build_parser``, once ``run`` and ``status`` exist.
    """
    from framework.cli import parse_date

    run = commands.choices["run"]
    ops = run.add_argument_group("operations")
    ops.add_argument("--progress", choices=PROGRESS_MODES, help="env NINELIVES_PROGRESS")
    ops.add_argument("--log-format", choices=LOG_FORMATS, help="env NINELIVES_LOG_FORMAT")
    ops.add_argument("--log-file", metavar="PATH", help="JSON lines; env NINELIVES_LOG_FILE")
    ops.add_argument("--pushgateway", metavar="URL", help="env NINELIVES_PUSHGATEWAY")
    ops.add_argument(
        "--webhook-url", metavar="URL", help="alerts; prefer env NINELIVES_WEBHOOK_URL"
    )
    ops.add_argument(
        "--alert-quarantine-ratio",
        type=_ratio,
        metavar="R",
        help=f"warn when quarantined/read > R (default {DEFAULT_WARN_RATIO})",
    )

    status = commands.choices["status"]
    status.add_argument(
        "--state",
        action="append",
        choices=STATUS_STATES,
        help="show only partitions in this state (repeatable)",
    )
    status.add_argument("--json", action="store_true", help="one JSON document on stdout")

    def add_dates(p: argparse.ArgumentParser) -> None:
        p.add_argument("--date", type=parse_date, help="one partition, YYYY-MM-DD")
        p.add_argument("--from", dest="start", type=parse_date, help="first partition")
        p.add_argument("--to", dest="end", type=parse_date, help="last partition")

    history = commands.add_parser("history", parents=[common], help="show a job's recent runs")
    history.add_argument("job")
    history.add_argument("--limit", type=_positive, default=20)
    history.add_argument("--json", action="store_true", help="JSON lines on stdout")

    report = commands.add_parser(
        "report", parents=[common], help="write an HTML calendar of partition states"
    )
    report.add_argument("job")
    report.add_argument("-o", "--output", default="report.html", help="default report.html")
    add_dates(report)


# -- observers around run_job -----------------------------------------------------------


@dataclass(frozen=True)
class OpsSettings:
    """Operations settings of one run, from options and the environment."""

    progress: str = "auto"
    log_format: str = "text"
    log_file: str | None = None
    pushgateway: str | None = None
    webhook_url: str | None = None
    warn_ratio: float = DEFAULT_WARN_RATIO

    def __repr__(self) -> str:  # never show the webhook URL
        hook = "<set>" if self.webhook_url else None
        return (
            f"OpsSettings(progress={self.progress!r}, log_format={self.log_format!r}, "
            f"log_file={self.log_file!r}, pushgateway={self.pushgateway is not None}, "
            f"webhook_url={hook}, warn_ratio={self.warn_ratio})"
        )

    @classmethod
    def resolve(cls, args: argparse.Namespace, env: Mapping[str, str]) -> OpsSettings:
        def pick(option: str, variable: str) -> str | None:
            value = getattr(args, option, None)
            return value if value not in (None, "") else (env.get(variable) or None)

        progress = pick("progress", "NINELIVES_PROGRESS") or "auto"
        if progress not in PROGRESS_MODES:
            raise UsageError(f"NINELIVES_PROGRESS={progress!r}: expected one of {PROGRESS_MODES}")
        log_format = pick("log_format", "NINELIVES_LOG_FORMAT") or "text"
        if log_format not in LOG_FORMATS:
            raise UsageError(f"NINELIVES_LOG_FORMAT={log_format!r}: expected one of {LOG_FORMATS}")
        ratio = getattr(args, "alert_quarantine_ratio", None)
        if ratio is None and env.get("NINELIVES_ALERT_QUARANTINE_RATIO"):
            try:
                ratio = _ratio(env["NINELIVES_ALERT_QUARANTINE_RATIO"])
            except argparse.ArgumentTypeError as error:
                raise UsageError(f"NINELIVES_ALERT_QUARANTINE_RATIO: {error}") from None
        return cls(
            progress=progress,
            log_format=log_format,
            log_file=pick("log_file", "NINELIVES_LOG_FILE"),
            pushgateway=pick("pushgateway", "NINELIVES_PUSHGATEWAY"),
            webhook_url=pick("webhook_url", "NINELIVES_WEBHOOK_URL"),
            warn_ratio=DEFAULT_WARN_RATIO if ratio is None else ratio,
        )


def cli_options(args: argparse.Namespace) -> str:
    """``--lakehouse``/``--conf`` to repeat in a printed command (as ``framework.cli``)."""
    from framework import cli

    return cli._cli_options(args)


def command_line(args: argparse.Namespace) -> str:
    """The run's arguments for the history, rebuilt from the parsed options.

    Rebuilt rather than copied from ``sys.argv`` so that it is canonical and carries no
    secret (``--webhook-url``) and no per-run plumbing (log and metrics options).
    """
    parts = [args.command, args.job]
    if getattr(args, "date", None):
        parts += ["--date", str(args.date)]
    elif getattr(args, "start", None):
        parts += ["--from", str(args.start), "--to", str(args.end)]
    for flag in ("only_failed", "force", "dry_run", "fail_fast", "wait"):
        if getattr(args, flag, False):
            parts.append("--" + flag.replace("_", "-"))
    return shlex.join(parts) + cli_options(args)


def _stderr_warn(stream: IO[str] | None) -> Callable[[str], None]:
    def warn(message: str) -> None:
        print(f"ninelives: warning: {message}", file=stream or sys.stderr, flush=True)

    return warn


def build_observers(
    settings: OpsSettings,
    spark: SparkSession | None,
    lakehouse: Lakehouse,
    *,
    job: str,
    arguments: str = "",
    options: str = "",
    stderr: IO[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> list[Guarded]:
    """Progress, JSON logs, history, metrics and alerts as ``settings`` ask, each guarded."""
    stream = stderr or sys.stderr
    warn = _stderr_warn(stderr)
    host = this_host()
    observers: list[Guarded] = []
    requested = settings.progress
    if settings.log_format == "json" and requested == "auto":
        requested = "off"  # stderr carries the JSON lines instead
    mode = progress_mode(stream, env if env is not None else os.environ, requested)
    if mode != "off":
        observers.append(Guarded(ProgressObserver(mode, stream), "progress display", warn))
    if settings.log_format == "json":
        observers.append(Guarded(JsonLogObserver(stream), "JSON log to stderr", warn))
    if settings.log_file:
        try:
            log = JsonLogObserver.to_file(settings.log_file)
        except OSError as error:
            raise UsageError(f"cannot open the log file {settings.log_file}: {error}") from None
        observers.append(Guarded(log, f"JSON log to {settings.log_file}", warn))
    if spark is not None:  # a run planned without a JVM has nothing to record
        history = HistoryObserver(
            RunHistory.of(spark, lakehouse), arguments=arguments, host=host, pid=os.getpid()
        )
        observers.append(Guarded(history, "recording the run history", warn))
    if settings.pushgateway:
        observers.append(Guarded(MetricsObserver(settings.pushgateway, warn), "metrics", warn))
    if settings.webhook_url:
        alert = AlertObserver(
            settings.webhook_url,
            warn,
            warn_ratio=settings.warn_ratio,
            cli_options=options,
            host=host,
            job=job,
        )
        # The alert observer reports its own errors; any other is described by class only.
        observers.append(Guarded(alert, "alerting", warn, describe=lambda e: type(e).__name__))
    return observers


@contextmanager
def observe_run(
    args: argparse.Namespace,
    config: Config,
    spark: SparkSession | None,
    *,
    env: Mapping[str, str] | None = None,
    stderr: IO[str] | None = None,
) -> Iterator[list[RunObserver]]:
    """The observers of one ``ninelives run``; tells them if ``run_job`` raises.

    Example (``framework.cli._cmd_run``)::

        with observe_run(args, config, spark) as observers:
            report = run_job(spark, lakehouse, job, request, observers=observers)
    """
    if getattr(args, "dry_run", False):  # a dry run plans and reports, nothing to observe
        yield []
        return
    environment = os.environ if env is None else env
    settings = OpsSettings.resolve(args, environment)
    observers = build_observers(
        settings,
        spark,
        Lakehouse(config.lakehouse),
        job=args.job,
        arguments=command_line(args),
        options=cli_options(args),
        stderr=stderr,
        env=environment,
    )
    try:
        yield list(observers)
    except UsageError:
        raise  # refused before any work (a window behind the watermark): nothing ran
    except BaseException as error:
        for observer in observers:
            observer.run_aborted(error)
        raise


# -- commands -----------------------------------------------------------------------------


def _states(
    config: Config, lakehouse: Lakehouse, job: str, upstream: tuple[str, ...]
) -> tuple[dict[dt.date, PartitionState], dict[str, dict[dt.date, PartitionState]]]:
    """The job's and its upstream jobs' states, through delta-rs or else Spark."""
    every = native.or_spark(
        lambda: native.ledger_states(lakehouse, [job, *upstream]),
        lambda: Ledger(_session(config), lakehouse.framework_table("ledger")).states(
            job, *upstream
        ),
    )
    return every[job], {name: every[name] for name in upstream if name != job}


def _session(config: Config) -> SparkSession:
    from framework.session import get_or_create_session

    return get_or_create_session(config)


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


def _recent_runs(config: Config, job: str, limit: int) -> list[RunRecord]:
    """The run history's newest rows, through delta-rs or else Spark."""
    lakehouse = Lakehouse(config.lakehouse)
    return native.or_spark(
        lambda: native.recent_runs(lakehouse, job, limit),
        lambda: RunHistory.of(_session(config), lakehouse).recent(job, limit),
    )


def cmd_status(args: argparse.Namespace, config: Config, console: Console) -> int:
    """``ninelives status``: table, runbook and recovery command (or ``--json``)."""
    from framework.cli import requested_dates

    job = get_job(args.job)
    dates = requested_dates(args, required=False)
    lakehouse = Lakehouse(config.lakehouse)
    states, upstream, dates, stale = native.or_spark(
        lambda: _status_without_jvm(lakehouse, job, dates),
        lambda: _status_by_spark(_session(config), lakehouse, job, dates),
    )
    if job.watermark_start is not None and not getattr(args, "json", False):
        console.print(
            f"{job.name} watermark: {watermark(job, states)} (windows before it are complete; "
            "a window behind it is reprocessed only with --force)"
        )
    print_status(
        job.name,
        dates,
        states,
        console,
        cli_options(args),
        only=getattr(args, "state", None) or (),
        as_json=getattr(args, "json", False),
        upstream=upstream,
        stale=stale,
    )
    return 0


def history_table(job: str, records: list[RunRecord]) -> Table:
    table = Table(title=f"{job} runs, newest first", title_justify="left")
    for name in (
        "started (UTC)",
        "run_id",
        "outcome",
        "planned",
        "complete",
        "failed",
        "healed",
        "held",
        "skipped",
        "rows in",
        "rows out",
        "quarantined",
        "seconds",
        "host",
        "arguments",
    ):
        numeric = name in ("planned", "complete", "failed", "healed", "held", "skipped")
        numeric = numeric or name.startswith("rows") or name in ("quarantined", "seconds")
        table.add_column(name, justify="right" if numeric else "left", overflow="fold")
    for r in records:
        style = _OUTCOME_STYLE.get(r.outcome, "yellow")
        table.add_row(
            (iso(r.started_at) or "").replace("T", " ").rstrip("Z"),
            r.run_id,
            f"[{style}]{r.outcome}[/]",
            str(r.partitions_planned),
            str(r.partitions_complete),
            str(r.partitions_failed),
            str(r.partitions_healed),
            str(r.partitions_held),
            str(r.partitions_skipped),
            f"{r.rows_in:,}",
            f"{r.rows_out:,}",
            f"{r.rows_quarantined:,}",
            f"{r.duration_s:.1f}",
            r.host or "",
            r.arguments.replace("[", r"\["),
        )
    return table


def cmd_history(args: argparse.Namespace, config: Config, console: Console) -> int:
    """``ninelives history``: one row per run of the job, newest first."""
    from framework.names import checked_identifier

    job = checked_identifier(args.job, "job name")  # a removed job keeps its history
    records = _recent_runs(config, job, args.limit)
    if getattr(args, "json", False):
        for record in records:
            console.out(json.dumps(record.as_json()), highlight=False)
        return 0
    if not records:
        console.print(f"no runs of {job} recorded in this lakehouse")
        return 0
    console.print(history_table(job, records))
    failed = [r for r in records if r.outcome != "succeeded" and r.outcome != "nothing_to_do"]
    console.print(
        f"{len(records)} run(s) shown, {len(failed)} not successful; "
        f"partition details: ninelives status {job}{cli_options(args)}",
        markup=False,
        soft_wrap=True,
    )
    return 0


def cmd_report(args: argparse.Namespace, config: Config, console: Console) -> int:
    """``ninelives report``: write the HTML partition calendar with the runbook."""
    from framework.cli import requested_dates

    job = get_job(args.job)
    dates = requested_dates(args, required=False)
    lakehouse = Lakehouse(config.lakehouse)
    states, upstream = _states(config, lakehouse, job.name, job.depends_on)
    if dates is None:
        dates = date_range(min(states), max(states)) if states else []
    recovery = plan_recovery(
        job.name,
        filter_partitions(dates, states),
        states,
        cli_options=cli_options(args),
        upstream=upstream,
    )
    history = _recent_runs(config, job.name, 10)
    html = render_calendar(job.name, dates, states, recovery, history=history)
    output = Path(args.output)
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(html, encoding="utf-8")
    except OSError as error:
        raise UsageError(f"cannot write {output}: {error.strerror or error}") from None
    counts: dict[str, int] = {}
    for p in dates:
        counts[state_name(states.get(p))] = counts.get(state_name(states.get(p)), 0) + 1
    summary = ", ".join(f"{n} {name}" for name, n in sorted(counts.items())) or "no partitions"
    console.print(f"wrote {output.resolve()}: {summary}", markup=False, soft_wrap=True)
    return 0


OPS_COMMANDS: dict[str, Callable[[argparse.Namespace, Config, Console], int]] = {
    "status": cmd_status,
    "history": cmd_history,
    "report": cmd_report,
}
"""Handlers to merge into ``framework.cli.COMMANDS`` (``status`` replaces the plain one)."""
