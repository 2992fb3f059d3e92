"""One attempt at one partition: read, validate, key, dedupe, write, account.

::

    read source(P) -> split malformed -> transform -> schema drift check
      -> expectations (quarantine / drop / fail) and rows outside P -> key + row hash
      -> dedupe by key -> target commit -> quarantine commit -> complete state

Every source record ends in exactly one place: the target, the quarantine (with a
reason), the dropped count, or the duplicates collapsed by key. The counts come from
one aggregate over the staged rows and are checked against the target commit's own
metrics; a mismatch fails the partition (:class:`~framework.errors.AccountingError`).
"""

from __future__ import annotations

import datetime as dt
import re
import weakref
from dataclasses import dataclass, replace

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from framework.crashpoints import crash_point
from framework.errors import (
    AccountingError,
    ExpectationFailedError,
    RejectRatioError,
    SchemaMismatchError,
    SourceMissingError,
    TargetMissingError,
)
from framework.expectations import reasons
from framework.failures import root_cause
from framework.job import Job
from framework.keys import KEY_COLUMN, ROW_HASH_COLUMN, key_expr, row_hash_expr
from framework.ledger import COMPLETE, PartitionState, utcnow
from framework.quarantine import as_quarantine_rows, quarantine_table, write_quarantine
from framework.sinks import PROCESSED_AT_COLUMN, RUN_ID_COLUMN, CommitTag, row_counts
from framework.sources import CORRUPT_COLUMN
from framework.tables import Lakehouse

REJECT_COLUMN = "_reject_reason"
DROP_COLUMN = "_drop_reason"
FAIL_COLUMN = "_fail_reason"
RANK_COLUMN = "_rank"
STAGING_COLUMNS = (REJECT_COLUMN, DROP_COLUMN, FAIL_COLUMN, RANK_COLUMN)
MALFORMED_REASON = "malformed record: not valid JSON, or a value of the wrong type"
UNREADABLE_REASON = "unreadable file, quarantined whole"


@dataclass(frozen=True)
class Counts:
    read: int
    rejected: int
    dropped: int
    duplicate: int
    failing: int = 0
    failing_rule: str | None = None

    @property
    def accepted(self) -> int:
        return self.read - self.rejected - self.dropped - self.duplicate


def check_drift(job: Job, out: DataFrame, target_schema: StructType | None, partition: dt.date):
    """Apply the job's schema-drift policy to the transform output against the target.

    * a target column missing from the output fails, naming the column and its type
      (``ignore`` fills it with NULL instead);
    * a column whose type changed always fails, naming the expected and the found type;
    * a new column fails (``fail``, the default), is dropped (``ignore``), or is added
      to the target by the write (``evolve``, MERGE schema evolution).
    """
    if target_schema is None:
        return out
    expected = {f.name: f.dataType for f in target_schema.fields if not f.name.startswith("_")}
    found = {f.name: f.dataType for f in out.schema.fields}
    where = f"job {job.name}, partition {partition}"
    for name, dtype in expected.items():
        if name in found and found[name] != dtype:
            raise SchemaMismatchError(
                f"{where}: column {name} changed type: expected {dtype.simpleString()}, "
                f"found {found[name].simpleString()}"
            )
    missing = [n for n in expected if n not in found]
    if missing and job.schema_drift != "ignore":
        name = missing[0]
        raise SchemaMismatchError(
            f"{where}: required column {name} is missing: expected "
            f"{expected[name].simpleString()}, found none"
            + (f" (also missing: {', '.join(missing[1:])})" if missing[1:] else "")
        )
    for name in missing:
        out = out.withColumn(name, F.lit(None).cast(expected[name]))
    extra = [n for n in found if n not in expected]
    if extra and job.schema_drift == "fail":
        raise SchemaMismatchError(
            f"{where}: new column(s) {', '.join(extra)} not in the target; set the job's "
            "schema_drift to 'evolve' to add them or 'ignore' to drop them"
        )
    if extra and job.schema_drift == "ignore":
        out = out.drop(*extra)
    return out


@dataclass(frozen=True)
class _Staging:
    """The columns :func:`stage` adds that depend on the job and the schema only."""

    key: Column
    row_hash: Column
    quarantined: Column
    dropped: Column
    failing: Column
    rank: Column


