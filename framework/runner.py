"""Plan, then process: the run of one job over a set of date partitions.

A run reads the ledger once, plans ``requested - complete`` (everything requested with
``force``), and processes each planned partition::

    claim (lease) -> process_partition (framework.partition) -> complete | failed

Any error marks the partition ``failed`` with its error class and message; transient
ones (Delta write conflicts, I/O errors) are retried as new attempts with exponential
backoff and jitter, up to the job's ``max_attempts``. The other partitions go on unless
``fail_fast``. A rerun when everything is complete reads only
the ledger: no Spark job touches source or target data.

Example::

    report = run_job(spark, lakehouse, ORDERS_DAILY, RunRequest.for_dates([date(2024, 1, 15)]))
    report.exit_code    # 0 when every requested partition is complete
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import random
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any, Protocol

from pyspark.sql import SparkSession

from framework.crashpoints import RENEWAL_POINT, crash_point
from framework.errors import (
    DriverDiedError,
    NinelivesError,
    PartitionError,
    TargetMissingError,
    UsageError,
    delta_conflicts,
)
from framework.failures import root_cause
from framework.job import Job
from framework.leases import LeaseRenewer, is_held, this_host
from framework.ledger import COMPLETE, FAILED, RUNNING, Ledger, PartitionState, utcnow
from framework.partition import process_partition
from framework.quarantine import quarantine_table
from framework.session import driver_alive, jvm_fatal_error
from framework.sinks import CommitTag, find_commit, row_counts
from framework.tables import Lakehouse


def new_run_id() -> str:
    return f"{utcnow():%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class RunRequest:
    """What to run: the partitions asked for and how."""

    partitions: tuple[dt.date, ...]
    force: bool = False
    dry_run: bool = False
    fail_fast: bool = False
    wait: bool = False
    only_failed: bool = False
    include_stale: bool = False
    until: dt.date | None = None
    """Watermark jobs without dates: the last window to process (default yesterday)."""
    max_parallel: int = 1
    lease_seconds: float = 600.0
    wait_poll_seconds: float = 5.0
    retry_base_seconds: float = 2.0

    @classmethod
    def for_dates(cls, dates: Iterable[dt.date], **options: Any) -> RunRequest:
        return cls(tuple(sorted(set(dates))), **options)


@dataclass(frozen=True)
class Plan:
    """``to_run`` = (requested - complete) | (requested & rerun); all requested if forced.

    ``rerun`` holds complete partitions to process again: stale ones (their input
    changed) with ``include_stale``, and the job's lookback window.
    """

    requested: frozenset[dt.date]
    complete: frozenset[dt.date]
    force: bool
    rerun: frozenset[dt.date] = frozenset()

    @property
    def to_run(self) -> tuple[dt.date, ...]:
        if self.force:
            return tuple(sorted(self.requested))
        return tuple(sorted((self.requested - self.complete) | (self.requested & self.rerun)))

    @property
    def skipped(self) -> tuple[dt.date, ...]:
        return tuple(sorted(self.requested - set(self.to_run)))


def plan_partitions(
    requested: Iterable[dt.date],
    states: dict[dt.date, PartitionState],
    *,
    force: bool = False,
    only_failed: bool = False,
    lookback_days: int = 0,
    stale: Iterable[dt.date] = (),
) -> Plan:
    """The plan as set algebra over the ledger's states.

    ``only_failed`` narrows the request to failed partitions (all the job's failed
    partitions when no dates are requested). ``lookback_days`` adds the complete
    partitions of the days before the newest requested one; ``stale`` (complete
    partitions whose input changed) are processed again.
    """
    asked = frozenset(requested)
    if only_failed:
        failed = frozenset(p for p, s in states.items() if s.state == FAILED)
        asked = failed & asked if asked else failed
    complete = frozenset(p for p, s in states.items() if s.state == COMPLETE)
    lookback: frozenset[dt.date] = frozenset()
    if lookback_days and asked and not only_failed:
        newest = max(asked)
        window = {newest - dt.timedelta(days=n) for n in range(1, lookback_days + 1)}
        lookback = frozenset(window) & complete
    return Plan(asked | lookback, complete, force, frozenset(stale) | lookback)


def watermark(job: Job, states: dict[dt.date, PartitionState]) -> dt.date:
    """The first window of a watermark job that is not complete.

    It is derived from the ledger's ``complete`` rows, which are written only after the
    window's target commit: the watermark never runs ahead of the data, and a crash
    between the two is healed like any partition's.
    """
    assert job.watermark_start is not None
    window = job.watermark_start
    while window in states and states[window].state == COMPLETE:
        window += dt.timedelta(days=1)
    return window


def watermark_windows(
    job: Job, states: dict[dt.date, PartitionState], request: RunRequest
) -> tuple[dt.date, ...]:
    """The windows a watermark job's run covers; refuses windows behind the watermark."""
    mark = watermark(job, states)
    if not request.partitions:
        until = request.until or utcnow().date() - dt.timedelta(days=1)
        return tuple(mark + dt.timedelta(days=i) for i in range((until - mark).days + 1))
    behind = sorted(p for p in request.partitions if p < mark)
    if behind and not request.force:
        raise UsageError(
            f"job {job.name}: window {behind[0]} is behind the watermark {mark} and was "
            "already processed; rerun it with --force to reprocess it (idempotent MERGE)"
        )
    return request.partitions


