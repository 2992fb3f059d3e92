"""Idempotent, tagged writes of one work unit (one or many partitions) into a Delta table.

Both strategies write exactly one Delta commit per unit and tag it with

* ``txnAppId`` = ``ninelives:<job>`` and ``txnVersion`` = the unit's sequence number,
  which the ledger's claim allocates and which only grows per job: Delta ignores a
  commit whose version is not above the last one recorded, so a zombie runner cannot
  overwrite a newer unit's result (:class:`~framework.core.errors.FencedError`), and
* ``userMetadata`` = ``{"job", "run_id", "unit", "partitions": {date: {"attempt", counts}}}``,
  so the commit can be found in the table's history after a crash, and every partition
  of it marked complete from its counts, without recomputing anything.

``MergeSink`` (default) upserts by (partition, ``_key``) within the unit's partitions and
deletes keys that vanished from them; an unchanged row (same ``_row_hash``) is not
touched. A unit whose partitions the target holds no file of yet (a new date, the usual
nightly case, or a first backfill) is written with one ``replaceWhere`` overwrite of
those partitions instead: the same rows in one commit, without the MERGE's join. The
check and the write are one step under the table's write lock, and the overwrite reads
the partitions like a MERGE, so a writer that adds files to them concurrently (storage
without the lock) conflicts instead of being joined by a duplicate.

Before a MERGE, one grouped aggregate over the unit's rows and the target's keys counts
each partition's inserts, updates and deletes; they go into the commit's metadata, and
their sums must equal the commit's own metrics (:class:`~framework.core.errors.AccountingError`
otherwise). The vanished keys (the partitions' target keys missing from the new rows,
read under the same write lock and leases as the MERGE) are deleted by a MATCHED clause,
not by ``WHEN NOT MATCHED BY SOURCE``: Delta cannot skip any target file for a MERGE
with that clause, so every MERGE would scan the whole table twice. Targets use deletion
vectors, so a rerun over unchanged data commits 0 added files and 0 updated rows. Should
Delta make no commit at all for such a MERGE, the unit writes an empty tagged append
instead (:func:`write_marker`), so that its transaction version and tag are in the log
all the same. ``ReplaceSink`` always overwrites the unit's partitions with
``replaceWhere``; cheaper when partitions are recomputed whole (aggregates).

Example::

    tag = CommitTag("orders_daily", run_id="r1", unit=7, attempts={date(2024, 1, 15): 3})
    result = MergeSink("silver.orders").write(spark, ref, df, "order_date", tag)
    result.operation                       # "WRITE" for new partitions, else "MERGE"
    result.partition(date(2024, 1, 15))    # {"attempt": 3, "rows_written": ..., ...}
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import Column, DataFrame, DataFrameWriter, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from framework.core.errors import AccountingError, FencedError
from framework.core.keys import KEY_COLUMN, ROW_HASH_COLUMN
from framework.core.names import checked_identifier, quoted
from framework.lake.locks import needs_lock, write_lock
from framework.lake.tables import TableRef

RUN_ID_COLUMN = "_run_id"
PROCESSED_AT_COLUMN = "_processed_at"
AUDIT_COLUMNS = (RUN_ID_COLUMN, PROCESSED_AT_COLUMN)

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
    """Set the session's transaction id and commit metadata for one write.

    These are session settings, so units written in parallel threads each need their
    own ``spark.newSession()``.
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
        ref.delta(spark)
        .history(lookback)
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


def _own_commit(spark: SparkSession, ref: TableRef, tag: CommitTag) -> CommitResult | None:
    """The commit this unit just wrote, called while still holding ``ref``'s write lock.

    Under the lock no other writer can have committed since, so the newest commit is
    ours if Delta made one: one commit file is read instead of the last
    ``HISTORY_LOOKBACK``. Tables without a lock (Unity Catalog, cloud paths), or a
    newest commit that is not ours, take the full search.
    """
    if needs_lock(ref):
        rows = ref.delta(spark).history(1).collect()
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