# Building these columns takes hundreds of py4j round trips (every F.* call is one), and
# a run stages many partitions of one schema: they are built once per job and schema,
# for each session (a column refers to objects of its session's JVM). An expectation's
# condition is thus called once per session, not once per partition.
_STAGING: weakref.WeakKeyDictionary[object, dict[tuple, _Staging]] = weakref.WeakKeyDictionary()


def _staging(job: Job, schema: StructType, session: SparkSession) -> _Staging:
    memo = _STAGING.setdefault(session, {})
    cache_key = (job.key, job.order_by, job.expectations, schema.json())
    if cache_key not in memo:
        names = [f.name for f in schema.fields]
        payload = [c for c in names if not c.startswith("_") and c != ROW_HASH_COLUMN]
        kept = F.col(REJECT_COLUMN).isNull() & F.col(DROP_COLUMN).isNull()
        latest_first = [F.col(c).desc_nulls_last() for c in job.order_by]
        window = Window.partitionBy(KEY_COLUMN, kept).orderBy(
            *latest_first, F.col(ROW_HASH_COLUMN).desc()
        )
        memo[cache_key] = _Staging(
            key=key_expr(schema, job.key),
            row_hash=row_hash_expr(schema, payload),
            quarantined=reasons(job.expectations, "quarantine"),
            dropped=reasons(job.expectations, "drop"),
            failing=reasons(job.expectations, "fail"),
            rank=F.row_number().over(window),
        )
    return memo[cache_key]


def stage(job: Job, out: DataFrame, partition: dt.date) -> DataFrame:
    """Flag rejected, dropped and failing rows; key, hash and rank duplicates by key."""
    missing = [c for c in (*job.key, job.partition_column, *job.order_by) if c not in out.columns]
    if missing:
        raise SchemaMismatchError(
            f"job {job.name}, partition {partition}: transform output lacks column(s) "
            f"{', '.join(missing)}; it has: {', '.join(out.columns)}"
        )
    pc = F.col(job.partition_column)
    outside = F.when(pc.isNull(), F.lit(f"{job.partition_column} is null")).when(
        pc != F.lit(partition),
        F.concat(
            F.lit(f"{job.partition_column} "),
            pc.cast("string"),
            F.lit(f" is outside partition {partition}"),
        ),
    )
    columns = _staging(job, out.schema, out.sparkSession)
    return (
        out.withColumn(KEY_COLUMN, columns.key)
        .withColumn(ROW_HASH_COLUMN, columns.row_hash)
        .withColumn(REJECT_COLUMN, F.coalesce(outside, columns.quarantined))
        .withColumn(DROP_COLUMN, F.when(F.col(REJECT_COLUMN).isNull(), columns.dropped))
        .withColumn(FAIL_COLUMN, columns.failing)
        .withColumn(RANK_COLUMN, columns.rank)
    )


def count(staged: DataFrame, malformed: DataFrame | None) -> Counts:
    """All the partition's counts in one aggregate (plus one over malformed lines)."""
    kept = F.col(REJECT_COLUMN).isNull() & F.col(DROP_COLUMN).isNull()
    row = staged.agg(
        F.count(F.lit(1)).alias("rows"),
        F.count(REJECT_COLUMN).alias("rejected"),
        F.count(DROP_COLUMN).alias("dropped"),
        F.count(FAIL_COLUMN).alias("failing"),
        F.first(FAIL_COLUMN, ignorenulls=True).alias("failing_rule"),
        F.sum(F.when(kept & (F.col(RANK_COLUMN) > 1), 1).otherwise(0)).alias("duplicate"),
    ).first()
    assert row is not None
    n_malformed = malformed.count() if malformed is not None else 0
    return Counts(
        read=row["rows"] + n_malformed,
        rejected=row["rejected"] + n_malformed,
        dropped=row["dropped"],
        duplicate=row["duplicate"] or 0,
        failing=row["failing"],
        failing_rule=row["failing_rule"],
    )


