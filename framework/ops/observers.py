"""Run observers for people and log pipelines: a progress bar, log lines, JSON logs.

Each class implements :class:`~framework.engine.runner.RunObserver` and is passed to
``run_job(..., observers=[...])``; none of them reads global state, the streams and
settings are parameters.

- :class:`ProgressObserver` shows a rich progress bar over the run's partitions (done /
  total, rows per second, ETA) on a terminal, or writes one plain line per finished
  partition elsewhere (:func:`progress_mode` picks; Databricks gets plain lines).
- :class:`LogObserver` logs every run event, each state transition with its job,
  partition, attempt, run_id, state, counts, duration and error, to the
  ``framework.events`` logger; :class:`~framework.core.logs.JsonLinesHandler` writes
  them as JSON lines.
- :class:`Guarded` wraps an observer so that its failure becomes one warning line
  instead of failing a run whose data is fine.

Example::

    observers = [ProgressObserver(progress_mode(sys.stderr, os.environ)),
                 LogObserver(JsonLinesHandler.to_file("/var/log/ninelives.jsonl"))]
    run_job(spark, lakehouse, JOB, request, observers=observers)
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import IO, Any, Literal
from urllib.parse import urlsplit

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from framework.core.failures import describe as root_cause_line
from framework.core.logs import EVENTS
from framework.engine.runner import RunObserver, RunReport
from framework.state.ledger import COMPLETE, COUNT_FIELDS, FAILED, RUNNING, PartitionState, utcnow

ProgressMode = Literal["bar", "plain", "off"]
Warn = Callable[[str], None]


def progress_mode(stream: IO[str], env: Mapping[str, str], requested: str = "auto") -> ProgressMode:
    """``bar`` on an interactive terminal, ``plain`` elsewhere and on Databricks.

    :param requested: ``auto`` (the default), or ``bar``, ``plain``, ``off`` to force one.
    """
    if requested in ("bar", "plain", "off"):
        return requested  # type: ignore[return-value]
    if env.get("DATABRICKS_RUNTIME_VERSION"):
        return "plain"  # driver logs are files, not terminals, even when they look like one
    isatty = getattr(stream, "isatty", None)
    return "bar" if callable(isatty) and isatty() else "plain"


def _error_line(state: PartitionState) -> str:
    message = (state.error_message or "").strip().splitlines()
    return f"{state.error_class}: {message[0][:200] if message else ''}"


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    whole = round(seconds)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


class ProgressObserver:
    """Progress over the partitions a run processes.

    :param mode: ``bar`` (rich progress bar), ``plain`` (one line per finished
        partition, with the same figures) or ``off``.
    :param stream: where to write (stderr by the CLI).
    :param clock: monotonic seconds, a parameter for tests.
    """

    def __init__(
        self,
        mode: ProgressMode,
        stream: IO[str] | None = None,
        *,
        console: Console | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.mode = mode
        self.console = console or Console(file=stream, stderr=stream is None, highlight=False)
        self.clock = clock
        self.total = 0
        self.finished: dict[dt.date, PartitionState] = {}
        self.job = ""
        self.started = 0.0
        self._progress: Progress | None = None
        self._task: Any = None

    # -- figures shared by the bar and the plain lines ---------------------------------
    # A transient failure is followed by a new ``running`` claim of the same partition:
    # a partition counts as done at its latest complete or failed state, not before.
    @property
    def done(self) -> int:
        return len(self.finished)

    @property
    def failed(self) -> int:
        return sum(s.state == FAILED for s in self.finished.values())

    @property
    def rows(self) -> int:
        return sum(s.rows_read or 0 for s in self.finished.values() if s.state == COMPLETE)

    def rows_per_second(self) -> float:
        elapsed = self.clock() - self.started
        return self.rows / elapsed if elapsed > 0 else 0.0

    def eta_seconds(self) -> float | None:
        """Remaining partitions times the mean time of the finished ones."""
        if self.done == 0:
            return None
        return (self.clock() - self.started) / self.done * max(0, self.total - self.done)

    def _fields(self) -> dict[str, Any]:
        return {
            "rate": f"{self.rows_per_second():,.0f} rows/s",
            "eta": f"ETA {_clock(self.eta_seconds())}",
            "failed": f"[red]{self.failed} failed[/]" if self.failed else "",
        }

    def _line(self, text: str) -> None:
        stamp = utcnow().isoformat(timespec="seconds").replace("+00:00", "Z")
        self.console.print(f"{stamp} {text}", markup=False, highlight=False, soft_wrap=True)

    # -- RunObserver -------------------------------------------------------------------
    def run_started(self, report: RunReport) -> None:
        self.job = report.job
        self.total = len(report.plan.to_run)
        self.started = self.clock()
        if self.mode == "plain":
            self._line(
                f"{report.job} run {report.run_id}: {self.total} partition(s) to process, "
                f"{len(report.plan.skipped)} skipped as complete"
            )
        elif self.mode == "bar" and self.total:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TextColumn("{task.fields[eta]}"),
                TimeElapsedColumn(),
                TextColumn("{task.fields[failed]}"),
                console=self.console,
                transient=False,
            )
            self._task = self._progress.add_task(report.job, total=self.total, **self._fields())
            self._progress.start()

    def transition(self, state: PartitionState, seconds: float | None) -> None:
        if state.state == RUNNING:
            retried = self.finished.pop(state.partition, None)
            if retried is not None and self.mode == "plain":
                self._line(
                    f"{state.job} {state.partition} retrying as attempt {state.attempt} "
                    f"after {_error_line(retried)}"
                )
            if retried is not None and self._progress is not None:
                self._progress.update(self._task, completed=self.done, **self._fields())
            return
        if self.mode == "off":
            return
        self.finished[state.partition] = state
        if self._progress is not None:
            self._progress.update(self._task, completed=self.done, **self._fields())
        elif self.mode == "plain":
            healed = state.state == COMPLETE and seconds is None
            what = (
                f"complete: {state.rows_read or 0:,} read, {state.rows_written or 0:,} written, "
                f"{state.rows_rejected or 0:,} quarantined"
                if state.state == COMPLETE
                else f"FAILED: {_error_line(state)}"
            )
            took = "healed from its Delta commit" if healed else f"in {seconds or 0:.1f}s"
            fields = self._fields()
            self._line(
                f"{state.job} {state.partition} attempt {state.attempt} {what} {took} "
                f"[{self.done}/{self.total} done, {fields['rate']}, {fields['eta']}]"
            )

    def run_finished(self, report: RunReport) -> None:
        self._stop()
        if self.mode == "plain":
            elapsed = self.clock() - self.started
            self._line(
                f"{report.job} run {report.run_id} finished in {elapsed:.1f}s: "
                f"{self.done - self.failed} complete, {self.failed} failed, "
                f"{len(report.held)} held by another runner"
            )

    def run_aborted(self, error: BaseException) -> None:
        self._stop()
        if self.mode == "plain":
            self._line(f"{self.job} run aborted: {type(error).__name__}")

    def _stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


class LogObserver:
    """Every run event as an INFO record of the ``framework.events`` logger
    (:data:`framework.core.logs.EVENTS`): the message is the event, ``run_started``,
    ``transition``, ``run_finished`` or ``run_aborted``, and ``record.fields`` its fields.
    :class:`framework.core.logs.JsonFormatter` writes them as JSON lines.

    A transition carries ``job, partition, attempt, run_id, state, counts, duration_s,
    error`` (``{"class", "message"}`` or null), plus ``host``, ``pid``, ``target_version``
    and ``healed`` (complete from an abandoned attempt's Delta commit).

    ``handlers`` are added to the logger for this run and closed when it ends (the
    ``ninelives`` command's ``--log-format json`` and ``--log-file``).
    """

    def __init__(self, *handlers: logging.Handler) -> None:
        self.log = logging.getLogger(EVENTS)
        self.handlers = handlers
        for handler in handlers:
            self.log.addHandler(handler)
        if handlers and not self.log.isEnabledFor(logging.INFO):
            self.log.setLevel(logging.INFO)
        self.run_id: str | None = None
        self.job: str | None = None

    def _emit(self, event: str, **fields: object) -> None:
        self.log.info(event, extra={"fields": {"job": self.job, "run_id": self.run_id, **fields}})

    def run_started(self, report: RunReport) -> None:
        self.job, self.run_id = report.job, report.run_id
        self._emit(
            "run_started",
            planned=[p.isoformat() for p in report.plan.to_run],
            skipped=len(report.plan.skipped),
        )

    def transition(self, state: PartitionState, seconds: float | None) -> None:
        error = (
            {"class": state.error_class, "message": state.error_message}
            if state.state == FAILED
            else None
        )
        self.job = self.job or state.job
        line: dict[str, object] = {
            "job": state.job,
            "run_id": state.run_id,
            "partition": state.partition,
            "attempt": state.attempt,
            "state": state.state,
            "counts": {name: getattr(state, name) for name in COUNT_FIELDS},
            "duration_s": None if seconds is None else round(seconds, 3),
            "error": error,
            "healed": state.state == COMPLETE and seconds is None,
            "host": state.host,
            "pid": state.pid,
            "target_version": state.target_version,
        }
        self._emit("transition", **line)

    def run_finished(self, report: RunReport) -> None:
        from framework.ops.history import RunRecord

        record = RunRecord.from_report(report)
        try:
            self._emit(
                "run_finished",
                outcome=record.outcome,
                exit_code=report.exit_code,
                duration_s=round(record.duration_s, 3),
                partitions=record.partition_counts(),
                rows_in=record.rows_in,
                rows_out=record.rows_out,
                rows_quarantined=record.rows_quarantined,
            )
        finally:
            self.close()

    def run_aborted(self, error: BaseException) -> None:
        try:
            self._emit("run_aborted", error={"class": type(error).__name__, "message": str(error)})
        finally:
            self.close()

    def close(self) -> None:
        """Remove and close this run's handlers."""
        for handler in self.handlers:
            self.log.removeHandler(handler)
            handler.close()
        self.handlers = ()


class Guarded:
    """Runs an observer so that its errors are reported, never raised.

    Observers run inside ``run_job``: a failing metrics push or history write must not
    turn a run whose data is complete into a crash. ``warn`` gets one line naming
    ``what`` and the error class; ``describe`` may shorten or redact the error.
    """

    def __init__(
        self,
        observer: RunObserver,
        what: str,
        warn: Warn,
        describe: Callable[[BaseException], str] | None = None,
    ) -> None:
        self.observer = observer
        self.what = what
        self.warn = warn
        self.describe = describe or root_cause_line

    def _call(self, method: str, *args: object) -> None:
        target = getattr(self.observer, method, None)
        if target is None:
            return
        try:
            target(*args)
        except Exception as error:
            self.warn(f"{self.what} failed: {self.describe(error)}")

    def run_started(self, report: RunReport) -> None:
        self._call("run_started", report)

    def transition(self, state: PartitionState, seconds: float | None) -> None:
        self._call("transition", state, seconds)

    def run_finished(self, report: RunReport) -> None:
        self._call("run_finished", report)

    def run_aborted(self, error: BaseException) -> None:
        self._call("run_aborted", error)


def redacted(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret (and each URL's user info, path and query) blanked."""
    for secret in _secret_parts(secrets):
        text = text.replace(secret, "<redacted>")
    return text


def _secret_parts(secrets: Iterable[str]) -> list[str]:
    parts: set[str] = set()
    for secret in secrets:
        if not secret:
            continue
        parts.add(secret)
        url = urlsplit(secret)
        for piece in (url.netloc, url.path, url.query, url.username or "", url.password or ""):
            if len(piece) > 3:  # "/" or a short path would blank ordinary words
                parts.add(piece)
    return sorted(parts, key=len, reverse=True)


def safe_describe(error: BaseException, secrets: Iterable[str]) -> str:
    """The error's class and first line, with ``secrets`` redacted.

    HTTP errors are described by their status only: their text and attributes can
    carry the URL that was called.
    """
    status = getattr(error, "code", None)
    if isinstance(status, int):
        return redacted(f"HTTP {status} {getattr(error, 'reason', '') or ''}".strip(), secrets)
    reason = getattr(error, "reason", None)
    if reason is not None and not isinstance(reason, str):
        error = reason  # URLError wraps the socket error that says what happened
    return redacted(root_cause_line(error), list(secrets))