def _fenced(spark: SparkSession, ref: TableRef, tag: CommitTag) -> FencedError:
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
    commit = _own_commit(spark, ref, tag)
    if commit is None:
        raise _fenced(spark, ref, tag)
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


def _in_unit(column: Column, tag: CommitTag) -> Column:
    """``column IN (<the unit's partitions as literals>)``: a predicate Delta prunes by."""
    return column.isin([F.lit(p) for p in tag.partitions])


def _rows_per_partition(df: DataFrame, partition_column: str, tag: CommitTag) -> dict:
    """``{partition: rows}`` of a unit's new rows: the counts its tag was given (rows
    read less rejected, dropped and duplicate), else one aggregate over ``df``."""
    parts = ("rows_read", "rows_rejected", "rows_dropped", "rows_duplicate")
    given = {p: [tag.counts.get(p, {}).get(name) for name in parts] for p in tag.partitions}
    if all(isinstance(n, int) for counts in given.values() for n in counts):
        return {p: int(read) - sum(map(int, rest)) for p, (read, *rest) in given.items()}  # type: ignore[arg-type]
    found = {
        r[0]: r[1] for r in df.groupBy(partition_column).count().collect() if r[0] in tag.attempts
    }
    return {p: found.get(p, 0) for p in tag.partitions}


def _written_whole(tag: CommitTag, rows: Mapping[dt.date, int]) -> dict:
    """Each partition's write counts when its rows replace the partition whole."""
    return {
        p: {"rows_written": n, "rows_inserted": n, "rows_updated": 0, "rows_deleted": 0}
        for p, n in rows.items()
    }


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


@dataclass(frozen=True)
class MergeSink:
    """Upsert by (partition, ``_key``) inside a unit's partitions; delete vanished keys."""

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

        A unit whose partitions the target has no file of (or a target not created yet,
        which that write creates) is written by :func:`replace_partitions`. Otherwise
        one MERGE, whose source is ``df`` plus one row per key of the target partitions
        that ``df`` lacks (that key, its partition value, every other column NULL,
        ``_row_hash`` included): a MATCHED clause deletes those. Every clause is then
        about rows of the unit's partitions, and the literal partition predicate lets
        Delta skip every other partition's files, which ``WHEN NOT MATCHED BY SOURCE``
        would not allow.
        """
        pc, key, row_hash = partition_column, KEY_COLUMN, ROW_HASH_COLUMN
        with write_lock(ref):
            if not ref.exists(spark) or not _partition_files(spark, ref, pc, tag):
                rows = _rows_per_partition(df, partition_column, tag)
                return replace_partitions(
                    spark, ref, df, partition_column, tag, rows, evolve=evolve
                )
            # No other writer changes these partitions between this read and the MERGE's
            # commit: the table's write lock (local storage) and the partitions' leases
            # (one live attempt each) exclude them, and a fenced zombie's files added to
            # them would fail the MERGE's conflict check on its partition predicate.
            old = (
                ref.read(spark)
                .where(_in_unit(F.col(pc), tag))
                .select(pc, key, F.col(row_hash).alias("_old_hash"))
            )
            diff = df.select(pc, key, row_hash).join(old, [pc, key], "full_outer")
            new, was = F.col(row_hash), F.col("_old_hash")
            counted = {
                r[pc]: r
                for r in diff.groupBy(pc)
                .agg(
                    F.count(new).alias("rows_written"),
                    F.count(F.when(was.isNull(), new)).alias("rows_inserted"),
                    F.count(F.when(new != was, new)).alias("rows_updated"),
                    F.count(F.when(new.isNull(), was)).alias("rows_deleted"),
                )
                .collect()
            }
            tag = tag.with_counts(
                {
                    p: {name: int(counted[p][name]) if p in counted else 0 for name in WRITE_COUNTS}
                    for p in tag.partitions
                }
            )
            gone = old.select(pc, key).join(df.select(pc, key), [pc, key], "left_anti")
            source = df.unionByName(gone, allowMissingColumns=True)
            vanished = F.col(f"s.{row_hash}").isNull()
            with tagged_commit(spark, tag):
                builder = (
                    ref.delta(spark)
                    .alias("t")
                    .merge(
                        source.alias("s"),
                        # The literal partition predicate keeps the MERGE to the unit's
                        # files: Delta skips the others, and writers of other partitions
                        # do not conflict with it.
                        _in_unit(F.col(f"t.{pc}"), tag)
                        & (F.col(f"t.{pc}") == F.col(f"s.{pc}"))
                        & (F.col(f"t.{key}") == F.col(f"s.{key}")),
                    )
                    .whenMatchedDelete(condition=vanished)
                    .whenMatchedUpdateAll(
                        condition=F.col(f"t.{row_hash}") != F.col(f"s.{row_hash}")
                    )
                    .whenNotMatchedInsertAll(condition=~vanished)
                )
                (builder.withSchemaEvolution() if evolve else builder).execute()
            commit = _own_commit(spark, ref, tag)
            if commit is not None:
                return commit
            fenced = _fenced(spark, ref, tag)
            if fenced.newest_unit >= tag.unit:
                raise fenced
            return write_marker(spark, ref, df, pc, tag)


@dataclass(frozen=True)
class ReplaceSink:
    """Overwrite exactly a unit's partitions with ``replaceWhere``."""

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
        """One tagged overwrite of the partitions; ``evolve`` merges new columns in."""
        rows = _rows_per_partition(df, partition_column, tag)
        return replace_partitions(spark, ref, df, partition_column, tag, rows, evolve=evolve)


