"""Plan, then process: the run of one job over a set of date partitions.

A run reads the ledger once, plans ``requested - complete`` (everything requested with
``force``), packs the planned partitions into work units (consecutive dates, up to the
request's ``unit_bytes`` of input and ``unit_partitions`` dates), and processes each unit::

    claim (leases, unit number) -> process_unit (framework.engine.unit) -> complete | failed

A unit is one Spark pass and one commit per table, and each of its partitions keeps its
own state, counts and error. A partition that fails before the write fails alone. A unit
that fails as a whole is retried as a new unit when the error is transient (Delta write
conflicts, I/O errors; exponential backoff and jitter, up to the job's
``max_attempts``), claimed again under a newer number when Delta skipped its commit for
an older one (:class:`~framework.core.errors.FencedError`), and otherwise split into halves,
down to single partitions, each half claimed and processed as a new unit. The other
units go on unless ``fail_fast``. A rerun when everything is complete reads only the
ledger: no Spark job touches source or target data.

Example::

    report = run_job(spark, lakehouse, ORDERS_DAILY, RunRequest.for_dates([date(2024, 1, 15)]))
    report.exit_code    # 0 when every requested partition is complete
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any, Protocol

from pyspark.sql import SparkSession

from framework.core.config import RunConfig
from framework.core.crashpoints import RENEWAL_POINT, crash_point, crash_points
from framework.core.errors import (
    DriverDiedError,
    FencedError,
    NinelivesError,
    PartitionError,
    TargetMissingError,
    UsageError,
)
from framework.core.failures import describe, is_delta_conflict, root_cause
from framework.engine.chunks import chunked_input, process_chunked
from framework.engine.job import Job
from framework.engine.unit import complete_from_commit, process_unit
from framework.lake.commits import CommitResult, find_commits
from framework.lake.locks import check_commits_arbitrated
from framework.lake.quarantine import quarantine_table
from framework.lake.session import driver_alive, jvm_fatal_error, own_sessions
from framework.lake.tables import Lakehouse, TableRef
from framework.state.leases import LeaseRenewer, is_held, this_host
from framework.state.ledger import COMPLETE, FAILED, RUNNING, Ledger, PartitionState, utcnow

log = logging.getLogger(__name__)


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
    """Units processed at once, each in a thread with a session of its own."""
    unit_bytes: int = 1 << 30
    """A unit's input: at most this many bytes of source files (a bigger date is a unit
    of its own)."""
    unit_partitions: int = 31
    """A unit's input: at most this many partitions."""
    lease_seconds: float = 600.0
    wait_poll_seconds: float = 5.0
    retry_base_seconds: float = 2.0

    @classmethod
    def for_dates(cls, dates: Iterable[dt.date], **options: Any) -> RunRequest:
        return cls(tuple(sorted(set(dates))), **options)

    @classmethod
    def configured(cls, dates: Iterable[dt.date], run: RunConfig, **options: Any) -> RunRequest:
        """A request with the configuration's ``[run]`` settings: ``include_stale`` and
        ``fail_fast`` when either the options or the configuration ask for them; the
        lease and the unit's size from the configuration unless the options give them.
        The CLI and the notebooks build their requests with it, so they run alike."""
        options["include_stale"] = options.get("include_stale") or run.include_stale
        options["fail_fast"] = options.get("fail_fast") or run.fail_fast
        options.setdefault("lease_seconds", run.lease_seconds)
        options["unit_bytes"] = options.get("unit_bytes") or run.unit_bytes
        options["unit_partitions"] = options.get("unit_partitions") or run.max_partitions_per_unit
        return cls.for_dates(dates, **options)


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
    return stale_among(
        states, candidates, lambda partition: job.source.fingerprint(spark, lakehouse, partition)
    )