def stale_partitions(
    spark: SparkSession,
    lakehouse: Lakehouse,
    job: Job,
    states: dict[dt.date, PartitionState],
    candidates: Iterable[dt.date],
) -> frozenset[dt.date]:
    """Complete partitions among ``candidates`` whose input changed since they completed
    (a different fingerprint; input that has since disappeared does not count)."""
    stale = set()
    for partition in candidates:
        state = states.get(partition)
        if state is None or state.state != COMPLETE or state.fingerprint is None:
            continue
        now = job.source.fingerprint(spark, lakehouse, partition)
        # Input that is gone (a landing zone's retention purged it) is not new input:
        # reprocessing it could only fail.
        if now is not None and now != state.fingerprint:
            stale.add(partition)
    return frozenset(stale)


@dataclass
class RunReport:
    job: str
    run_id: str
    plan: Plan
    results: list[PartitionState] = field(default_factory=list)
    seconds: dict[dt.date, float] = field(default_factory=dict)
    states: dict[dt.date, PartitionState] = field(default_factory=dict)
    healed: list[PartitionState] = field(default_factory=list)
    """Abandoned attempts marked complete from their Delta commits, without recomputing."""
    held: dict[dt.date, PartitionState] = field(default_factory=dict)
    """Partitions another live runner holds; this run left them alone."""
    started_at: dt.datetime = field(default_factory=utcnow)
    finished_at: dt.datetime | None = None

    @property
    def failed(self) -> list[PartitionState]:
        return [r for r in self.results if r.state == FAILED]

    @property
    def final_states(self) -> dict[dt.date, PartitionState]:
        return {**self.states, **{r.partition: r for r in [*self.healed, *self.results]}}

    @property
    def incomplete(self) -> list[dt.date]:
        """Requested partitions that are not complete after this run."""
        final = self.final_states
        return sorted(
            p for p in self.plan.requested if p not in final or final[p].state != COMPLETE
        )

    @property
    def exit_code(self) -> int:
        """0: all requested complete; 1: a partition failed; 3: another runner holds one."""
        if self.failed:
            return 1
        if self.held:
            return 3
        return 1 if self.incomplete else 0


def _error_class(error: BaseException) -> str:
    """The exception's class, with Spark's error condition when it has one."""
    condition = root_cause(error).condition
    return f"{type(error).__name__}:{condition}" if condition else type(error).__name__


def _error_message(error: BaseException) -> str:
    """The ledger's one line: the root cause, and the line that raised a Python error;
    without the exception's class, which ``error_class`` holds."""
    cause = root_cause(error, locate=True)
    return cause.line(kind=cause.kind != type(error).__name__)


