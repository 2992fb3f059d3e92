"""Idempotent, tagged writes of one partition into a Delta table.

Both strategies write exactly one Delta commit per partition and tag it with

* ``txnAppId`` = ``ninelives:<job>:<partition>`` and ``txnVersion`` = the attempt, so
  Delta ignores a commit from an attempt that is not newer than the last one recorded
  (a zombie runner cannot overwrite a newer attempt's result), and
* ``userMetadata`` = ``{"job", "partition", "run_id", "attempt"}``, so the commit can be
  found in the table's history after a crash without recomputing anything.

``MergeSink`` (default) upserts by ``_key`` within the partition and deletes keys that
vanished from it; an unchanged row (same ``_row_hash``) is not touched. A partition the
target holds no file of yet (the first write of a date, the usual nightly case) is
written with the partition's ``replaceWhere`` overwrite instead: the same rows in one
commit, without the MERGE's join. The check and the write are one step under the
table's write lock, and the overwrite reads the partition like a MERGE, so a writer
that adds files to it concurrently (storage without the lock) conflicts instead of
being joined by a duplicate. The MERGE's vanished keys are found by its own source (the
partition's target keys missing from the new rows, read under the same write lock and
lease as the MERGE) and deleted by a MATCHED clause, not by ``WHEN NOT MATCHED BY
SOURCE``: Delta cannot skip any target file for a MERGE with that clause, so every
MERGE would scan the whole table (all partitions) twice. Targets use deletion vectors,
so a rerun over unchanged data commits 0 added files and 0 updated rows. Should Delta
make no commit at all for such a MERGE, the attempt writes an empty tagged append
instead (:func:`write_marker`), so that its transaction version and tag are in the log
all the same. ``ReplaceSink`` always overwrites the partition with ``replaceWhere``;
cheaper when a partition is recomputed whole (aggregates).

Example::

    tag = CommitTag("orders_daily", date(2024, 1, 15), run_id="r1", attempt=3)
    result = MergeSink("silver.orders").write(spark, ref, df, "order_date", tag)
    result.operation                       # "WRITE" for a new partition, else "MERGE"
    written, inserted, updated, deleted = row_counts(result, accepted=df.count())
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
from framework.locks import needs_lock, write_lock
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
        written = commit.metric("numSourceRows")  # the partition's rows, see _metrics
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
            found.append(_result(row, metadata))
    return sorted(found, key=lambda c: c.version, reverse=True)


def _result(row: Any, metadata: dict[str, Any]) -> CommitResult:
    return CommitResult(row.version, row.operation, _metrics(row), metadata)


def _metrics(row: Any) -> dict[str, int]:
    """A history row's operation metrics as integers.

    A MERGE's ``numSourceRows`` counts the partition's rows only: the vanished-key rows
    that :class:`MergeSink` adds to its source (one per deleted target row, each deleted
    by the MATCHED delete clause) are taken out again. MERGEs written with ``WHEN NOT
    MATCHED BY SOURCE`` have no matched deletes, so their count is unchanged.
    """
    metrics = {
        k: int(v) for k, v in (row.operationMetrics or {}).items() if str(v).lstrip("-").isdigit()
    }
    if row.operation == "MERGE" and "numSourceRows" in metrics:
        metrics["numSourceRows"] -= metrics.get("numTargetRowsMatchedDeleted", 0)
    return metrics


def _is_attempt(metadata: dict[str, Any], tag: CommitTag) -> bool:
    return (
        metadata.get("job") == tag.job
        and metadata.get("partition") == tag.partition.isoformat()
        and metadata.get("run_id") == tag.run_id
        and metadata.get("attempt") == tag.attempt
    )


def find_commit(spark: SparkSession, ref: TableRef, tag: CommitTag) -> CommitResult | None:
    """The commit written by exactly this attempt, if any."""
    for commit in find_commits(spark, ref, tag.job, tag.partition):
        if _is_attempt(commit.metadata, tag):
            return commit
    return None


def _own_commit(spark: SparkSession, ref: TableRef, tag: CommitTag) -> CommitResult | None:
    """The commit this attempt just wrote, called while still holding ``ref``'s write lock.

    Under the lock no other writer can have committed since, so the newest commit is
    ours if Delta made one: one commit file is read instead of the last
    ``HISTORY_LOOKBACK``. Tables without a lock (Unity Catalog, cloud paths), or a
    newest commit that is not ours, take the full search.
    """
    if needs_lock(ref):
        rows = ref.delta(spark).history(1).collect()
        row = rows[0] if rows else None
        if row is not None and row.userMetadata:
            try:
                metadata = json.loads(row.userMetadata)
            except ValueError:
                metadata = None
            if isinstance(metadata, dict) and _is_attempt(metadata, tag):
                return _result(row, metadata)
    return find_commit(spark, ref, tag)


def ensure_table(spark: SparkSession, ref: TableRef, df: DataFrame, partition_column: str) -> None:
    """Create ``ref`` with ``df``'s schema, partitioned by ``partition_column``, if missing."""
    if ref.exists(spark):
        return
    with write_lock(ref):
        if not ref.exists(spark):
            ref.create(
                spark,
                df.schema,
                partition_by=checked_identifier(partition_column, "partition column"),
                # Deletion vectors: an update or delete marks rows instead of rewriting
                # their files, and a MERGE that changes nothing writes nothing.
                properties={"delta.enableDeletionVectors": "true"},
            )


