"""Plan, then process: the run of one job over a set of date partitions.

A run reads the ledger once, plans ``requested - complete`` (everything requested with
``force``), and processes each planned partition::

    running -> read source -> split malformed -> transform -> key + row hash
            -> reject rows outside the partition -> dedupe by key
            -> target commit (tagged) -> quarantine commit (tagged) -> complete

Any error marks the partition ``failed`` with its error class and message; the other
partitions go on unless ``fail_fast``. A rerun when everything is complete reads only
the ledger: no Spark job touches source or target data.

Example::

    report = run_job(spark, lakehouse, ORDERS_DAILY, RunRequest.for_dates([date(2024, 1, 15)]))
    report.exit_code    # 0 when every requested partition is complete
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from framework.crashpoints import crash_point
from framework.errors import (
    AccountingError,
    PartitionError,
    SchemaMismatchError,
    SourceMissingError,
    delta_conflicts,
)
from framework.job import Job
from framework.keys import KEY_COLUMN, ROW_HASH_COLUMN, with_key, with_row_hash
from framework.leases import LeaseRenewer, is_held, this_host
from framework.ledger import COMPLETE, FAILED, RUNNING, Ledger, PartitionState, utcnow
from framework.quarantine import as_quarantine_rows, quarantine_table, write_quarantine
from framework.sinks import PROCESSED_AT_COLUMN, RUN_ID_COLUMN, CommitTag, find_commit, row_counts
from framework.sources import CORRUPT_COLUMN
from framework.tables import Lakehouse

REJECT_COLUMN = "_reject_reason"
RANK_COLUMN = "_rank"
MALFORMED_REASON = "malformed record: not valid JSON, or a value of the wrong type"


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
    lease_seconds: float = 600.0
    wait_poll_seconds: float = 5.0

    @classmethod
    def for_dates(cls, dates: Iterable[dt.date], **options: Any) -> RunRequest:
        return cls(tuple(sorted(set(dates))), **options)


@dataclass(frozen=True)
class Plan:
    """``to_run`` = requested - complete (all of requested when forced)."""

    requested: frozenset[dt.date]
    complete: frozenset[dt.date]
    force: bool

    @property
    def to_run(self) -> tuple[dt.date, ...]:
        todo = self.requested if self.force else self.requested - self.complete
        return tuple(sorted(todo))

    @property
    def skipped(self) -> tuple[dt.date, ...]:
        return tuple(sorted(self.requested - set(self.to_run)))


def plan_partitions(
    requested: Iterable[dt.date], states: dict[dt.date, PartitionState], *, force: bool = False
) -> Plan:
    complete = frozenset(p for p, s in states.items() if s.state == COMPLETE)
    return Plan(frozenset(requested), complete, force)


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


@dataclass(frozen=True)
class _Counts:
    read: int
    rejected: int
    duplicate: int

    @property
    def accepted(self) -> int:
        return self.read - self.rejected - self.duplicate


def _stage(job: Job, out: DataFrame, partition: dt.date) -> DataFrame:
    """Key, hash, flag rows outside the partition, and rank duplicates by key."""
    missing = [c for c in (*job.key, job.partition_column, *job.order_by) if c not in out.columns]
    if missing:
        raise SchemaMismatchError(
            f"job {job.name}, partition {partition}: transform output lacks column(s) "
            f"{', '.join(missing)}; it has: {', '.join(out.columns)}"
        )
    pc = F.col(job.partition_column)
    reason = F.when(pc.isNull(), F.lit(f"{job.partition_column} is null")).when(
        pc != F.lit(partition),
        F.concat(
            F.lit(f"{job.partition_column} "),
            pc.cast("string"),
            F.lit(f" is outside partition {partition}"),
        ),
    )
    latest_first = [F.col(c).desc_nulls_last() for c in job.order_by]
    window = Window.partitionBy(KEY_COLUMN, REJECT_COLUMN).orderBy(
        *latest_first, F.col(ROW_HASH_COLUMN).desc()
    )
    return (
        out.transform(with_key(job.key))
        .transform(with_row_hash())
        .withColumn(REJECT_COLUMN, reason)
        .withColumn(RANK_COLUMN, F.row_number().over(window))
    )


def _count(staged: DataFrame, malformed: DataFrame | None) -> _Counts:
    row = staged.agg(
        F.count(F.lit(1)).alias("rows"),
        F.count(REJECT_COLUMN).alias("rejected"),
        F.sum(
            F.when(F.col(REJECT_COLUMN).isNull() & (F.col(RANK_COLUMN) > 1), 1).otherwise(0)
        ).alias("duplicate"),
    ).first()
    assert row is not None
    n_malformed = malformed.count() if malformed is not None else 0
    return _Counts(
        read=row["rows"] + n_malformed,
        rejected=row["rejected"] + n_malformed,
        duplicate=row["duplicate"] or 0,
    )


def process_partition(
    spark: SparkSession,
    lakehouse: Lakehouse,
    job: Job,
    running: PartitionState,
    previous: PartitionState | None,
) -> PartitionState:
    """Do one attempt at one partition; return its ``complete`` state. Raises on failure."""
    partition = running.partition
    raw = job.source.read(spark, lakehouse, partition)
    cached: list[DataFrame] = []
    try:
        malformed = None
        if CORRUPT_COLUMN in raw.columns:
            # Spark refuses queries on raw JSON that touch only the corrupt-record
            # column, and both halves are used twice: cache the parsed input once.
            raw = raw.persist(StorageLevel.MEMORY_AND_DISK)
            cached.append(raw)
            malformed = raw.where(F.col(CORRUPT_COLUMN).isNotNull())
            raw = raw.where(F.col(CORRUPT_COLUMN).isNull()).drop(CORRUPT_COLUMN)
        staged = _stage(job, job.transform(raw), partition).persist(StorageLevel.MEMORY_AND_DISK)
        cached.append(staged)
        counts = _count(staged, malformed)
        crash_point("after_read", partition)
        if counts.read == 0 and not job.allow_empty:
            raise SourceMissingError(
                f"source has no rows for {partition} in {job.source.describe(lakehouse)}; "
                "declare allow_empty=True on the job if empty partitions are expected"
            )
        # Rewrite the quarantine when there are rejects, or to clear an earlier attempt's.
        write_rejects = counts.rejected > 0 or (
            previous is not None and previous.rows_rejected != 0
        )
        tag = CommitTag(
            job.name,
            partition,
            running.run_id,
            running.attempt,
            counts={
                "rows_read": counts.read,
                "rows_rejected": counts.rejected,
                "rows_duplicate": counts.duplicate,
                "quarantine": int(write_rejects),
            },
        )

        accepted = (
            staged.where(F.col(REJECT_COLUMN).isNull() & (F.col(RANK_COLUMN) == 1))
            .drop(REJECT_COLUMN, RANK_COLUMN)
            .withColumn(RUN_ID_COLUMN, F.lit(tag.run_id))
            .withColumn(PROCESSED_AT_COLUMN, F.current_timestamp())
        )
        target = lakehouse.table(job.sink.table)
        commit = job.sink.write(spark, target, accepted, job.partition_column, tag)
        crash_point("after_target_commit", partition)

        written, inserted, updated, deleted = row_counts(commit, counts.accepted)
        if written != counts.accepted:
            raise AccountingError(
                f"job {job.name}, partition {partition}: {counts.read} rows read, "
                f"{counts.rejected} rejected, {counts.duplicate} duplicates, so "
                f"{counts.accepted} expected in the target, but the commit wrote {written}"
            )

        if write_rejects:
            payload_columns = [
                c
                for c in staged.columns
                if c not in (REJECT_COLUMN, RANK_COLUMN) and not c.startswith("_")
            ]
            rejects = as_quarantine_rows(
                staged.where(F.col(REJECT_COLUMN).isNotNull()),
                F.to_json(F.struct(*payload_columns)),
                F.col(REJECT_COLUMN),
                tag,
            )
            if malformed is not None:
                rejects = rejects.unionByName(
                    as_quarantine_rows(
                        malformed, F.col(CORRUPT_COLUMN), F.lit(MALFORMED_REASON), tag
                    )
                )
            write_quarantine(spark, quarantine_table(lakehouse, job.name), rejects, tag)
            crash_point("after_rejects_commit", partition)

        crash_point("before_complete", partition)
        return running.advance(
            COMPLETE,
            rows_read=counts.read,
            rows_written=written,
            rows_inserted=inserted,
            rows_updated=updated,
            rows_deleted=deleted,
            rows_unchanged=written - inserted - updated,
            rows_duplicate=counts.duplicate,
            rows_rejected=counts.rejected,
            target_version=commit.version,
            finished_at=utcnow(),
        )
    finally:
        for df in cached:
            df.unpersist()


def _error_class(error: BaseException) -> str:
    spark_class = getattr(error, "getCondition", None) or getattr(error, "getErrorClass", None)
    if callable(spark_class):
        try:
            condition = spark_class()
        except Exception:
            condition = None
        if condition:
            return f"{type(error).__name__}:{condition}"
    return type(error).__name__


def _error_message(error: BaseException) -> str:
    text = str(error).strip() or repr(error)
    # Spark errors carry a JVM stack trace; the first lines say what happened.
    return "\n".join(text.splitlines()[:5])


def run_job(
    spark: SparkSession,
    lakehouse: Lakehouse,
    job: Job,
    request: RunRequest,
    *,
    on_result: Callable[[PartitionState, float], None] | None = None,
) -> RunReport:
    """Plan, heal, claim and process ``request`` for ``job``.

    Every transition is one ledger commit. Partitions held by another live runner are
    left alone and reported in ``RunReport.held`` (exit code 3), or waited for with
    ``request.wait``.
    """
    ledger = Ledger(spark, lakehouse.framework_table("ledger"))
    host, pid = this_host(), os.getpid()
    report: RunReport | None = None
    renewal_ledger = Ledger(spark.newSession(), ledger.ref)
    lease = dt.timedelta(seconds=request.lease_seconds)

    def renew(states: Iterable[PartitionState]) -> None:
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
            plan = plan_partitions(request.partitions, states, force=request.force)
            if report is None:
                report = RunReport(job.name, run_id, plan, states=dict(states))
            if request.dry_run:
                return report
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
            stop = False
            for partition in sorted(won):
                crash_point("after_claim", partition)
                final = _attempt(
                    spark, lakehouse, job, won[partition], states.get(partition), all_states, report
                )
                ledger.record(final)
                renewer.release(partition)
                processed.add(partition)
                report.results.append(final)
                if on_result is not None:
                    on_result(final, report.seconds[partition])
                if final.state == FAILED and request.fail_fast:
                    stop = True
                    break
            if stop or not held or not request.wait:
                report.held = {p: s for p, s in held.items() if p not in processed}
                return report
            time.sleep(request.wait_poll_seconds)


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


def _attempt(
    spark: SparkSession,
    lakehouse: Lakehouse,
    job: Job,
    running: PartitionState,
    previous: PartitionState | None,
    all_states: dict[str, dict[dt.date, PartitionState]],
    report: RunReport,
) -> PartitionState:
    """One attempt; never raises: a failure becomes the ``failed`` state."""
    started = time.monotonic()
    try:
        _check_upstream(job, running.partition, all_states)
        final = process_partition(spark, lakehouse, job, running, previous)
    except Exception as error:  # every failure is recorded, then the run goes on
        final = running.advance(
            FAILED,
            error_class=_error_class(error),
            error_message=_error_message(error),
            finished_at=utcnow(),
        )
    report.seconds[running.partition] = time.monotonic() - started
    return final


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
    accepted = meta["rows_read"] - meta["rows_rejected"] - meta["rows_duplicate"]
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
        target_version=commit.version,
        error_class=None,
        error_message=None,
        finished_at=utcnow(),
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
