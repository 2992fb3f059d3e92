"""Idempotent write strategies of one work unit (one or many partitions) into a Delta
table: each writes exactly one commit per unit, tagged by :mod:`framework.lake.commits`
with the unit's transaction id and metadata, so that a zombie runner is fenced and a
crash between the commit and the ledger is healed from the table's log.

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
instead (:func:`~framework.lake.commits.write_marker`), so that its transaction version
and tag are in the log all the same. ``ReplaceSink`` always overwrites the unit's
partitions with ``replaceWhere``; cheaper when partitions are recomputed whole
(aggregates).

Example::

    tag = CommitTag("orders_daily", run_id="r1", unit=7, attempts={date(2024, 1, 15): 3})
    result = MergeSink("silver.orders").write(spark, ref, df, "order_date", tag)
    result.operation                       # "WRITE" for new partitions, else "MERGE"
    result.partition(date(2024, 1, 15))    # {"attempt": 3, "rows_written": ..., ...}
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from framework.core.keys import KEY_COLUMN, ROW_HASH_COLUMN
from framework.core.names import quoted
from framework.lake.commits import (
    WRITE_COUNTS,
    CommitResult,
    CommitTag,
    fenced_error,
    own_commit,
    tagged_commit,
    tagged_save,
    write_marker,
)
from framework.lake.locks import write_lock
from framework.lake.tables import TableRef

RUN_ID_COLUMN = "_run_id"
PROCESSED_AT_COLUMN = "_processed_at"
AUDIT_COLUMNS = (RUN_ID_COLUMN, PROCESSED_AT_COLUMN)


def _in_unit(column: Column, tag: CommitTag) -> Column:
    """``column IN (<the unit's partitions as literals>)``: a predicate Delta prunes by."""
    return column.isin([F.lit(p) for p in tag.partitions])


def _unit_dates(tag: CommitTag) -> str:
    """The unit's partitions as SQL literals: ``DATE'2024-01-15', DATE'2024-01-16'``."""
    return ", ".join(f"DATE'{p}'" for p in tag.partitions)


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


@dataclass(frozen=True)
class MergeSink:
    """Upsert by (partition, ``_key``) inside a unit's partitions; delete vanished keys."""

    table: str

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
            pc_, key_, hash_ = quoted(pc), quoted(key), quoted(row_hash)
            with tagged_commit(spark, tag):
                ref.merge(
                    spark,
                    source,
                    # The literal partition predicate keeps the MERGE to the unit's files:
                    # Delta skips the others, and writers of other partitions do not
                    # conflict with it.
                    f"t.{pc_} IN ({_unit_dates(tag)})"
                    f" AND t.{pc_} = s.{pc_} AND t.{key_} = s.{key_}",
                    f"WHEN MATCHED AND s.{hash_} IS NULL THEN DELETE",
                    f"WHEN MATCHED AND t.{hash_} != s.{hash_} THEN UPDATE SET *",
                    f"WHEN NOT MATCHED AND s.{hash_} IS NOT NULL THEN INSERT *",
                    evolve=evolve,
                )
            commit = own_commit(spark, ref, tag)
            if commit is not None:
                return commit
            fenced = fenced_error(spark, ref, tag)
            if fenced.newest_unit >= tag.unit:
                raise fenced
            return write_marker(spark, ref, df, pc, tag)


@dataclass(frozen=True)
class ReplaceSink:
    """Overwrite exactly a unit's partitions with ``replaceWhere``."""

    table: str

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
    writer = df.write.mode("overwrite").option(
        "replaceWhere", f"{quoted(partition_column)} IN ({_unit_dates(tag)})"
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