def run_job(
    spark: SparkSession,
    lakehouse: Lakehouse,
    job: Job,
    request: RunRequest,
    *,
    observers: Sequence[RunObserver] = (),
) -> RunReport:
    """Plan, heal, claim and process ``request`` for ``job``.

    Every transition is one ledger commit. Partitions held by another live runner are
    left alone and reported in ``RunReport.held`` (exit code 3), or waited for with
    ``request.wait``. ``observers`` see the run start, every transition and the end.
    """
    ledger = Ledger(spark, lakehouse.framework_table("ledger"))
    host, pid = this_host(), os.getpid()
    report: RunReport | None = None
    renewal_ledger = Ledger(spark.newSession(), ledger.ref)
    lease = dt.timedelta(seconds=request.lease_seconds)

    def renew(states: Iterable[PartitionState]) -> None:
        crash_point(RENEWAL_POINT)
        expires = utcnow() + lease
        renewal_ledger.record(
            dataclasses.replace(s, lease_expires_at=expires, recorded_at=None) for s in states
        )

    run_id = new_run_id()
    processed: set[dt.date] = set()
    with LeaseRenewer(run_id, request.lease_seconds / 3, renew) as renewer:
        while True:
            all_states = ledger.states(job.name, *job.depends_on)
            states = all_states[job.name]
            if job.watermark_start is not None and report is None:
                request = dataclasses.replace(
                    request, partitions=watermark_windows(job, states, request)
                )
            stale = (
                stale_partitions(spark, lakehouse, job, states, request.partitions)
                if request.include_stale and not request.force
                else frozenset()
            )
            plan = plan_partitions(
                request.partitions,
                states,
                force=request.force,
                only_failed=request.only_failed,
                lookback_days=job.lookback_days,
                stale=stale,
            )
            if report is None:
                report = RunReport(job.name, run_id, plan, states=dict(states))
                if request.dry_run:
                    return report
                for observer in observers:
                    observer.run_started(report)
            now = utcnow()
            todo = [p for p in plan.to_run if p not in processed]
            held = {p: states[p] for p in todo if is_held(states.get(p), now, host)}
            free = [p for p in todo if p not in held]
            if not request.force:
                healed = heal_abandoned(
                    spark, lakehouse, job, [states[p] for p in free if p in states]
                )
                if healed:
                    ledger.record(healed)
                    report.healed.extend(healed)
                    for state in healed:
                        _notify(observers, state, None)
                    processed.update(h.partition for h in healed)
                    free = [p for p in free if p not in processed]
            claims = {
                p: (_running(job, p, states.get(p), run_id, host, pid, now + lease), states.get(p))
                for p in free
            }
            try:
                won = ledger.claim(claims)
            except delta_conflicts():
                # Another runner's claim committed between our read and ours (storage
                # that arbitrates commits): plan again from the ledger as it is now.
                continue
            lost = [p for p in free if p not in won]
            if lost:  # claimed by another runner between our read and our claim
                latest = ledger.states(job.name)[job.name]
                held.update({p: latest[p] for p in lost if p in latest})
            renewer.hold(won.values())
            # What the ledger holds now: this run's claims are running, and each
            # partition's final state replaces its claim as it is recorded.
            all_states = {**all_states, job.name: {**states, **won}}
            for state in sorted(won.values(), key=lambda s: s.partition):
                _notify(observers, state, None)
            finals, stop = _process_claimed(
                spark,
                ledger,
                lakehouse,
                job,
                request,
                won,
                states,
                all_states,
                report,
                observers,
                renewer,
            )
            processed.update(finals)
            report.results.extend(finals.values())
            report.results.sort(key=lambda r: r.partition)
            if stop or not held or not request.wait:
                report.held = {p: s for p, s in held.items() if p not in processed}
                report.finished_at = utcnow()
                for observer in observers:
                    observer.run_finished(report)
                return report
            time.sleep(request.wait_poll_seconds)


