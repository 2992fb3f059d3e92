"""The observers of one ``ninelives run``: progress, JSON logs, run history, Prometheus
metrics and webhook alerts, as its options and the environment ask.

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
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO

from pyspark.sql import SparkSession

from framework.cli.args import ratio as args_ratio
from framework.cli.args import repeated_options
from framework.core.config import Config
from framework.core.errors import UsageError
from framework.core.logs import JsonLinesHandler
from framework.engine.runner import RunObserver
from framework.lake.tables import Lakehouse
from framework.ops.alerts import DEFAULT_WARN_RATIO, AlertObserver
from framework.ops.history import HistoryObserver, RunHistory
from framework.ops.metrics import MetricsObserver
from framework.ops.observers import Guarded, LogObserver, ProgressObserver, progress_mode
from framework.state.leases import this_host

PROGRESS_MODES = ("auto", "bar", "plain", "off")
LOG_FORMATS = ("text", "json")


def add_options(run: argparse.ArgumentParser) -> None:
    """The options of the table above, as ``run``'s "operations" group."""
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
        type=args_ratio,
        metavar="R",
        help=f"warn when quarantined/read > R (default {DEFAULT_WARN_RATIO})",
    )


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
                ratio = args_ratio(env["NINELIVES_ALERT_QUARANTINE_RATIO"])
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
    return shlex.join(parts) + repeated_options(args)


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
    logs: dict[str, logging.Handler] = {}  # the run's JSON lines, by where they go
    if settings.log_format == "json":
        logs["stderr"] = JsonLinesHandler(stream)
    if settings.log_file:
        try:
            logs[settings.log_file] = JsonLinesHandler.to_file(settings.log_file)
        except OSError as error:
            raise UsageError(f"cannot open the log file {settings.log_file}: {error}") from None
    if logs:
        what = f"JSON log to {' and '.join(logs)}"
        observers.append(Guarded(LogObserver(*logs.values()), what, warn))
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

    Example (``framework.cli.run``)::

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
        options=repeated_options(args),
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