def replace_partitions(
    spark: SparkSession,
    ref: TableRef,
    df: DataFrame,
    partition_column: str,
    tag: CommitTag,
    rows: Mapping[dt.date, int] | None = None,
    *,
    evolve: bool = False,
) -> CommitResult:
    """Overwrite the unit's partitions with ``df`` (``replaceWhere``) in one tagged commit;
    ``rows``: each partition's rows in ``df``, for the commit's metadata."""
    if rows is not None:
        tag = tag.with_counts(_written_whole(tag, rows))
    dates = ", ".join(f"DATE'{p}'" for p in tag.partitions)
    writer = df.write.mode("overwrite").option(
        "replaceWhere", f"{quoted(partition_column)} IN ({dates})"
    )
    if evolve:
        writer = writer.option("mergeSchema", "true")
    return tagged_save(spark, ref, writer, df.schema, partition_column, tag)


def append_partitions(
    spark: SparkSession, ref: TableRef, df: DataFrame, partition_column: str, tag: CommitTag
) -> CommitResult:
    """Append ``df`` in one tagged commit: for partitions nothing was written to before."""
    return tagged_save(spark, ref, df.write.mode("append"), df.schema, partition_column, tag)


def write_chunk(
    spark: SparkSession,
    ref: TableRef,
    df: DataFrame,
    partition_column: str,
    tag: CommitTag,
    rows: Mapping[dt.date, int],
    *,
    evolve: bool = False,
) -> CommitResult:
    """One chunk of a partition processed in chunks (:mod:`framework.engine.chunks`), in one
    tagged commit: chunk 0 replaces the partition (whatever a complete run or an older
    manifest left, vanished keys included, goes), every later chunk appends. A key that
    two chunks hold is settled when the last chunk is in (:func:`drop_duplicates`)."""
    if not tag.chunk:
        return replace_partitions(spark, ref, df, partition_column, tag, rows, evolve=evolve)
    writer = df.write.mode("append")
    if evolve:
        writer = writer.option("mergeSchema", "true")
    tag = tag.with_counts(_written_whole(tag, rows))
    return tagged_save(spark, ref, writer, df.schema, partition_column, tag)


def _partition_files(
    spark: SparkSession, ref: TableRef, partition_column: str, tag: CommitTag
) -> list[str]:
    """The data files of the unit's partitions in the table's current snapshot.

    Planned from the Delta log by partition pruning: no data file is read.
    """
    return list(ref.read(spark).where(_in_unit(F.col(partition_column), tag)).inputFiles())