def _process_claimed(
    spark: SparkSession,
    ledger: Ledger,
    lakehouse: Lakehouse,
    job: Job,
    request: RunRequest,
    won: dict[dt.date, PartitionState],
    states: dict[dt.date, PartitionState],
    all_states: dict[str, dict[dt.date, PartitionState]],
    report: RunReport,
    observers: Sequence[RunObserver],
    renewer: LeaseRenewer,
) -> tuple[dict[dt.date, PartitionState], bool]:
    """Process the claimed partitions, ``request.max_parallel`` at a time.

    Returns the final states and whether ``fail_fast`` stopped the run. Transaction ids
    and commit metadata are session settings, so each worker thread gets a session of
    its own (``spark.newSession()``: same SparkContext, own SQL settings).
    """
    sessions = threading.local()

    def work(partition: dt.date) -> PartitionState:
        session = spark
        if request.max_parallel > 1:
            if not hasattr(sessions, "spark"):
                sessions.spark = spark.newSession()
            session = sessions.spark
        crash_point("after_claim", partition)
        final = _process_with_retries(
            session,
            ledger,
            job,
            lakehouse,
            request,
            won[partition],
            states.get(partition),
            all_states,
            report,
            observers,
        )
        renewer.release(partition)
        return final

    finals: dict[dt.date, PartitionState] = {}
    stop = False
    if request.max_parallel == 1:  # in order, and fail_fast stops before the next one
        for partition in sorted(won):
            finals[partition] = work(partition)
            if finals[partition].state == FAILED and request.fail_fast:
                return finals, True
        return finals, False
    with ThreadPoolExecutor(max_workers=request.max_parallel) as pool:
        pending = [pool.submit(work, p) for p in sorted(won)]
        for future in as_completed(pending):
            if future.cancelled():
                continue
            final = future.result()
            finals[final.partition] = final
            if final.state == FAILED and request.fail_fast and not stop:
                stop = True
                for other in pending:
                    other.cancel()
    return dict(sorted(finals.items())), stop


class RunObserver(Protocol):
    """Sees a run as it happens: progress bars, logs, metrics, history, alerts."""

    def run_started(self, report: RunReport) -> None: ...

    def transition(self, state: PartitionState, seconds: float | None) -> None:
        """A state was recorded: running (claimed), complete, failed or healed."""

    def run_finished(self, report: RunReport) -> None: ...


def _notify(observers: Sequence[RunObserver], state: PartitionState, seconds: float | None) -> None:
    for observer in observers:
        observer.transition(state, seconds)


def _running(
    job: Job,
    partition: dt.date,
    previous: PartitionState | None,
    run_id: str,
    host: str,
    pid: int,
    expires: dt.datetime,
) -> PartitionState:
    return PartitionState(
        job=job.name,
        partition=partition,
        attempt=(previous.attempt if previous else 0) + 1,
        state=RUNNING,
        run_id=run_id,
        host=host,
        pid=pid,
        lease_expires_at=expires,
        started_at=utcnow(),
    )


def _process_with_retries(
    spark: SparkSession,
    ledger: Ledger,
    job: Job,
    lakehouse: Lakehouse,
    request: RunRequest,
    running: PartitionState,
    previous: PartitionState | None,
    all_states: dict[str, dict[dt.date, PartitionState]],
    report: RunReport,
    observers: Sequence[RunObserver],
) -> PartitionState:
    """Attempts at one claimed partition until it completes, fails for good, or is lost.

    A transient failure is recorded as ``failed`` like any other, then the next attempt
    is claimed with the same compare-and-swap as the first, so no other runner can
    slip in between; each retry has its own, higher attempt number.
    """
    started = time.monotonic()
    for retry in range(job.max_attempts):
        final, transient = _attempt(spark, lakehouse, job, running, previous, all_states)
        [recorded] = ledger.record(final)
        all_states.setdefault(job.name, {})[recorded.partition] = recorded
        report.seconds[running.partition] = time.monotonic() - started
        _notify(observers, recorded, report.seconds[running.partition])
        if not transient or retry + 1 == job.max_attempts:
            return recorded
        delay = request.retry_base_seconds * 2**retry
        time.sleep(min(60.0, delay + random.uniform(0, delay)))
        nxt = _running(
            job,
            running.partition,
            recorded,
            running.run_id,
            running.host or "",
            running.pid or 0,
            utcnow() + dt.timedelta(seconds=request.lease_seconds),
        )
        won = ledger.claim({running.partition: (nxt, recorded)})
        if not won:
            return recorded
        previous, running = recorded, won[running.partition]
        _notify(observers, running, None)
    return recorded


