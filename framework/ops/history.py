"""Run history: one row per run of a job, in ``<framework schema>.run_history``.

The ledger says where each partition stands; the history says what each run did: who
ran what, when, for how long, with which outcome, and how many partitions and rows it
moved. One row is appended when a run finishes, in one blind-append commit, so writers
never conflict (on a local lakehouse the commit holds the table's write lock).

Outcomes:

- ``succeeded``: every requested partition is complete and this run did work;
- ``nothing_to_do``: every requested partition was already complete;
- ``failed``: a partition failed, or the run stopped before the others (``--fail-fast``);
- ``held``: nothing failed, but another live runner holds some of the partitions;
- ``aborted``: the run raised before it finished (recorded by the CLI, best effort).

Rows in and out count the partitions that became complete during the run, healed ones
included: a healed partition's rows were read and written by a runner that died before
it could record them.

Example::

    history = RunHistory(spark, lakehouse.framework_table("run_history"))
    history.append(RunRecord.from_report(report, arguments="run orders_daily --date 2024-01-15"))
    history.recent("orders_daily", limit=5)
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass

from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from framework.core.failures import describe
from framework.engine.runner import RunReport
from framework.lake.locks import write_lock
from framework.lake.tables import Lakehouse, TableRef
from framework.state.ledger import COMPLETE, PartitionState, utcnow

SUCCEEDED, FAILED_RUN, HELD, NOTHING_TO_DO, ABORTED = (
    "succeeded",
    "failed",
    "held",
    "nothing_to_do",
    "aborted",
)
TABLE_NAME = "run_history"

HISTORY_SCHEMA = StructType(
    [
        StructField("run_id", StringType(), False),
        StructField("job", StringType(), False),
        StructField("arguments", StringType(), True),
        StructField("host", StringType(), True),
        StructField("pid", IntegerType(), True),
        StructField("started_at", TimestampType(), False),
        StructField("finished_at", TimestampType(), False),
        StructField("outcome", StringType(), False),
        StructField("exit_code", IntegerType(), True),
        StructField("partitions_requested", IntegerType(), False),
        StructField("partitions_planned", IntegerType(), False),
        StructField("partitions_complete", IntegerType(), False),
        StructField("partitions_failed", IntegerType(), False),
        StructField("partitions_healed", IntegerType(), False),
        StructField("partitions_held", IntegerType(), False),
        StructField("partitions_skipped", IntegerType(), False),
        StructField("rows_in", LongType(), False),
        StructField("rows_out", LongType(), False),
        StructField("rows_quarantined", LongType(), False),
        StructField("duration_s", DoubleType(), False),
        StructField("error", StringType(), True),
    ]
)


def run_outcome(report: RunReport) -> str:
    """``succeeded``, ``failed``, ``held`` or ``nothing_to_do`` for a finished run."""
    if report.failed:
        return FAILED_RUN
    if report.held:
        return HELD
    if report.incomplete:
        return FAILED_RUN
    if not report.results and not report.healed:
        return NOTHING_TO_DO
    return SUCCEEDED


def completed_in_run(report: RunReport) -> list[PartitionState]:
    """Partitions that became complete during the run: processed or healed."""
    return [s for s in [*report.healed, *report.results] if s.state == COMPLETE]


def _sum(states: list[PartitionState], name: str) -> int:
    return sum(getattr(s, name) or 0 for s in states)


@dataclass(frozen=True)
class RunRecord:
    """One row of the run history."""

    run_id: str
    job: str
    arguments: str
    host: str | None
    pid: int | None
    started_at: dt.datetime
    finished_at: dt.datetime
    outcome: str
    exit_code: int | None
    partitions_requested: int
    partitions_planned: int
    partitions_complete: int
    partitions_failed: int
    partitions_healed: int
    partitions_held: int
    partitions_skipped: int
    rows_in: int
    rows_out: int
    rows_quarantined: int
    duration_s: float
    error: str | None = None

    def partition_counts(self) -> dict[str, int]:
        """Partitions per outcome of this run: planned, complete, failed, healed, ..."""
        return {
            "planned": self.partitions_planned,
            "complete": self.partitions_complete,
            "failed": self.partitions_failed,
            "healed": self.partitions_healed,
            "held": self.partitions_held,
            "skipped": self.partitions_skipped,
        }

    @classmethod
    def from_report(
        cls,
        report: RunReport,
        *,
        arguments: str = "",
        host: str | None = None,
        pid: int | None = None,
        outcome: str | None = None,
        error: str | None = None,
    ) -> RunRecord:
        """The history row of ``report``; ``outcome`` defaults to :func:`run_outcome`."""
        finished = report.finished_at or utcnow()
        done = completed_in_run(report)
        processed_complete = [s for s in report.results if s.state == COMPLETE]
        return cls(
            run_id=report.run_id,
            job=report.job,
            arguments=arguments,
            host=host,
            pid=pid,
            started_at=report.started_at,
            finished_at=finished,
            outcome=outcome or run_outcome(report),
            exit_code=None if outcome == ABORTED else report.exit_code,
            partitions_requested=len(report.plan.requested),
            partitions_planned=len(report.plan.to_run),
            partitions_complete=len(processed_complete),
            partitions_failed=len(report.failed),
            partitions_healed=len(report.healed),
            partitions_held=len(report.held),
            partitions_skipped=len(report.plan.skipped),
            rows_in=_sum(done, "rows_read"),
            rows_out=_sum(done, "rows_written"),
            rows_quarantined=_sum(done, "rows_rejected"),
            duration_s=max(0.0, (finished - report.started_at).total_seconds()),
            error=error,
        )

    def as_json(self) -> dict[str, object]:
        values: dict[str, object] = dataclasses.asdict(self)
        for name in ("started_at", "finished_at"):
            stamp = getattr(self, name).astimezone(dt.timezone.utc)
            values[name] = stamp.isoformat(timespec="seconds").replace("+00:00", "Z")
        return values


class RunHistory:
    """Appends and reads run records: an append is one blind-append commit, a read one
    query."""

    def __init__(self, spark: SparkSession, ref: TableRef) -> None:
        self.spark = spark
        self.ref = ref

    @classmethod
    def of(cls, spark: SparkSession, lakehouse: Lakehouse) -> RunHistory:
        return cls(spark, lakehouse.framework_table(TABLE_NAME))

    def append(self, record: RunRecord) -> None:
        """Append ``record`` in one commit (creating the table on first use)."""
        row = tuple(getattr(record, name) for name in HISTORY_SCHEMA.fieldNames())
        df = self.spark.createDataFrame([row], HISTORY_SCHEMA)
        with write_lock(self.ref):
            self.ref.save(self.spark, df.write.format("delta").mode("append"), HISTORY_SCHEMA)

    def recent(self, job: str, limit: int = 20) -> list[RunRecord]:
        """The newest ``limit`` runs of ``job``, newest first."""
        if not self.ref.exists(self.spark):
            return []
        rows = (
            self.ref.read(self.spark)
            .where(F.col("job") == F.lit(job))
            .orderBy(F.col("started_at").desc(), F.col("run_id").desc())
            .limit(limit)
            .collect()
        )
        return [RunRecord(**row.asDict()) for row in rows]


class HistoryObserver:
    """A :class:`~framework.engine.runner.RunObserver` that appends the run's row when it ends.

    :param arguments: the command line that started the run, without secrets.
    """

    def __init__(
        self,
        history: RunHistory,
        *,
        arguments: str = "",
        host: str | None = None,
        pid: int | None = None,
    ) -> None:
        self.history = history
        self.arguments = arguments
        self.host = host
        self.pid = pid
        self.report: RunReport | None = None
        self.record: RunRecord | None = None

    def run_started(self, report: RunReport) -> None:
        self.report = report

    def transition(self, state: PartitionState, seconds: float | None) -> None:
        return None

    def run_finished(self, report: RunReport) -> None:
        self._append(self._record(report))

    def run_aborted(self, error: BaseException) -> None:
        """The run raised: record what it did so far, if it got as far as planning."""
        if self.report is None or self.record is not None:
            return
        self._append(self._record(self.report, outcome=ABORTED, error=describe(error)))

    def _record(
        self, report: RunReport, outcome: str | None = None, error: str | None = None
    ) -> RunRecord:
        return RunRecord.from_report(
            report,
            arguments=self.arguments,
            host=self.host,
            pid=self.pid,
            outcome=outcome,
            error=error,
        )

    def _append(self, record: RunRecord) -> None:
        self.record = record
        self.history.append(record)
