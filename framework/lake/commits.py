"""The commit-tag layer: how a work unit's Delta commit is tagged, found again and fenced.

Every commit a unit makes (target, quarantine, a chunk) carries

* ``txnAppId`` = ``ninelives:<job>`` and ``txnVersion`` = the unit's sequence number,
  which the ledger's claim allocates and which only grows per job: Delta ignores a
  commit whose version is not above the last one recorded, so a zombie runner cannot
  overwrite a newer unit's result (:class:`~framework.core.errors.FencedError`), and
* ``userMetadata`` = ``{"job", "run_id", "unit", "partitions": {date: {"attempt", counts}}}``,
  so the commit can be found in the table's history after a crash, and every partition
  of it marked complete from its counts, without recomputing anything.

:func:`tagged_save` saves any ``DataFrameWriter`` with the tag, under the table's write
lock, and returns the commit it made; :func:`tagged_commit` tags the commits of an
operation that has no writer options (a MERGE); :func:`find_commits` reads them back
from the table's history. The write strategies are in :mod:`framework.lake.sinks`.

Example::

    tag = CommitTag("orders_daily", run_id="r1", unit=7, attempts={date(2024, 1, 15): 3})
    commit = tagged_save(spark, ref, df.write.mode("append"), df.schema, "order_date", tag)
    find_commit(spark, ref, tag) == commit
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import DataFrame, DataFrameWriter, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from framework.core.errors import AccountingError, FencedError
from framework.core.names import checked_identifier
from framework.lake.locks import needs_lock, write_lock
from framework.lake.tables import TableRef

TXN_APP_ID_CONF = "spark.databricks.delta.write.txnAppId"
TXN_VERSION_CONF = "spark.databricks.delta.write.txnVersion"
USER_METADATA_CONF = "spark.databricks.delta.commitInfo.userMetadata"

# How far back in a table's history a commit is looked for. Concurrent writers of the
# same table add commits between ours and the lookup; 200 is far more than any run has.
HISTORY_LOOKBACK = 200


CHUNK_SLOTS = 1 << 20
"""Transaction versions per unit number: chunk ``i`` of a partition processed in chunks
commits as ``unit * CHUNK_SLOTS + i`` (every other unit as ``unit * CHUNK_SLOTS``), so each
of its commits has a version of its own, all below the next unit's."""