def stale_among(
    states: dict[dt.date, PartitionState],
    candidates: Iterable[dt.date],
    fingerprint: Callable[[dt.date], str | None],
) -> frozenset[dt.date]:
    """:func:`stale_partitions` with the input's ``fingerprint`` given: a listing of the
    landing files needs no Spark (:mod:`framework.ops.native`)."""
    stale = set()
    for partition in candidates:
        state = states.get(partition)
        if state is None or state.state != COMPLETE or state.fingerprint is None:
            continue
        now = fingerprint(partition)
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
    all_states = ledger.states(job.name, *job.depends_on)
    if job.watermark_start is not None:
        windows = watermark_windows(job, all_states[job.name], request)
        request = dataclasses.replace(request, partitions=windows)
    plan = _plan(spark, lakehouse, job, request, all_states[job.name])
    report = RunReport(job.name, new_run_id(), plan, states=dict(all_states[job.name]))
    if request.dry_run:
        return report
    check_commits_arbitrated(spark, lakehouse)
    for observer in observers:
        observer.run_started(report)
    with (
        own_sessions(spark) as new_session,
        _lease_renewer(new_session(), ledger, report.run_id, request) as renewer,
    ):
        while True:
            held, stop = _claim_and_process(
                spark, ledger, lakehouse, job, request, plan, all_states, report, observers, renewer
            )
            if stop or not held or not request.wait:
                break
            time.sleep(request.wait_poll_seconds)
            all_states = ledger.states(job.name, *job.depends_on)
            plan = _plan(spark, lakehouse, job, request, all_states[job.name])
    if report.results or report.healed:  # a run with nothing to do commits nothing
        _compact(ledger, job.name)
    done = {s.partition for s in [*report.results, *report.healed]}
    report.held = {p: s for p, s in held.items() if p not in done}
    report.finished_at = utcnow()
    for observer in observers:
        observer.run_finished(report)
    return report


def _compact(ledger: Ledger, job: str) -> None:
    """Housekeeping once the run's partitions are recorded: its failure fails no
    partition and no run; it is one warning line, and the next run compacts."""
    try:
        ledger.compact(job)
    except Exception as error:
        if is_delta_conflict(error):
            return  # another writer's commit came first: nothing is wrong
        log.warning("compacting the ledger failed (%s); the next run retries", describe(error))


def _plan(
    spark: SparkSession,
    lakehouse: Lakehouse,
    job: Job,
    request: RunRequest,
    states: dict[dt.date, PartitionState],
) -> Plan:
    return plan_request(
        job, request, states, lambda dates: stale_partitions(spark, lakehouse, job, states, dates)
    )


def plan_request(
    job: Job,
    request: RunRequest,
    states: dict[dt.date, PartitionState],
    stale_of: Callable[[Iterable[dt.date]], frozenset[dt.date]],
) -> Plan:
    """``request``'s plan over the job's ``states``; ``stale_of`` tells the stale dates
    among the requested ones (asked only with ``include_stale``, and not when forced)."""
    wanted = request.include_stale and not request.force
    return plan_partitions(
        request.partitions,
        states,
        force=request.force,
        only_failed=request.only_failed,
        lookback_days=job.lookback_days,
        stale=stale_of(request.partitions) if wanted else frozenset(),
    )


def _lease_renewer(
    session: SparkSession, ledger: Ledger, run_id: str, request: RunRequest
) -> LeaseRenewer:
    """Renews the run's held leases in the background, through ``session``: one of its
    own, which no unit's transaction settings reach."""
    renewal_ledger = Ledger(session, ledger.ref)
    lease = dt.timedelta(seconds=request.lease_seconds)

    def renew(states: Iterable[PartitionState]) -> None:
        crash_point(RENEWAL_POINT)
        expires = utcnow() + lease
        renewal_ledger.record(
            dataclasses.replace(s, lease_expires_at=expires, recorded_at=None) for s in states
        )

    return LeaseRenewer(run_id, request.lease_seconds / 3, renew)