def _read(
    spark: SparkSession, lakehouse: Lakehouse, job: Job, partition: dt.date, skip: frozenset[str]
) -> DataFrame:
    try:
        if skip:  # only then: a source written before ``skip`` existed still works
            return job.source.read(spark, lakehouse, partition, skip=skip)
        return job.source.read(spark, lakehouse, partition)
    except SourceMissingError:
        if not job.allow_empty:
            raise
        return job.source.empty(spark, lakehouse)


def _stage_and_count(
    spark: SparkSession,
    lakehouse: Lakehouse,
    job: Job,
    partition: dt.date,
    target_schema: StructType | None,
    skip: frozenset[str],
    cached: list[DataFrame],
) -> tuple[DataFrame, DataFrame | None, Counts]:
    """Read (without the files in ``skip``), transform and stage the partition, cached
    in ``cached``; the first Spark job that reads the input is the count."""
    raw = _read(spark, lakehouse, job, partition, skip)
    malformed = None
    if CORRUPT_COLUMN in raw.columns:
        # Spark refuses queries on raw JSON that touch only the corrupt-record
        # column, and both halves are used twice: cache the parsed input once.
        raw = raw.persist(StorageLevel.MEMORY_AND_DISK)
        cached.append(raw)
        malformed = raw.where(F.col(CORRUPT_COLUMN).isNotNull())
        raw = raw.where(F.col(CORRUPT_COLUMN).isNull()).drop(CORRUPT_COLUMN)
    out = check_drift(job, job.transform(raw), target_schema, partition)
    staged = stage(job, out, partition).persist(StorageLevel.MEMORY_AND_DISK)
    cached.append(staged)
    return staged, malformed, count(staged, malformed)


def _unpersist(cached: list[DataFrame]) -> None:
    for df in cached:
        df.unpersist()
    cached.clear()


_UNREADABLE = re.compile(r"while reading file (\S+?)\.?(?:\s|$)")


def unreadable_file(error: BaseException) -> tuple[str, str] | None:
    """``(file, why)`` when ``error`` is Spark failing to read one input file (corrupt,
    truncated, checksum mismatch); None for anything else, a vanished file included."""
    cause = root_cause(error)
    if not (cause.condition or "").startswith("FAILED_READ_FILE") or (
        cause.condition == "FAILED_READ_FILE.FILE_NOT_EXIST"
    ):
        return None
    found = _UNREADABLE.search(cause.message)
    return (found.group(1), cause.cause or cause.message) if found else None


def _rejects(
    spark: SparkSession,
    staged: DataFrame,
    malformed: DataFrame | None,
    unreadable: dict[str, str],
    tag: CommitTag,
) -> DataFrame:
    payload = [c for c in staged.columns if not c.startswith("_")]
    rejects = as_quarantine_rows(
        staged.where(F.col(REJECT_COLUMN).isNotNull()),
        F.to_json(F.struct(*payload)),
        F.col(REJECT_COLUMN),
        tag,
    )
    if malformed is not None:
        rejects = rejects.unionByName(
            as_quarantine_rows(malformed, F.col(CORRUPT_COLUMN), F.lit(MALFORMED_REASON), tag)
        )
    if unreadable:
        files = spark.createDataFrame(
            [(path, f"{UNREADABLE_REASON}: {why}") for path, why in sorted(unreadable.items())],
            "file string, reason string",
        )
        rejects = rejects.unionByName(
            as_quarantine_rows(files, F.col("file"), F.col("reason"), tag)
        )
    return rejects


