"""Idempotent, tagged writes of one partition into a Delta table.

Both strategies write exactly one Delta commit per partition and tag it with

* ``txnAppId`` = ``ninelives:<job>:<partition>`` and ``txnVersion`` = the attempt, so
  Delta ignores a commit from an attempt that is not newer than the last one recorded
  (a zombie runner cannot overwrite a newer attempt's result), and
* ``userMetadata`` = ``{"job", "partition", "run_id", "attempt"}``, so the commit can be
  found in the table's history after a crash without recomputing anything.

``MergeSink`` (default) upserts by ``_key`` within the partition and deletes keys that
vanished from it; an unchanged row (same ``_row_hash``) is not touched. Targets use
deletion vectors, so a rerun over unchanged data commits 0 added files and 0 updated
rows. Should Delta make no commit at all for such a MERGE, the attempt writes an empty
tagged append instead (:func:`write_marker`), so that its transaction version and tag
are in the log all the same. ``ReplaceSink`` overwrites the partition with
``replaceWhere``; cheaper when a partition is recomputed whole (aggregates).

Example::

    tag = CommitTag("orders_daily", date(2024, 1, 15), run_id="r1", attempt=3)
    result = MergeSink("silver.orders").write(spark, ref, df, "order_date", tag)
    result.metrics["numTargetRowsInserted"]
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import DataFrame, DataFrameWriter, SparkSession
from pyspark.sql import functions as F

from framework.errors import FencedError
from framework.keys import KEY_COLUMN, ROW_HASH_COLUMN
from framework.locks import write_lock
from framework.names import checked_identifier, quoted
from framework.tables import TableRef

RUN_ID_COLUMN = "_run_id"
PROCESSED_AT_COLUMN = "_processed_at"
AUDIT_COLUMNS = (RUN_ID_COLUMN, PROCESSED_AT_COLUMN)

TXN_APP_ID_CONF = "spark.databricks.delta.write.txnAppId"
TXN_VERSION_CONF = "spark.databricks.delta.write.txnVersion"
USER_METADATA_CONF = "spark.databricks.delta.commitInfo.userMetadata"

# How far back in a table's history a commit is looked for. Concurrent writers of the
# same table add commits between ours and the lookup; 200 is far more than any run has.
HISTORY_LOOKBACK = 200


@dataclass(frozen=True)
class CommitTag:
    """Identity of one attempt at one partition, written into its Delta commit."""

    job: str
    partition: dt.date
    run_id: str
    attempt: int
    counts: Mapping[str, int | str | None] = field(default_factory=dict)
    """Counts known before the write (read, rejected, duplicates): with the commit's own
    metrics they let a crashed attempt be marked complete without recomputing it."""

    @property
    def app_id(self) -> str:
        return f"ninelives:{self.job}:{self.partition.isoformat()}"

    @property
    def metadata(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "partition": self.partition.isoformat(),
            "run_id": self.run_id,
            "attempt": self.attempt,
            **self.counts,
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


def row_counts(commit: CommitResult, accepted: int) -> tuple[int, int, int, int]:
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


@contextmanager
def tagged_commit(spark: SparkSession, tag: CommitTag) -> Iterator[None]:
    """Set the session's transaction id and commit metadata for one write.

    These are session settings, so partitions written in parallel threads each need
    their own ``spark.newSession()``.
    """
    confs = {
        TXN_APP_ID_CONF: tag.app_id,
        TXN_VERSION_CONF: str(tag.attempt),
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
    spark: SparkSession, ref: TableRef, job: str, partition: dt.date
) -> list[CommitResult]:
    """Commits of ``ref`` tagged for (job, partition), newest first, from the Delta log."""
    if not ref.exists(spark):
        return []
    rows = (
        ref.delta(spark)
        .history(HISTORY_LOOKBACK)
        .where(F.col("userMetadata").isNotNull())
        .select("version", "operation", "operationMetrics", "userMetadata")
        .collect()
    )
    found = []
    for row in rows:
        try:
            metadata = json.loads(row.userMetadata)
        except ValueError:
            continue
        if (
            isinstance(metadata, dict)
            and metadata.get("job") == job
            and metadata.get("partition") == partition.isoformat()
        ):
            metrics = {
                k: int(v)
                for k, v in (row.operationMetrics or {}).items()
                if str(v).lstrip("-").isdigit()
            }
            found.append(CommitResult(row.version, row.operation, metrics, metadata))
    return sorted(found, key=lambda c: c.version, reverse=True)


def find_commit(spark: SparkSession, ref: TableRef, tag: CommitTag) -> CommitResult | None:
    """The commit written by exactly this attempt, if any."""
    for commit in find_commits(spark, ref, tag.job, tag.partition):
        if (
            commit.metadata.get("run_id") == tag.run_id
            and commit.metadata.get("attempt") == tag.attempt
        ):
            return commit
    return None


def ensure_table(spark: SparkSession, ref: TableRef, df: DataFrame, partition_column: str) -> None:
    """Create ``ref`` with ``df``'s schema, partitioned by ``partition_column``, if missing."""
    if ref.exists(spark):
        return
    with write_lock(ref):
        _create(spark, ref, df, partition_column)