def _claim_and_process(
    spark: SparkSession,
    ledger: Ledger,
    lakehouse: Lakehouse,
    job: Job,
    request: RunRequest,
    plan: Plan,
    all_states: dict[str, dict[dt.date, PartitionState]],
    report: RunReport,
    observers: Sequence[RunObserver],
    renewer: LeaseRenewer,
) -> tuple[dict[dt.date, PartitionState], bool]:
    """One round over the plan's partitions this run has not finished: heal the
    abandoned ones whose commits exist, claim the free ones in units, process the units.
    Returns the partitions another live runner holds and whether ``fail_fast`` stopped."""
    states = all_states[job.name]
    host, pid, now = this_host(), os.getpid(), utcnow()
    done = {s.partition for s in [*report.results, *report.healed]}
    todo = [p for p in plan.to_run if p not in done]
    held = {p: states[p] for p in todo if is_held(states.get(p), now, host)}
    free = [p for p in todo if p not in held]
    if not request.force:
        healed = heal_abandoned(spark, lakehouse, job, [states[p] for p in free if p in states])
        if healed:
            ledger.record(healed)
            report.healed.extend(healed)
            for state in healed:
                _notify(observers, state, None)
            free = [p for p in free if p not in {h.partition for h in healed}]
    expires = now + dt.timedelta(seconds=request.lease_seconds)
    claims = {
        p: (_running(job, p, states.get(p), report.run_id, host, pid, expires), states.get(p))
        for p in free
    }
    units = pack(spark, lakehouse, job, free, request)
    try:
        won_units = ledger.claim([{p: claims[p] for p in unit} for unit in units])
    except Exception as error:
        if not is_delta_conflict(error):
            raise
        # Another runner's claim committed between our read and ours (storage that
        # arbitrates commits): plan again from the ledger as it is now.
        fresh = ledger.states(job.name, *job.depends_on)
        again = _plan(spark, lakehouse, job, request, fresh[job.name])
        return _claim_and_process(
            spark, ledger, lakehouse, job, request, again, fresh, report, observers, renewer
        )
    won = {p: s for unit in won_units for p, s in unit.items()}
    lost = [p for p in free if p not in won]
    if lost:  # claimed by another runner between our read and our claim
        latest = ledger.states(job.name)[job.name]
        held.update({p: latest[p] for p in lost if p in latest})
    renewer.hold(won.values())
    # What the ledger holds now: this run's claims are running, and each partition's
    # final state replaces its claim as it is recorded.
    all_states = {**all_states, job.name: {**states, **won}}
    for state in sorted(won.values(), key=lambda s: s.partition):
        _notify(observers, state, None)
    finals, stop = _process_units(
        spark,
        ledger,
        lakehouse,
        job,
        request,
        [unit for unit in won_units if unit],
        states,
        all_states,
        report,
        observers,
        renewer,
    )
    report.results.extend(finals.values())
    report.results.sort(key=lambda r: r.partition)
    return held, stop


def pack(
    spark: SparkSession,
    lakehouse: Lakehouse,
    job: Job,
    partitions: Sequence[dt.date],
    request: RunRequest,
) -> list[tuple[dt.date, ...]]:
    """Consecutive partitions, in date order, in units of at most
    ``request.unit_partitions`` dates and ``request.unit_bytes`` of input; a partition
    bigger than that is a unit of its own. Sources that cannot tell their size without
    reading pack by the count alone."""
    size = getattr(job.source, "size", None)
    units: list[tuple[dt.date, ...]] = []
    unit: list[dt.date] = []
    total = 0
    for partition in sorted(partitions):
        n = size(spark, lakehouse, partition) if size else 0
        if unit and (len(unit) >= request.unit_partitions or total + n > request.unit_bytes):
            units.append(tuple(unit))
            unit, total = [], 0
        unit.append(partition)
        total += n
    if unit:
        units.append(tuple(unit))
    return units