def is_transient(error: BaseException) -> bool:
    """Worth retrying: Delta write conflicts and I/O trouble; never our own errors."""
    if isinstance(error, NinelivesError):
        return False  # schema, validation, accounting, fencing, missing source: permanent
    condition = root_cause(error).condition or ""
    if condition == "FAILED_READ_FILE.FILE_NOT_EXIST":
        return True  # the files were replaced or removed after the listing: list again
    if condition.startswith("FAILED_READ_FILE"):
        return False  # a corrupt or truncated input file reads the same way every time
    if isinstance(error, (*delta_conflicts(), OSError, TimeoutError, ConnectionError)):
        return True
    from py4j.protocol import Py4JNetworkError

    if isinstance(error, Py4JNetworkError):
        return True
    text = str(error)
    return "java.io.IOException" in text or "java.net." in text


def _attempt(
    spark: SparkSession,
    lakehouse: Lakehouse,
    job: Job,
    running: PartitionState,
    previous: PartitionState | None,
    all_states: dict[str, dict[dt.date, PartitionState]],
) -> tuple[PartitionState, bool]:
    """One attempt; never raises: a failure becomes the ``failed`` state (and whether
    it is worth retrying)."""
    try:
        _check_upstream(job, running.partition, all_states)
        _check_target(spark, lakehouse, job, running.partition, all_states.get(job.name, {}))
        return process_partition(spark, lakehouse, job, running, previous), False
    except Exception as error:  # every failure is recorded, then the run goes on
        failed = running.advance(
            FAILED,
            error_class=_error_class(error),
            error_message=_error_message(error),
            finished_at=utcnow(),
        )
        if not driver_alive(spark):
            raise _driver_died(job, failed) from error
        return failed, is_transient(error)


def _driver_died(job: Job, failed: PartitionState) -> DriverDiedError:
    """The failure as the JVM's last words tell it, for a new process to record."""
    fatal = jvm_fatal_error()
    if fatal:
        kind, _, detail = fatal.removeprefix("java.lang.").partition(":")
        cause = f"{kind}: {detail.strip()}" if detail.strip() else kind
    else:
        kind, cause = "DriverDied", "its JVM exited (killed by the system, or out of memory)"
    message = f"Spark's driver died during the attempt: {cause}"
    state = dataclasses.replace(failed, error_class=kind, error_message=message)
    return DriverDiedError(f"job {job.name}, partition {failed.partition}: {message}", [state])


def heal_abandoned(
    spark: SparkSession, lakehouse: Lakehouse, job: Job, states: Iterable[PartitionState]
) -> list[PartitionState]:
    """``complete`` states for abandoned attempts whose writes all reached Delta.

    An attempt is abandoned when its ``running`` lease is no longer held (its owner died
    or the lease expired). If the target has the attempt's tagged commit, and the
    quarantine too when the attempt had rejects to write, the partition is complete:
    its counts come from the commit's metadata and operation metrics, nothing is
    recomputed. Otherwise the partition is simply processed again.
    """
    now, host = utcnow(), this_host()
    healed = []
    for state in states:
        if state.state != RUNNING or is_held(state, now, host):
            continue
        complete = _complete_from_commits(spark, lakehouse, job, state)
        if complete is not None:
            healed.append(complete)
    return healed