def process_partition(
    spark: SparkSession,
    lakehouse: Lakehouse,
    job: Job,
    running: PartitionState,
    previous: PartitionState | None,
) -> PartitionState:
    """Do one attempt at one partition; return its ``complete`` state. Raises on failure."""
    partition = running.partition
    # Before the read: input that arrives while we work makes the partition stale.
    fingerprint = job.source.fingerprint(spark, lakehouse, partition)
    where = f"job {job.name}, partition {partition}"
    cached: list[DataFrame] = []
    unreadable: dict[str, str] = {}  # file -> why, for corrupt_files="quarantine"
    try:
        target = lakehouse.table(job.sink.table)
        target_schema = target.read(spark).schema if target.exists(spark) else None
        while True:
            try:
                staged, malformed, counts = _stage_and_count(
                    spark, lakehouse, job, partition, target_schema, frozenset(unreadable), cached
                )
                break
            except Exception as error:
                found = unreadable_file(error) if job.corrupt_files == "quarantine" else None
                if found is None or found[0] in unreadable:
                    raise
                unreadable[found[0]] = found[1]  # and read the partition again without it
                _unpersist(cached)
        # A whole unreadable file is one record read and quarantined.
        counts = replace(
            counts, read=counts.read + len(unreadable), rejected=counts.rejected + len(unreadable)
        )
        crash_point("after_read", partition)
        if counts.read == 0 and not job.allow_empty:
            raise SourceMissingError(
                f"source has no rows for {partition} in {job.source.describe(lakehouse)}; "
                "declare allow_empty=True on the job if empty partitions are expected"
            )
        if counts.failing:
            raise ExpectationFailedError(
                f"{where}: {counts.failing} row(s) break the rule '{counts.failing_rule}' "
                "whose action is fail; fix the source or change the rule's action"
            )
        # Rewrite the quarantine when there are rejects, or to clear an earlier attempt's.
        write_rejects = counts.rejected > 0 or (
            previous is not None and previous.rows_rejected != 0
        )
        # No earlier attempt, so nothing of this partition in the quarantine to replace.
        first = previous is None and running.attempt == 1
        tag = CommitTag(
            job.name,
            partition,
            running.run_id,
            running.attempt,
            counts={
                "rows_read": counts.read,
                "rows_rejected": counts.rejected,
                "rows_dropped": counts.dropped,
                "rows_duplicate": counts.duplicate,
                "quarantine": int(write_rejects),
                "fingerprint": fingerprint,
            },
        )
        if counts.read and counts.rejected / counts.read > job.max_reject_ratio:
            # Keep the rejects visible, but never mark a broken export complete.
            write_quarantine(
                spark,
                quarantine_table(lakehouse, job.name),
                _rejects(spark, staged, malformed, unreadable, tag),
                tag,
                first=first,
            )
            raise RejectRatioError(
                f"{where}: {counts.rejected} of {counts.read} rows rejected "
                f"({counts.rejected / counts.read:.0%}), above max_reject_ratio "
                f"{job.max_reject_ratio:.0%}; see `ninelives quarantine {job.name} "
                f"--date {partition}`"
            )

        accepted = (
            staged.where(
                F.col(REJECT_COLUMN).isNull()
                & F.col(DROP_COLUMN).isNull()
                & (F.col(RANK_COLUMN) == 1)
            )
            .drop(*STAGING_COLUMNS)
            .withColumn(RUN_ID_COLUMN, F.lit(tag.run_id))
            .withColumn(PROCESSED_AT_COLUMN, F.current_timestamp())
        )
        if target_schema is not None and not target.exists(spark):
            # Writing on would start a new table under the old name, without the rows
            # of every partition the ledger calls complete.
            raise TargetMissingError(
                f"{where}: the target {job.sink.table} was deleted or moved while the "
                "attempt was under way; put it back (restore the folder), or rebuild it "
                f"with `ninelives run {job.name} --force` over its dates"
            )
        commit = job.sink.write(
            spark,
            target,
            accepted,
            job.partition_column,
            tag,
            evolve=job.schema_drift == "evolve",
        )
        crash_point("after_target_commit", partition)

        written, inserted, updated, deleted = row_counts(commit, counts.accepted)
        if written != counts.accepted:
            raise AccountingError(
                f"{where}: {counts.read} rows read, {counts.rejected} rejected, "
                f"{counts.dropped} dropped, {counts.duplicate} duplicates, so "
                f"{counts.accepted} expected in the target, but the commit wrote {written}"
            )

        if write_rejects:
            write_quarantine(
                spark,
                quarantine_table(lakehouse, job.name),
                _rejects(spark, staged, malformed, unreadable, tag),
                tag,
                first=first,
            )
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
            rows_dropped=counts.dropped,
            fingerprint=fingerprint,
            target_version=commit.version,
            finished_at=utcnow(),
        )
    finally:
        _unpersist(cached)