def _process_units(
    spark: SparkSession,
    ledger: Ledger,
    lakehouse: Lakehouse,
    job: Job,
    request: RunRequest,
    units: list[dict[dt.date, PartitionState]],
    states: dict[dt.date, PartitionState],
    all_states: dict[str, dict[dt.date, PartitionState]],
    report: RunReport,
    observers: Sequence[RunObserver],
    renewer: LeaseRenewer,
) -> tuple[dict[dt.date, PartitionState], bool]:
    """Process the claimed units, ``request.max_parallel`` at a time.

    Returns the final states and whether ``fail_fast`` stopped the run. A MERGE's
    transaction id and commit metadata are session settings, so each worker thread gets
    a session of its own (:func:`~framework.lake.session.own_sessions`).
    """
    sessions = threading.local()

    def work(
        unit: dict[dt.date, PartitionState], new_session: Callable[[], SparkSession]
    ) -> dict[dt.date, PartitionState]:
        if not hasattr(sessions, "spark"):
            sessions.spark = new_session()
        session = sessions.spark
        crash_points("after_claim", unit)
        finals = _work_unit(
            session,
            ledger,
            job,
            lakehouse,
            request,
            unit,
            {p: states.get(p) for p in unit},
            all_states,
            report,
            observers,
            renewer,
        )
        for partition in finals:
            renewer.release(partition)
        return finals

    finals: dict[dt.date, PartitionState] = {}
    stop = False

    def failed(done: dict[dt.date, PartitionState]) -> bool:
        return any(s.state == FAILED for s in done.values())

    if request.max_parallel == 1:  # in order, and fail_fast stops before the next one
        for unit in units:
            done = work(unit, lambda: spark)
            finals.update(done)
            if failed(done) and request.fail_fast:
                return dict(sorted(finals.items())), True
        return dict(sorted(finals.items())), False
    with own_sessions(spark) as new_session, ThreadPoolExecutor(request.max_parallel) as pool:
        pending = [pool.submit(work, unit, new_session) for unit in units]
        for future in as_completed(pending):
            if future.cancelled():
                continue
            done = future.result()
            finals.update(done)
            if failed(done) and request.fail_fast and not stop:
                stop = True
                for other in pending:
                    other.cancel()
    return dict(sorted(finals.items())), stop


MAX_FENCED = 10
"""Times one unit's partitions are claimed again after Delta skipped its commit for a
newer unit's (concurrent runners of other dates); a zombie's claims lose at once."""


class RunObserver(Protocol):
    """Sees a run as it happens: progress bars, logs, metrics, history, alerts."""

    def run_started(self, report: RunReport) -> None: ...

    def transition(self, state: PartitionState, seconds: float | None) -> None:
        """A state was recorded: running (claimed), complete, failed or healed."""

    def run_finished(self, report: RunReport) -> None: ...

    def run_aborted(self, error: BaseException) -> None:
        """The run raised before it finished (told by whoever called :func:`run_job`,
        as ``framework.cli.observe.observe_run`` does)."""


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