@dataclass(frozen=True)
class CommitTag:
    """Identity of one work unit, written into each of its Delta commits."""

    job: str
    run_id: str
    unit: int
    """The unit's sequence number (``txnVersion``): allocated by the claim, only grows."""
    attempts: Mapping[dt.date, int]
    """Every partition of the unit, with the attempt at it."""
    counts: Mapping[dt.date, Mapping[str, int | str | None]] = field(default_factory=dict)
    """Per partition, what is known before the write (read, rejected, duplicates): with
    the commit's own counts they let a crashed unit be marked complete without
    recomputing it."""
    chunk: int | None = None
    """The chunk of a partition processed in chunks (:mod:`framework.engine.chunks`)."""

    @classmethod
    def single(
        cls, job: str, partition: dt.date, run_id: str, unit: int, attempt: int | None = None
    ) -> CommitTag:
        """The tag of a unit of one partition (attempt: the unit number by default)."""
        return cls(job, run_id, unit, {partition: unit if attempt is None else attempt})

    @property
    def partitions(self) -> tuple[dt.date, ...]:
        return tuple(sorted(self.attempts))

    @property
    def app_id(self) -> str:
        return f"ninelives:{self.job}"

    @property
    def txn_version(self) -> int:
        """The commit's transaction version: only grows with the unit, then the chunk."""
        return self.unit * CHUNK_SLOTS + (self.chunk or 0)

    def only(self, partitions: Iterable[dt.date]) -> CommitTag:
        """The same unit, narrowed to ``partitions`` (what one table's commit covers)."""
        keep = set(partitions)
        return CommitTag(
            self.job,
            self.run_id,
            self.unit,
            {p: a for p, a in self.attempts.items() if p in keep},
            {p: c for p, c in self.counts.items() if p in keep},
            self.chunk,
        )

    def with_counts(self, counts: Mapping[dt.date, Mapping[str, int]]) -> CommitTag:
        """The tag with more counts per partition (the write's own, before it commits)."""
        merged = {p: {**self.counts.get(p, {}), **counts.get(p, {})} for p in self.attempts}
        return dataclasses.replace(self, counts=merged)

    def describe(self) -> str:
        """``partition 2024-01-15`` or ``partitions 2024-01-15..2024-01-19 (5)``."""
        first, last = self.partitions[0], self.partitions[-1]
        if first == last:
            return f"partition {first}"
        return f"partitions {first}..{last} ({len(self.partitions)})"

    @property
    def metadata(self) -> dict[str, Any]:
        chunk = {} if self.chunk is None else {"chunk": self.chunk}
        return {
            "job": self.job,
            "run_id": self.run_id,
            "unit": self.unit,
            **chunk,
            "partitions": {
                p.isoformat(): {"attempt": self.attempts[p], **self.counts.get(p, {})}
                for p in self.partitions
            },
        }

    @property
    def metadata_json(self) -> str:
        return json.dumps(self.metadata, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class CommitResult:
    """The Delta commit a write produced, with its operation metrics as integers."""

    version: int
    operation: str
    metrics: dict[str, int] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    def metric(self, name: str) -> int:
        return self.metrics.get(name, 0)

    def partition(self, partition: dt.date) -> dict[str, Any] | None:
        """What the commit's tag says of one partition: attempt and counts; None if the
        commit does not cover it."""
        found = self.metadata.get("partitions", {}).get(partition.isoformat())
        return found if isinstance(found, dict) else None

    def covers(self, tag: CommitTag) -> bool:
        """Written by ``tag``'s unit (same job, run and unit number, and chunk)."""
        return (
            self.metadata.get("job") == tag.job
            and self.metadata.get("run_id") == tag.run_id
            and self.metadata.get("unit") == tag.unit
            and self.metadata.get("chunk") == tag.chunk
        )


WRITE_COUNTS = ("rows_written", "rows_inserted", "rows_updated", "rows_deleted")


@contextmanager
def tagged_commit(spark: SparkSession, tag: CommitTag) -> Iterator[None]:
    """Set the session's transaction id and commit metadata for one MERGE, which takes
    no write options (an append or overwrite gets them as options: :func:`tagged_save`).

    These are session settings, so units written in parallel threads each need a
    session of their own (:func:`~framework.lake.session.own_sessions`).
    """
    confs = {
        TXN_APP_ID_CONF: tag.app_id,
        TXN_VERSION_CONF: str(tag.txn_version),
        USER_METADATA_CONF: tag.metadata_json,
    }
    for key, value in confs.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key in confs:
            spark.conf.unset(key)


def find_commits(
    spark: SparkSession, ref: TableRef, job: str, lookback: int = HISTORY_LOOKBACK
) -> list[CommitResult]:
    """Commits of ``ref`` tagged by ``job``'s units, newest first, among the table's last
    ``lookback`` commits."""
    if not ref.exists(spark):
        return []
    rows = (
        ref.history(spark, lookback)
        .where(F.col("userMetadata").isNotNull())
        .select("version", "operation", "operationMetrics", "userMetadata")
        .collect()
    )
    found = []
    for row in rows:
        metadata = _metadata(row.userMetadata)
        if metadata is not None and metadata.get("job") == job:
            found.append(_result(row, metadata))
    return sorted(found, key=lambda c: c.version, reverse=True)


def _metadata(text: str | None) -> dict[str, Any] | None:
    try:
        metadata = json.loads(text or "")
    except ValueError:
        return None
    return metadata if isinstance(metadata, dict) and "partitions" in metadata else None


def _result(row: Any, metadata: dict[str, Any]) -> CommitResult:
    return CommitResult(row.version, row.operation, _metrics(row), metadata)


def _metrics(row: Any) -> dict[str, int]:
    """A history row's operation metrics as integers.

    A MERGE's ``numSourceRows`` counts the unit's rows only: the vanished-key rows that
    :class:`MergeSink` adds to its source (one per deleted target row, each deleted by
    the MATCHED delete clause) are taken out again.
    """
    metrics = {
        k: int(v) for k, v in (row.operationMetrics or {}).items() if str(v).lstrip("-").isdigit()
    }
    if row.operation == "MERGE" and "numSourceRows" in metrics:
        metrics["numSourceRows"] -= metrics.get("numTargetRowsMatchedDeleted", 0)
    return metrics


def find_commit(spark: SparkSession, ref: TableRef, tag: CommitTag) -> CommitResult | None:
    """The commit written by exactly this unit, if any."""
    for commit in find_commits(spark, ref, tag.job):
        if commit.covers(tag):
            return commit
    return None


def own_commit(spark: SparkSession, ref: TableRef, tag: CommitTag) -> CommitResult | None:
    """The commit this unit just wrote, called while still holding ``ref``'s write lock.

    Under the lock no other writer can have committed since, so the newest commit is
    ours if Delta made one: one commit file is read instead of the last
    ``HISTORY_LOOKBACK``. Tables without a lock (Unity Catalog, cloud paths), or a
    newest commit that is not ours, take the full search.
    """
    if needs_lock(ref):
        rows = ref.history(spark, 1).collect()
        row = rows[0] if rows else None
        metadata = _metadata(row.userMetadata) if row is not None else None
        if metadata is not None:
            result = _result(row, metadata)
            if result.covers(tag):
                return result
    return find_commit(spark, ref, tag)


# Deletion vectors: an update or delete marks rows instead of rewriting their files, and
# a MERGE that changes nothing writes nothing.
TABLE_PROPERTIES = {"delta.enableDeletionVectors": "true"}


def fenced_error(spark: SparkSession, ref: TableRef, tag: CommitTag) -> FencedError:
    """The error of a unit whose commit Delta skipped: a newer unit of the job committed."""
    newest = max(
        (int(c.metadata.get("unit", 0)) for c in find_commits(spark, ref, tag.job)), default=0
    )
    return FencedError(
        f"job {tag.job}, {tag.describe()}: Delta skipped the commit of unit {tag.unit} to "
        f"{ref} because a newer unit of the job already committed; this unit's result is "
        "discarded, and its partitions are claimed again if no newer attempt holds them",
        newest,
    )


def committed_by(spark: SparkSession, ref: TableRef, tag: CommitTag) -> CommitResult:
    """The unit's commit (call while holding ``ref``'s write lock); fenced if none."""
    commit = own_commit(spark, ref, tag)
    if commit is None:
        raise fenced_error(spark, ref, tag)
    return commit


def write_marker(
    spark: SparkSession, ref: TableRef, df: DataFrame, partition_column: str, tag: CommitTag
) -> CommitResult:
    """An empty, tagged append: records the unit's transaction id and metadata.

    A MERGE that changes nothing makes no commit (with deletion vectors), yet the unit
    must leave its transaction version in the log for fencing and its tag for healing.
    Delta skips this commit too when a newer unit already committed.
    """
    empty = df.limit(0).write.mode("append")
    return tagged_save(spark, ref, empty, df.schema, partition_column, tag)


def tagged_save(
    spark: SparkSession,
    ref: TableRef,
    writer: DataFrameWriter,
    schema: StructType,
    partition_column: str,
    tag: CommitTag,
) -> CommitResult:
    """Save with ``writer`` (rows of ``schema``) and the unit's transaction id and
    metadata; the commit it made. The first write to ``ref`` creates it, partitioned by
    ``partition_column``."""
    writer = (
        writer.format("delta")
        .option("txnAppId", tag.app_id)
        .option("txnVersion", tag.txn_version)
        .option("userMetadata", tag.metadata_json)
    )
    partition_by = checked_identifier(partition_column, "partition column")
    with write_lock(ref):
        ref.save(spark, writer, schema, partition_by=partition_by, properties=TABLE_PROPERTIES)
        return committed_by(spark, ref, tag)


def check_totals(commit: CommitResult, where: str) -> None:
    """The sums of the partitions' own counts equal the commit's metrics, or a record was
    lost or doubled on the way (:class:`AccountingError`)."""
    parts = commit.metadata.get("partitions", {}).values()
    total = {name: sum(int(p.get(name, 0)) for p in parts) for name in WRITE_COUNTS}
    if commit.operation == "MERGE":
        found = {
            "rows_inserted": commit.metric("numTargetRowsInserted"),
            "rows_updated": commit.metric("numTargetRowsUpdated"),
            "rows_deleted": commit.metric("numTargetRowsDeleted"),
        }
    elif commit.metric("numFiles") == 0 and commit.metric("numOutputRows") == 0:
        changed = total["rows_inserted"] + total["rows_updated"] + total["rows_deleted"]
        found = {"rows_changed": 0}
        total = {"rows_changed": changed}
    else:
        found = {"rows_written": commit.metric("numOutputRows")}
    expected = {name: total[name] for name in found}
    if found != expected:
        raise AccountingError(
            f"{where}: the commit's metrics {found} disagree with the sums of its "
            f"partitions' counts {expected}"
        )
