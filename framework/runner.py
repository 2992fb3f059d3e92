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

import datetime as dt
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from framework.crashpoints import crash_point
from framework.errors import (
    AccountingError,
    PartitionError,
    SchemaMismatchError,
    SourceMissingError,
)
from framework.job import Job
from framework.keys import KEY_COLUMN, ROW_HASH_COLUMN, with_key, with_row_hash
from framework.ledger import COMPLETE, FAILED, RUNNING, Ledger, PartitionState, utcnow
from framework.quarantine import as_quarantine_rows, quarantine_table, write_quarantine
from framework.sinks import PROCESSED_AT_COLUMN, RUN_ID_COLUMN, CommitResult, CommitTag
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

    @classmethod
    def for_dates(cls, dates: Iterable[dt.date], **options: bool) -> RunRequest:
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

    @property
    def failed(self) -> list[PartitionState]:
        return [r for r in self.results if r.state == FAILED]

    @property
    def final_states(self) -> dict[dt.date, PartitionState]:
        return {**self.states, **{r.partition: r for r in self.results}}

    @property
    def incomplete(self) -> list[dt.date]:
        """Requested partitions that are not complete after this run."""
        final = self.final_states
        return sorted(
            p for p in self.plan.requested if p not in final or final[p].state != COMPLETE
        )

    @property
    def exit_code(self) -> int:
        """0 when every requested partition is complete now, else 1."""
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
    tag = CommitTag(job.name, partition, running.run_id, running.attempt)
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

        accepted = (
            staged.where(F.col(REJECT_COLUMN).isNull() & (F.col(RANK_COLUMN) == 1))
            .drop(REJECT_COLUMN, RANK_COLUMN)
            .withColumn(RUN_ID_COLUMN, F.lit(tag.run_id))
            .withColumn(PROCESSED_AT_COLUMN, F.current_timestamp())
        )
        target = lakehouse.table(job.sink.table)
        commit = job.sink.write(spark, target, accepted, job.partition_column, tag)
        crash_point("after_target_commit", partition)

        written, inserted, updated, deleted = _row_counts(commit, counts.accepted)
        if written != counts.accepted:
            raise AccountingError(
                f"job {job.name}, partition {partition}: {counts.read} rows read, "
                f"{counts.rejected} rejected, {counts.duplicate} duplicates, so "
                f"{counts.accepted} expected in the target, but the commit wrote {written}"
            )

        if counts.rejected or (previous is not None and previous.rows_rejected != 0):
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


def _row_counts(commit: CommitResult, accepted: int) -> tuple[int, int, int, int]:
    """(written, inserted, updated, deleted) from a target commit's operation metrics."""
    if commit.operation == "MERGE":
        written = commit.metric("numSourceRows")
        inserted = commit.metric("numTargetRowsInserted")
        return (
            written,
            inserted,
            commit.metric("numTargetRowsUpdated"),
            commit.metric("numTargetRowsDeleted"),
        )
    if commit.metric("numFiles") == 0 and commit.metric("numOutputRows") == 0:
        # write_marker after a MERGE that changed nothing: every accepted row is unchanged.
        return accepted, 0, 0, 0
    written = commit.metric("numOutputRows")
    return written, written, 0, 0


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
    """Plan and process ``request`` for ``job``. The ledger records every transition."""
    ledger = Ledger(spark, lakehouse.framework_table("ledger"))
    all_states = ledger.states(job.name, *job.depends_on)
    states = all_states[job.name]
    plan = plan_partitions(request.partitions, states, force=request.force)
    report = RunReport(job.name, new_run_id(), plan, states=states)
    if request.dry_run:
        return report

    host, pid = socket.gethostname(), os.getpid()
    for partition in plan.to_run:
        started = time.monotonic()
        previous = states.get(partition)
        running = PartitionState(
            job=job.name,
            partition=partition,
            attempt=(previous.attempt if previous else 0) + 1,
            state=RUNNING,
            run_id=report.run_id,
            host=host,
            pid=pid,
            started_at=utcnow(),
        )
        ledger.record(running)
        crash_point("after_claim", partition)
        try:
            _check_upstream(job, partition, all_states)
            final = process_partition(spark, lakehouse, job, running, previous)
        except Exception as error:  # every failure is recorded, then the run goes on
            final = running.advance(
                FAILED,
                error_class=_error_class(error),
                error_message=_error_message(error),
                finished_at=utcnow(),
            )
        ledger.record(final)
        report.results.append(final)
        report.seconds[partition] = time.monotonic() - started
        if on_result is not None:
            on_result(final, report.seconds[partition])
        if final.state == FAILED and request.fail_fast:
            break
    return report


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