def _work_unit(
    spark: SparkSession,
    ledger: Ledger,
    job: Job,
    lakehouse: Lakehouse,
    request: RunRequest,
    running: dict[dt.date, PartitionState],
    previous: dict[dt.date, PartitionState | None],
    all_states: dict[str, dict[dt.date, PartitionState]],
    report: RunReport,
    observers: Sequence[RunObserver],
    renewer: LeaseRenewer,
) -> dict[dt.date, PartitionState]:
    """Attempts at one claimed unit until each of its partitions completes, fails for
    good, or is lost to a newer attempt.

    Every attempt's outcome is recorded in one ledger commit, failures included; the
    next attempt is claimed with the same compare-and-swap as the first, so no other
    runner can slip in between, and each retry has its own, higher attempt number and
    unit number.
    """
    started = time.monotonic()

    def progress(state: PartitionState, durable: bool) -> PartitionState:
        """A partition in chunks records its manifest, and hands its progress to the
        lease renewer, which records it with the next renewal."""
        if durable:
            [state] = ledger.record(state)
        renewer.hold([state])
        return state

    queue = [(running, previous, 0)]
    finals: dict[dt.date, PartitionState] = {}
    fenced = 0
    while queue:
        running, previous, tries = queue.pop(0)
        outcome, retry, hit = _attempt(
            spark, lakehouse, job, running, previous, all_states, request.unit_bytes, progress
        )
        recorded = {s.partition: s for s in ledger.record(outcome.values())}
        all_states.setdefault(job.name, {}).update(recorded)
        for partition, state in sorted(recorded.items()):
            report.seconds[partition] = time.monotonic() - started
            _notify(observers, state, report.seconds[partition])
        groups: list[tuple[dt.date, ...]] = []
        above = 0
        if isinstance(retry, FencedError) and fenced < MAX_FENCED:
            fenced += 1
            groups, above = [hit], retry.newest_unit
        elif retry is not None and is_transient(retry) and tries + 1 < job.max_attempts:
            delay = request.retry_base_seconds * 2**tries
            time.sleep(min(60.0, delay + random.uniform(0, delay)))
            groups, tries = [hit], tries + 1
        elif retry is not None and len(hit) > 1 and not isinstance(retry, NinelivesError):
            groups, tries = [hit[: len(hit) // 2], hit[len(hit) // 2 :]], 0
        finals.update({p: s for p, s in recorded.items() if p not in hit or not groups})
        if not groups:
            continue
        lease = dt.timedelta(seconds=request.lease_seconds)
        claims = [
            {
                p: (
                    _running(
                        job,
                        p,
                        recorded[p],
                        recorded[p].run_id,
                        recorded[p].host or "",
                        recorded[p].pid or 0,
                        utcnow() + lease,
                    ),
                    recorded[p],
                )
                for p in group
            }
            for group in groups
        ]
        for group, won in zip(groups, ledger.claim(claims, above=above), strict=True):
            finals.update({p: recorded[p] for p in group if p not in won})  # a newer attempt's
            if won:
                renewer.hold(won.values())
                for state in won.values():
                    _notify(observers, state, None)
                queue.append((won, {p: recorded[p] for p in won}, tries))
    return dict(sorted(finals.items()))


def is_transient(error: BaseException) -> bool:
    """Worth retrying: Delta write conflicts and I/O trouble; never our own errors."""
    if isinstance(error, NinelivesError):
        return False  # schema, validation, accounting, fencing, missing source: permanent
    condition = root_cause(error).condition or ""
    if condition == "FAILED_READ_FILE.FILE_NOT_EXIST":
        return True  # the files were replaced or removed after the listing: list again
    if condition.startswith("FAILED_READ_FILE"):
        return False  # a corrupt or truncated input file reads the same way every time
    if is_delta_conflict(error) or isinstance(error, (OSError, TimeoutError, ConnectionError)):
        return True
    if _lost_connection(error):
        return True
    text = str(error)
    return "java.io.IOException" in text or "java.net." in text


# gRPC statuses of a Spark Connect call that the network or a busy server failed; a
# server-side error (an AnalysisException, a Delta conflict) carries its own condition.
_UNREACHABLE = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED"})


def _lost_connection(error: BaseException) -> bool:
    """A call that never reached the driver or lost it: py4j's network error (classic),
    or a Spark Connect call whose gRPC status is :data:`_UNREACHABLE`. Told by class
    name and status, so that neither py4j (absent on a Connect client) nor grpc (absent
    on a classic one) is imported."""
    names = {cls.__name__ for cls in type(error).__mro__}
    if "Py4JNetworkError" in names:
        return True
    status = None
    if "SparkConnectGrpcException" in names:
        status = error.getGrpcStatusCode()  # type: ignore[attr-defined]
    elif "RpcError" in names and callable(getattr(error, "code", None)):
        status = error.code()  # type: ignore[attr-defined]
    return getattr(status, "name", None) in _UNREACHABLE


def _attempt(
    spark: SparkSession,
    lakehouse: Lakehouse,
    job: Job,
    running: dict[dt.date, PartitionState],
    previous: dict[dt.date, PartitionState | None],
    all_states: dict[str, dict[dt.date, PartitionState]],
    unit_bytes: int,
    progress: Callable[[PartitionState, bool], PartitionState],
) -> tuple[dict[dt.date, PartitionState], Exception | None, tuple[dt.date, ...]]:
    """One attempt at a unit; never raises: every partition's outcome (complete or
    failed), and when the unit failed as a whole, the error and the partitions it
    failed (all but those whose upstream check failed first). A unit of one partition
    bigger than a unit's size (or with a manifest to resume) goes in chunks, and
    ``progress`` records its states on the way."""
    outcome: dict[dt.date, PartitionState] = {}
    go: dict[dt.date, PartitionState] = {}
    for partition, state in sorted(running.items()):
        try:
            _check_upstream(job, partition, all_states)
            go[partition] = state
        except PartitionError as error:
            outcome[partition] = _failed(state, error)
    if not go:
        return outcome, None, ()
    latest = dict(go)  # a failed attempt in chunks keeps its manifest for the next one

    def recorded(state: PartitionState) -> PartitionState:
        latest[state.partition] = progress(state, True)
        return latest[state.partition]

    def held(state: PartitionState) -> None:
        latest[state.partition] = progress(state, False)

    try:
        _check_target(spark, lakehouse, job, min(go), all_states.get(job.name, {}))
        first = min(go)
        files = (
            chunked_input(spark, lakehouse, job, first, previous.get(first), unit_bytes)
            if len(go) == 1
            else None
        )
        results: dict[dt.date, PartitionState | Exception]
        if files is not None:
            results = {
                first: process_chunked(
                    spark,
                    lakehouse,
                    job,
                    go[first],
                    previous.get(first),
                    files,
                    unit_bytes,
                    recorded,
                    held,
                )
            }
        else:
            results = process_unit(spark, lakehouse, job, go, previous)
    except Exception as error:  # every failure is recorded, then the run goes on
        failed = {p: _failed(latest[p], error) for p in go}
        if not driver_alive(spark):
            raise _driver_died(job, list(failed.values())) from error
        return dict(sorted({**outcome, **failed}.items())), error, tuple(failed)
    for partition, result in results.items():
        outcome[partition] = (
            result if isinstance(result, PartitionState) else _failed(latest[partition], result)
        )
    return dict(sorted(outcome.items())), None, ()


def _failed(running: PartitionState, error: BaseException) -> PartitionState:
    return running.advance(
        FAILED,
        error_class=_error_class(error),
        error_message=_error_message(error),
        finished_at=utcnow(),
    )


def _driver_died(job: Job, failed: list[PartitionState]) -> DriverDiedError:
    """The failure as the JVM's last words tell it, for a new process to record."""
    fatal = jvm_fatal_error(wait=2.0)  # the JVM may still be writing its last words
    if fatal:
        kind, _, detail = fatal.removeprefix("java.lang.").partition(":")
        cause = f"{kind}: {detail.strip()}" if detail.strip() else kind
    else:
        kind, cause = "DriverDied", "its JVM exited (killed by the system, or out of memory)"
    message = f"Spark's driver died during the attempt: {cause}"
    states = [dataclasses.replace(s, error_class=kind, error_message=message) for s in failed]
    where = ", ".join(str(s.partition) for s in failed)
    return DriverDiedError(f"job {job.name}, partition {where}: {message}", states)


def heal_abandoned(
    spark: SparkSession, lakehouse: Lakehouse, job: Job, states: Iterable[PartitionState]
) -> list[PartitionState]:
    """``complete`` states for abandoned attempts whose writes all reached Delta.

    An attempt is abandoned when its ``running`` lease is no longer held (its owner died
    or the lease expired). If the target has the commit of the attempt's unit covering
    the partition, and the quarantine too when the partition had rejects to write, the
    partition is complete: its counts come from the commit's metadata, nothing is
    recomputed. Otherwise the partition is simply processed again. Each table's log is
    read once, however many partitions and units there are.
    """
    now, host = utcnow(), this_host()
    abandoned = [s for s in states if s.state == RUNNING and not is_held(s, now, host)]
    if not abandoned:
        return []
    target = _unit_commits(spark, lakehouse.table(job.sink.table), job.name)
    quarantine: dict[tuple[str, int], CommitResult] | None = None
    healed = []
    for state in abandoned:
        commit = target.get((state.run_id, state.unit or 0))
        complete = complete_from_commit(state, commit) if commit else None
        if commit is None or complete is None:
            continue
        if (commit.partition(state.partition) or {}).get("quarantine"):
            if quarantine is None:
                quarantine = _unit_commits(spark, quarantine_table(lakehouse, job.name), job.name)
            rejects = quarantine.get((state.run_id, state.unit or 0))
            if rejects is None or rejects.partition(state.partition) is None:
                continue
        healed.append(complete)
    return healed


def _unit_commits(
    spark: SparkSession, ref: TableRef, job: str
) -> dict[tuple[str, int], CommitResult]:
    """The job's commits in ``ref`` by (run_id, unit)."""
    return {
        (str(c.metadata["run_id"]), int(c.metadata["unit"])): c
        for c in find_commits(spark, ref, job)
        if "chunk" not in c.metadata  # a partition in chunks resumes instead
    }


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