def _create(spark: SparkSession, ref: TableRef, df: DataFrame, partition_column: str) -> None:
    (
        ref.builder(spark)
        .addColumns(df.schema)
        .partitionedBy(checked_identifier(partition_column, "partition column"))
        # Deletion vectors: an update or delete marks rows instead of rewriting their
        # files, and a MERGE that changes nothing writes nothing.
        .property("delta.enableDeletionVectors", "true")
        .execute()
    )


def _fenced(tag: CommitTag, ref: TableRef) -> FencedError:
    return FencedError(
        f"job {tag.job}, partition {tag.partition}: Delta skipped the commit of attempt "
        f"{tag.attempt} to {ref} because a newer attempt already committed; "
        "this runner was superseded and its result is discarded"
    )


def _committed(spark: SparkSession, ref: TableRef, tag: CommitTag) -> CommitResult:
    commit = find_commit(spark, ref, tag)
    if commit is None:
        raise _fenced(tag, ref)
    return commit


def write_marker(spark: SparkSession, ref: TableRef, df: DataFrame, tag: CommitTag) -> CommitResult:
    """An empty, tagged append: records the attempt's transaction id and metadata.

    A MERGE that changes nothing makes no commit (with deletion vectors), yet the
    attempt must leave its transaction version in the log for fencing and its tag for
    healing. Delta skips this commit too when a newer attempt already committed.
    """
    return _tagged_save(spark, ref, df.limit(0).write.mode("append"), tag)


def _tagged_save(
    spark: SparkSession, ref: TableRef, writer: DataFrameWriter, tag: CommitTag
) -> CommitResult:
    """Save with the attempt's transaction id and metadata; the commit it made."""
    writer = (
        writer.format("delta")
        .option("txnAppId", tag.app_id)
        .option("txnVersion", tag.attempt)
        .option("userMetadata", tag.metadata_json)
    )
    with write_lock(ref):
        if ref.path is not None:
            writer.save(ref.path)
        else:
            writer.saveAsTable(str(ref.full_name))
    return _committed(spark, ref, tag)


@dataclass(frozen=True)
class MergeSink:
    """Upsert by ``_key`` inside one partition; delete keys that left the partition."""

    table: str
    strategy = "merge"

    def write(
        self,
        spark: SparkSession,
        ref: TableRef,
        df: DataFrame,
        partition_column: str,
        tag: CommitTag,
        *,
        evolve: bool = False,
    ) -> CommitResult:
        """One tagged MERGE; ``evolve`` adds the source's new columns to the target."""
        ensure_table(spark, ref, df, partition_column)
        in_partition = F.col(f"t.{partition_column}") == F.lit(tag.partition)
        with write_lock(ref), tagged_commit(spark, tag):
            builder = (
                ref.delta(spark)
                .alias("t")
                .merge(
                    df.alias("s"),
                    # The literal partition predicate keeps the MERGE to this partition's
                    # files, so writers of other partitions do not conflict with it.
                    in_partition & (F.col(f"t.{KEY_COLUMN}") == F.col(f"s.{KEY_COLUMN}")),
                )
                .whenMatchedUpdateAll(
                    condition=F.col(f"t.{ROW_HASH_COLUMN}") != F.col(f"s.{ROW_HASH_COLUMN}")
                )
                .whenNotMatchedInsertAll()
                .whenNotMatchedBySourceDelete(condition=in_partition)
            )
            (builder.withSchemaEvolution() if evolve else builder).execute()
        commit = find_commit(spark, ref, tag)
        if commit is not None:
            return commit
        newer = [
            c
            for c in find_commits(spark, ref, tag.job, tag.partition)
            if c.metadata.get("attempt", 0) > tag.attempt
        ]
        if newer:
            raise _fenced(tag, ref)
        return write_marker(spark, ref, df, tag)


@dataclass(frozen=True)
class ReplaceSink:
    """Overwrite exactly one partition with ``replaceWhere``."""

    table: str
    strategy = "replace"

    def write(
        self,
        spark: SparkSession,
        ref: TableRef,
        df: DataFrame,
        partition_column: str,
        tag: CommitTag,
        *,
        evolve: bool = False,
    ) -> CommitResult:
        """One tagged overwrite of the partition; ``evolve`` merges new columns in."""
        ensure_table(spark, ref, df, partition_column)
        writer = df.write.mode("overwrite").option(
            "replaceWhere", f"{quoted(partition_column)} = DATE'{tag.partition}'"
        )
        if evolve:
            writer = writer.option("mergeSchema", "true")
        return _tagged_save(spark, ref, writer, tag)