def reconcile(
    spark: SparkSession, lakehouse: Lakehouse, job: Job
) -> list[tuple[PartitionState, PartitionState]]:
    """Settle every abandoned ``running`` partition of ``job``; return (before, after).

    An abandoned attempt whose commits all exist becomes ``complete`` (as at plan
    time); one whose commits do not becomes ``failed`` with error class
    ``AbandonedAttempt``, so that status shows it and a plain rerun processes it.
    Partitions held by a live runner are left alone.
    """
    ledger = Ledger(spark, lakehouse.framework_table("ledger"))
    states = ledger.states(job.name)[job.name]
    healed = {s.partition: s for s in heal_abandoned(spark, lakehouse, job, states.values())}
    now, host = utcnow(), this_host()
    fixed = []
    for partition, state in sorted(states.items()):
        if state.state != RUNNING or is_held(state, now, host):
            continue
        after = healed.get(partition) or state.advance(
            FAILED,
            error_class="AbandonedAttempt",
            error_message=(
                f"runner {state.run_id} (host {state.host}, pid {state.pid}) stopped without "
                "finishing and its writes did not all reach Delta; a rerun processes it"
            ),
            finished_at=now,
        )
        fixed.append((state, after))
    ledger.record(after for _, after in fixed)
    return fixed


def _complete_from_commits(
    spark: SparkSession, lakehouse: Lakehouse, job: Job, state: PartitionState
) -> PartitionState | None:
    tag = CommitTag(job.name, state.partition, state.run_id, state.attempt)
    commit = find_commit(spark, lakehouse.table(job.sink.table), tag)
    if commit is None or "rows_read" not in commit.metadata:
        return None
    meta = commit.metadata
    if (
        meta.get("quarantine")
        and find_commit(spark, quarantine_table(lakehouse, job.name), tag) is None
    ):
        return None
    dropped = meta.get("rows_dropped", 0)
    accepted = meta["rows_read"] - meta["rows_rejected"] - dropped - meta["rows_duplicate"]
    written, inserted, updated, deleted = row_counts(commit, accepted)
    return state.advance(
        COMPLETE,
        rows_read=meta["rows_read"],
        rows_written=written,
        rows_inserted=inserted,
        rows_updated=updated,
        rows_deleted=deleted,
        rows_unchanged=written - inserted - updated,
        rows_duplicate=meta["rows_duplicate"],
        rows_rejected=meta["rows_rejected"],
        rows_dropped=dropped,
        fingerprint=meta.get("fingerprint"),
        target_version=commit.version,
        error_class=None,
        error_message=None,
        finished_at=utcnow(),
    )


def _check_target(
    spark: SparkSession,
    lakehouse: Lakehouse,
    job: Job,
    partition: dt.date,
    states: dict[dt.date, PartitionState],
) -> None:
    """A target without a committed version is created by the next write, which is
    right for a new job, and silently wrong when the ledger says partitions were
    written to it: someone deleted or moved it, and writing on would leave those
    partitions ``complete`` with their rows gone. Partitions this run has claimed are
    ``running`` in ``states``, so a forced run over all of them rebuilds the target."""
    written = sorted(
        d for d, s in states.items() if s.state == COMPLETE and s.target_version is not None
    )
    if not written or lakehouse.table(job.sink.table).exists(spark):
        return
    raise _target_missing(job, partition, written)


def _target_missing(job: Job, partition: dt.date, written: Sequence[dt.date]) -> TargetMissingError:
    shown = ", ".join(d.isoformat() for d in written[:3]) + (", ..." if len(written) > 3 else "")
    return TargetMissingError(
        f"job {job.name}, partition {partition}: the target {job.sink.table} has no "
        f"committed version, but the ledger records {len(written)} complete partition(s) "
        f"written to it ({shown}): it was deleted or moved. Put it back (restore the "
        f"folder), or rebuild it: `ninelives run {job.name} --force --from {written[0]} "
        f"--to {max(written[-1], partition)}`"
    )


def _check_upstream(
    job: Job, partition: dt.date, states: dict[str, dict[dt.date, PartitionState]]
) -> None:
    for upstream in job.depends_on:
        state = states.get(upstream, {}).get(partition)
        if state is None or state.state != COMPLETE:
            raise PartitionError(
                f"job {job.name}, partition {partition}: upstream job {upstream} is "
                f"{state.state if state else 'missing'} for this date; run "
                f"`ninelives run {upstream} --date {partition}` first"
            )