def _fenced(tag: CommitTag, ref: TableRef) -> FencedError:
    return FencedError(
        f"job {tag.job}, partition {tag.partition}: Delta skipped the commit of attempt "
        f"{tag.attempt} to {ref} because a newer attempt already committed; "
        "this runner was superseded and its result is discarded"
    )


def _committed(spark: SparkSession, ref: TableRef, tag: CommitTag) -> CommitResult:
    """The attempt's commit (call while holding ``ref``'s write lock); fenced if none."""
    commit = _own_commit(spark, ref, tag)
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
        """One tagged write; ``evolve`` adds the source's new columns to the target.

        A partition the target has no file of is written by :func:`replace_partition`.
        Otherwise one MERGE, whose source is ``df`` plus one row per key of the target
        partition that ``df`` lacks (that key, the partition value, every other column
        NULL, ``_row_hash`` included): a MATCHED clause deletes those. Every clause is
        then about rows of the partition, and the literal partition predicate lets Delta
        skip every other partition's files, which ``WHEN NOT MATCHED BY SOURCE`` would
        not allow.
        """
        ensure_table(spark, ref, df, partition_column)
        with write_lock(ref):
            if not _partition_files(spark, ref, partition_column, tag.partition):
                return replace_partition(spark, ref, df, partition_column, tag, evolve=evolve)
        in_partition = F.col(f"t.{partition_column}") == F.lit(tag.partition)
        vanished = F.col(f"s.{ROW_HASH_COLUMN}").isNull()
        with write_lock(ref), tagged_commit(spark, tag):
            # No other writer changes this partition between this read and the MERGE's
            # commit: the table's write lock (local storage) and the partition's lease
            # (one live attempt) exclude them, and a fenced zombie's files added to the
            # partition would fail the MERGE's conflict check on its partition predicate.
            gone = (
                ref.read(spark)
                .where(F.col(partition_column) == F.lit(tag.partition))
                .select(partition_column, KEY_COLUMN)
                .distinct()
                .join(df.select(KEY_COLUMN), KEY_COLUMN, "left_anti")
            )
            source = df.unionByName(gone, allowMissingColumns=True)
            builder = (
                ref.delta(spark)
                .alias("t")
                .merge(
                    source.alias("s"),
                    # The literal partition predicate keeps the MERGE to this partition's
                    # files: Delta skips the others, and writers of other partitions do
                    # not conflict with it.
                    in_partition & (F.col(f"t.{KEY_COLUMN}") == F.col(f"s.{KEY_COLUMN}")),
                )
                .whenMatchedDelete(condition=vanished)
                .whenMatchedUpdateAll(
                    condition=F.col(f"t.{ROW_HASH_COLUMN}") != F.col(f"s.{ROW_HASH_COLUMN}")
                )
                .whenNotMatchedInsertAll(condition=~vanished)
            )
            (builder.withSchemaEvolution() if evolve else builder).execute()
            commit = _own_commit(spark, ref, tag)
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
        return replace_partition(spark, ref, df, partition_column, tag, evolve=evolve)


def replace_partition(
    spark: SparkSession,
    ref: TableRef,
    df: DataFrame,
    partition_column: str,
    tag: CommitTag,
    *,
    evolve: bool = False,
) -> CommitResult:
    """Overwrite the partition with ``df`` (``replaceWhere``) in one tagged commit."""
    writer = df.write.mode("overwrite").option(
        "replaceWhere", f"{quoted(partition_column)} = DATE'{tag.partition}'"
    )
    if evolve:
        writer = writer.option("mergeSchema", "true")
    return _tagged_save(spark, ref, writer, tag)


def _partition_files(
    spark: SparkSession, ref: TableRef, partition_column: str, partition: dt.date
) -> list[str]:
    """The data files of one partition in the table's current snapshot.

    Planned from the Delta log by partition pruning: no data file is read.
    """
    return list(ref.read(spark).where(F.col(partition_column) == F.lit(partition)).inputFiles())
