"""One attempt at one work unit: many partitions (or one) in one Spark pass, one commit
per table, and every partition's own counts and outcome.

::

    read source(P) for each P of the unit -> split malformed -> transform (per P)
      -> schema drift check (per P) -> expectations, and rows outside their P
      -> key + row hash -> dedupe by (P, key) -> counts per P (one grouped aggregate)
      -> leave out the partitions that fail -> quarantine commit -> target commit
      -> a complete state per P

Every source record ends in exactly one place: the target, the quarantine (with a
reason), the dropped count, or the duplicates collapsed by key. The counts come from
one aggregate over the staged rows, grouped by partition, and are checked against the
target commit (:class:`~framework.core.errors.AccountingError`). A partition that fails
before the write (no source, schema drift, a ``fail`` rule, too many rejects) is left
out of the commits and reported with its error; its neighbours commit.

The quarantine commits before the target, so the target commit is the unit's last
write: a crash after it leaves every partition healable from that commit's metadata,
without recomputing; a crash before it leaves rejects that the next attempt replaces.

The staged rows are persisted with ``MEMORY_AND_DISK`` for a unit of up to
:data:`MEMORY_CACHE_BYTES` of input, and to local disk only above that: Spark's in-memory
columnar cache builds its batches on the heap, and a 2 GiB driver caching one date of
10M records (2.2 GB of JSON) dies with ``OutOfMemoryError`` there, spill or not. The
runner bounds a unit by its input bytes (``run.unit_size``), and a bigger date goes in
chunks of its files (:mod:`framework.engine.chunks`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import re
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, replace

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from framework.core.crashpoints import crash_points
from framework.core.errors import (
    AccountingError,
    ExpectationFailedError,
    NinelivesError,
    PartitionError,
    RejectRatioError,
    SchemaMismatchError,
    SourceMissingError,
    TargetMissingError,
)
from framework.core.expectations import reasons
from framework.core.failures import root_cause
from framework.core.keys import KEY_COLUMN, ROW_HASH_COLUMN, key_expr, row_hash_expr
from framework.engine.job import Job
from framework.lake.commits import CommitResult, CommitTag, check_totals
from framework.lake.quarantine import as_quarantine_rows, quarantine_table, write_quarantine
from framework.lake.session import caching_allowed
from framework.lake.sinks import PROCESSED_AT_COLUMN, RUN_ID_COLUMN, write_chunk
from framework.lake.sources import CORRUPT_COLUMN
from framework.lake.tables import Lakehouse
from framework.state.ledger import COMPLETE, PartitionState, utcnow

UNIT_COLUMN = "_partition"
"""Which of the unit's partitions a staged row was read for."""
MEMORY_CACHE_BYTES = 256 * 1024 * 1024
"""A unit with more input than this caches its staged rows on local disk only."""
REJECT_COLUMN = "_reject_reason"
DROP_COLUMN = "_drop_reason"
FAIL_COLUMN = "_fail_reason"
RANK_COLUMN = "_rank"
STAGING_COLUMNS = (UNIT_COLUMN, REJECT_COLUMN, DROP_COLUMN, FAIL_COLUMN, RANK_COLUMN)
MALFORMED_REASON = "malformed record: not valid JSON, or a value of the wrong type"
UNREADABLE_REASON = "unreadable file, quarantined whole"


@dataclass(frozen=True)
class Counts:
    read: int = 0
    rejected: int = 0
    dropped: int = 0
    duplicate: int = 0
    failing: int = 0
    failing_rule: str | None = None

    @property
    def accepted(self) -> int:
        return self.read - self.rejected - self.dropped - self.duplicate


@dataclass(frozen=True)
class Chunk:
    """One chunk of a partition processed in chunks (:mod:`framework.engine.chunks`): its files,
    its place in the manifest, and the manifest's identity and fingerprint."""

    index: int
    of: int
    files: tuple[str, ...]
    manifest: str
    fingerprint: str
    bytes: int = 0


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
# a run stages many units of one schema: they are built once per job and schema, for
# each session (a column refers to objects of its session's JVM). An expectation's
# condition is thus called once per session, not once per unit.
_STAGING: weakref.WeakKeyDictionary[object, dict[tuple, _Staging]] = weakref.WeakKeyDictionary()


def _staging(job: Job, schema: StructType, session: SparkSession) -> _Staging:
    memo = _STAGING.setdefault(session, {})
    cache_key = (job.key, job.order_by, job.expectations, schema.json())
    if cache_key not in memo:
        names = [f.name for f in schema.fields]
        payload = [c for c in names if not c.startswith("_") and c != ROW_HASH_COLUMN]
        kept = F.col(REJECT_COLUMN).isNull() & F.col(DROP_COLUMN).isNull()
        latest_first = [F.col(c).desc_nulls_last() for c in job.order_by]
        window = Window.partitionBy(UNIT_COLUMN, KEY_COLUMN, kept).orderBy(
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


def _check_columns(job: Job, out: DataFrame, partition: dt.date) -> None:
    missing = [c for c in (*job.key, job.partition_column, *job.order_by) if c not in out.columns]
    if missing:
        raise SchemaMismatchError(
            f"job {job.name}, partition {partition}: transform output lacks column(s) "
            f"{', '.join(missing)}; it has: {', '.join(out.columns)}"
        )


def stage(job: Job, out: DataFrame) -> DataFrame:
    """Flag rejected, dropped and failing rows; key, hash and rank duplicates by
    (partition, key). ``out`` carries :data:`UNIT_COLUMN`, the partition each row was
    read for: a row whose own date differs is outside it, and rejected."""
    pc, unit = F.col(job.partition_column), F.col(UNIT_COLUMN)
    outside = F.when(pc.isNull(), F.lit(f"{job.partition_column} is null")).when(
        pc != unit,
        F.concat(
            F.lit(f"{job.partition_column} "),
            pc.cast("string"),
            F.lit(" is outside partition "),
            unit.cast("string"),
        ),
    )
    payload = out.drop(UNIT_COLUMN)
    columns = _staging(job, payload.schema, out.sparkSession)
    return (
        out.withColumn(KEY_COLUMN, columns.key)
        .withColumn(ROW_HASH_COLUMN, columns.row_hash)
        .withColumn(REJECT_COLUMN, F.coalesce(outside, columns.quarantined))
        .withColumn(DROP_COLUMN, F.when(F.col(REJECT_COLUMN).isNull(), columns.dropped))
        .withColumn(FAIL_COLUMN, columns.failing)
        .withColumn(RANK_COLUMN, columns.rank)
    )


def count(staged: DataFrame, malformed: DataFrame | None) -> dict[dt.date, Counts]:
    """Every partition's counts in one grouped aggregate (plus one over malformed lines)."""
    kept = F.col(REJECT_COLUMN).isNull() & F.col(DROP_COLUMN).isNull()
    rows = (
        staged.groupBy(UNIT_COLUMN)
        .agg(
            F.count(F.lit(1)).alias("rows"),
            F.count(REJECT_COLUMN).alias("rejected"),
            F.count(DROP_COLUMN).alias("dropped"),
            F.count(FAIL_COLUMN).alias("failing"),
            F.first(FAIL_COLUMN, ignorenulls=True).alias("failing_rule"),
            F.sum(F.when(kept & (F.col(RANK_COLUMN) > 1), 1).otherwise(0)).alias("duplicate"),
        )
        .collect()
    )
    bad = {}
    if malformed is not None:
        bad = {r[0]: r[1] for r in malformed.groupBy(UNIT_COLUMN).count().collect()}
    counts = {
        r[UNIT_COLUMN]: Counts(
            read=r["rows"] + bad.get(r[UNIT_COLUMN], 0),
            rejected=r["rejected"] + bad.get(r[UNIT_COLUMN], 0),
            dropped=r["dropped"],
            duplicate=r["duplicate"] or 0,
            failing=r["failing"],
            failing_rule=r["failing_rule"],
        )
        for r in rows
    }
    for partition, n in bad.items():
        counts.setdefault(partition, Counts(read=n, rejected=n))
    return counts


def _read(
    spark: SparkSession,
    lakehouse: Lakehouse,
    job: Job,
    partition: dt.date,
    skip: frozenset[str],
    chunk: Chunk | None,
) -> DataFrame:
    try:
        if chunk is not None:  # only sources that list their files are read in chunks
            return job.source.read(spark, lakehouse, partition, skip=skip, files=chunk.files)  # type: ignore[call-arg]
        if skip:  # only then: a source written before ``skip`` existed still works
            return job.source.read(spark, lakehouse, partition, skip=skip)
        return job.source.read(spark, lakehouse, partition)
    except SourceMissingError:
        if not job.allow_empty:
            raise
        return job.source.empty(spark, lakehouse)


def _union(frames: list[DataFrame]) -> DataFrame:
    return functools.reduce(lambda a, b: a.unionByName(b, allowMissingColumns=True), frames)


@dataclass
class _Staged:
    staged: DataFrame | None
    malformed: DataFrame | None
    counts: dict[dt.date, Counts]
    failed: dict[dt.date, Exception]


def _stage_and_count(
    spark: SparkSession,
    lakehouse: Lakehouse,
    job: Job,
    partitions: tuple[dt.date, ...],
    target_schema: StructType | None,
    skip: frozenset[str],
    cached: list[DataFrame],
    chunk: Chunk | None = None,
    level: StorageLevel | None = StorageLevel.MEMORY_AND_DISK,
) -> _Staged:
    """Read (without the files in ``skip``), transform and stage every partition, cached
    in ``cached``; the first Spark job that reads the input is the count. A partition
    whose input is missing or whose transform output does not fit fails alone."""
    failed: dict[dt.date, Exception] = {}
    raws: dict[dt.date, DataFrame] = {}
    for partition in partitions:
        try:
            raws[partition] = _read(spark, lakehouse, job, partition, skip, chunk)
        except SourceMissingError as error:
            failed[partition] = error
    malformed = None
    if any(CORRUPT_COLUMN in raw.columns for raw in raws.values()):
        # Spark refuses queries on raw JSON that touch only the corrupt-record column,
        # and both halves are used twice: cache each date's parsed input once. (One
        # cache of them all would be scanned whole once per date: dates x files tasks.)
        # Cached whatever the job says: Spark tells a row malformed from the columns a
        # query reads, so two queries of uncached input (good rows, bad rows) can each
        # leave out a row whose bad value only the other reads. A session that refuses
        # caching fails the date here, naming why, rather than lose that row.
        bad = []
        for partition, raw in raws.items():
            if CORRUPT_COLUMN not in raw.columns:  # an allow_empty job's empty date
                continue
            raw = _persist(raw, level or StorageLevel.MEMORY_AND_DISK, cached)
            bad.append(
                raw.where(F.col(CORRUPT_COLUMN).isNotNull()).withColumn(
                    UNIT_COLUMN, F.lit(partition)
                )
            )
            raws[partition] = raw.where(F.col(CORRUPT_COLUMN).isNull()).drop(CORRUPT_COLUMN)
        malformed = _union(bad)
    outs = []
    for partition, raw in raws.items():
        try:
            out = check_drift(job, job.transform(raw), target_schema, partition)
            _check_columns(job, out, partition)
        except NinelivesError as error:
            failed[partition] = error
            continue
        outs.append(out.withColumn(UNIT_COLUMN, F.lit(partition)))
    if not outs:
        return _Staged(None, malformed, {}, failed)
    staged = _persist(stage(job, _union(outs)), level, cached)
    counts = count(staged, malformed)
    kept = {p: counts.get(p, Counts()) for p in raws if p not in failed}
    return _Staged(staged, malformed, kept, failed)


def _cache_level(
    spark: SparkSession,
    lakehouse: Lakehouse,
    job: Job,
    partitions: tuple[dt.date, ...],
    chunk: Chunk | None,
) -> StorageLevel | None:
    """Memory and disk for a unit of up to :data:`MEMORY_CACHE_BYTES` of input (or of a
    source that cannot tell its size), disk only above; None (no cache) for a job that
    does not cache or a session that refuses it."""
    if not job.cache or not caching_allowed(spark):
        return None
    size = getattr(job.source, "size", None)
    if chunk is not None:
        input_bytes = chunk.bytes
    else:
        input_bytes = sum(size(spark, lakehouse, p) for p in partitions) if size else 0
    if input_bytes > MEMORY_CACHE_BYTES:
        return StorageLevel.DISK_ONLY
    return StorageLevel.MEMORY_AND_DISK


def _persist(df: DataFrame, level: StorageLevel | None, cached: list[DataFrame]) -> DataFrame:
    """``df`` cached at ``level`` (and listed in ``cached``), or as it is when None."""
    if level is None:
        return df
    cached.append(df.persist(level))
    return df


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
    staged: DataFrame | None,
    malformed: DataFrame | None,
    unreadable: Mapping[str, str],
    tag: CommitTag,
    malformed_reason: str = MALFORMED_REASON,
) -> DataFrame:
    """The rejects of ``tag``'s partitions as quarantine rows; ``malformed_reason``: the
    source's word for a row it could not parse."""
    here = F.col(UNIT_COLUMN).isin([F.lit(p) for p in tag.partitions])
    frames = []
    if staged is not None:
        payload = [c for c in staged.columns if not c.startswith("_")]
        frames.append(
            as_quarantine_rows(
                staged.where(F.col(REJECT_COLUMN).isNotNull() & here),
                F.to_json(F.struct(*payload)),
                F.col(REJECT_COLUMN),
                F.col(UNIT_COLUMN),
                tag,
            )
        )
    if malformed is not None:
        frames.append(
            as_quarantine_rows(
                malformed.where(here),
                F.col(CORRUPT_COLUMN),
                F.lit(malformed_reason),
                F.col(UNIT_COLUMN),
                tag,
            )
        )
    if unreadable:  # only ever in a unit of one partition
        [partition] = tag.partitions
        files = spark.createDataFrame(
            [(path, f"{UNREADABLE_REASON}: {why}") for path, why in sorted(unreadable.items())],
            "file string, reason string",
        )
        frames.append(
            as_quarantine_rows(files, F.col("file"), F.col("reason"), F.lit(partition), tag)
        )
    return _union(frames)


def _may_hold_rejects(previous: PartitionState | None) -> bool:
    """Whether the quarantine may hold rows of the partition from before this attempt:
    unless it was never claimed, or completed with none. An abandoned, failed or fenced
    attempt may have committed its rejects without its target rows; a zombie's late
    quarantine commit is fenced off by this attempt's newer transaction version."""
    if previous is None:
        return False
    return previous.state != COMPLETE or previous.rows_rejected != 0


def check_counts(
    job: Job, lakehouse: Lakehouse, partition: dt.date, counts: Counts, *, whole: bool = True
) -> None:
    """The partition's failures its counts show, known before anything is written;
    ``whole=False``: the counts of one chunk, which may be empty."""
    where = f"job {job.name}, partition {partition}"
    if counts.read == 0 and not job.allow_empty and whole:
        raise SourceMissingError(
            f"source has no rows for {partition} in {job.source.describe(lakehouse)}; "
            "declare allow_empty=True on the job if empty partitions are expected"
        )
    if counts.failing:
        raise ExpectationFailedError(
            f"{where}: {counts.failing} row(s) break the rule '{counts.failing_rule}' "
            "whose action is fail; fix the source or change the rule's action"
        )
    if counts.read and counts.rejected / counts.read > job.max_reject_ratio:
        # Its rejects are still quarantined, but a broken export is never complete.
        raise RejectRatioError(
            f"{where}: {counts.rejected} of {counts.read} rows rejected "
            f"({counts.rejected / counts.read:.0%}), above max_reject_ratio "
            f"{job.max_reject_ratio:.0%}; see `ninelives quarantine {job.name} "
            f"--date {partition}`"
        )


@dataclass
class _Written:
    outcome: dict[dt.date, Exception]
    """The partitions that failed alone, with their errors."""
    counts: dict[dt.date, Counts]
    ok: tuple[dt.date, ...]
    commit: CommitResult | None


def process_unit(
    spark: SparkSession,
    lakehouse: Lakehouse,
    job: Job,
    running: Mapping[dt.date, PartitionState],
    previous: Mapping[dt.date, PartitionState | None],
) -> dict[dt.date, PartitionState | Exception]:
    """Do one attempt at one unit: every partition's ``complete`` state, or the error
    that failed it alone. Raises when the unit fails as a whole (its write, a Spark
    error no one partition can be blamed for)."""
    written = _write(spark, lakehouse, job, running, previous, None)
    crash_points("before_complete", written.ok)
    outcome: dict[dt.date, PartitionState | Exception] = dict(written.outcome)
    for partition in written.ok:
        assert written.commit is not None
        outcome[partition] = _complete(
            job, running[partition], written.counts[partition], written.commit
        )
    return outcome


def process_chunk(
    spark: SparkSession,
    lakehouse: Lakehouse,
    job: Job,
    running: PartitionState,
    previous: PartitionState | None,
    chunk: Chunk,
) -> CommitResult | Exception:
    """One chunk of a partition processed in chunks, as :func:`process_unit` does a unit
    of one partition: its commits (quarantine, then target), tagged with the chunk; the
    commit, or the error that failed the partition."""
    partition = running.partition
    written = _write(spark, lakehouse, job, {partition: running}, {partition: previous}, chunk)
    if written.outcome:
        return written.outcome[partition]
    assert written.commit is not None
    return written.commit


def _write(
    spark: SparkSession,
    lakehouse: Lakehouse,
    job: Job,
    running: Mapping[dt.date, PartitionState],
    previous: Mapping[dt.date, PartitionState | None],
    chunk: Chunk | None,
) -> _Written:
    """Read, stage, count, check and commit a unit (or one chunk of one partition)."""
    first_state = next(iter(running.values()))
    unit, run_id = first_state.unit or 0, first_state.run_id
    partitions = tuple(sorted(running))
    attempts = {p: s.attempt for p, s in running.items()}
    # Before the read: input that arrives while we work makes the partition stale. A
    # chunk's input is its manifest's.
    fingerprints = {
        p: chunk.fingerprint if chunk else job.source.fingerprint(spark, lakehouse, p)
        for p in partitions
    }
    tagged = CommitTag(
        job.name, run_id, unit, attempts, chunk=None if chunk is None else chunk.index
    )
    where = (
        f"job {job.name}, "
        + tagged.describe()
        + (f", chunk {chunk.index + 1} of {chunk.of}" if chunk else "")
    )
    cached: list[DataFrame] = []
    unreadable: dict[str, str] = {}  # file -> why, for corrupt_files="quarantine"
    try:
        target = lakehouse.table(job.sink.table)
        target_schema = target.read(spark).schema if target.exists(spark) else None
        while True:
            try:
                found = _stage_and_count(
                    spark,
                    lakehouse,
                    job,
                    partitions,
                    target_schema,
                    frozenset(unreadable),
                    cached,
                    chunk,
                    _cache_level(spark, lakehouse, job, partitions, chunk),
                )
                break
            except Exception as error:
                bad = unreadable_file(error) if job.corrupt_files == "quarantine" else None
                # A unit of many partitions cannot tell whose file it is: it fails, and
                # is split until the file's partition is a unit of its own.
                if bad is None or bad[0] in unreadable or len(partitions) > 1:
                    raise
                unreadable[bad[0]] = bad[1]  # and read the partition again without it
                _unpersist(cached)
        counts = found.counts
        if unreadable:  # a whole unreadable file is one record read and quarantined
            [only] = partitions
            counts[only] = replace(
                counts[only],
                read=counts[only].read + len(unreadable),
                rejected=counts[only].rejected + len(unreadable),
            )
        crash_points("after_read", partitions)
        outcome: dict[dt.date, Exception] = dict(found.failed)
        for partition, partition_counts in counts.items():
            try:
                check_counts(job, lakehouse, partition, partition_counts, whole=chunk is None)
            except PartitionError as error:
                outcome[partition] = error
        ok = tuple(p for p in partitions if p not in outcome)
        # Quarantined: the rejects of every partition that has some, or to clear what an
        # earlier attempt may have left; a partition over the reject ratio keeps them
        # visible. A chunk after the first clears only its own (a same chunk's attempt
        # that died before the target's commit), which exist only if it has rejects.
        over_ratio = [p for p, e in outcome.items() if isinstance(e, RejectRatioError)]
        quarantined = tuple(
            p
            for p in sorted((*ok, *over_ratio))
            if counts[p].rejected > 0
            or (not (chunk and chunk.index) and _may_hold_rejects(previous.get(p)))
        )
        chunk_counts: dict[str, int | str | None] = (
            {} if chunk is None else {"manifest": chunk.manifest, "chunks": chunk.of}
        )
        tag = dataclasses.replace(
            tagged.only(ok),
            counts={
                p: {
                    "rows_read": counts[p].read,
                    "rows_rejected": counts[p].rejected,
                    "rows_dropped": counts[p].dropped,
                    "rows_duplicate": counts[p].duplicate,
                    "quarantine": int(p in quarantined),
                    "fingerprint": fingerprints[p],
                    **chunk_counts,
                }
                for p in ok
            },
        )
        # The quarantine commits first: once the target commit exists, every write of
        # the unit is in Delta, and a crash before the ledger's commit heals from it.
        if quarantined:
            qtag = tagged.only(quarantined)
            write_quarantine(
                spark,
                quarantine_table(lakehouse, job.name),
                _rejects(
                    spark,
                    found.staged,
                    found.malformed,
                    unreadable,
                    qtag,
                    getattr(job.source, "malformed_reason", MALFORMED_REASON),
                ),
                qtag,
                first=all(previous.get(p) is None and attempts[p] == 1 for p in quarantined),
            )
            crash_points("after_rejects_commit", quarantined)

        commit = None
        if ok:
            assert found.staged is not None
            accepted = (
                found.staged.where(
                    F.col(UNIT_COLUMN).isin([F.lit(p) for p in ok])
                    & F.col(REJECT_COLUMN).isNull()
                    & F.col(DROP_COLUMN).isNull()
                    & (F.col(RANK_COLUMN) == 1)
                )
                .drop(*STAGING_COLUMNS)
                .withColumn(RUN_ID_COLUMN, F.lit(run_id))
                .withColumn(PROCESSED_AT_COLUMN, F.current_timestamp())
            )
            if target_schema is not None and not target.exists(spark):
                # Writing on would start a new table under the old name, without the
                # rows of every partition the ledger calls complete.
                raise TargetMissingError(
                    f"{where}: the target {job.sink.table} was deleted or moved while the "
                    "attempt was under way; put it back (restore the folder), or rebuild "
                    f"it with `ninelives run {job.name} --force` over its dates"
                )
            evolve = job.schema_drift == "evolve"
            if chunk is None:
                commit = job.sink.write(
                    spark, target, accepted, job.partition_column, tag, evolve=evolve
                )
            else:
                rows = {p: counts[p].accepted for p in ok}
                commit = write_chunk(
                    spark, target, accepted, job.partition_column, tag, rows, evolve=evolve
                )
            crash_points("after_target_commit", ok)
            check_totals(commit, where)
        return _Written(outcome, counts, ok, commit)
    finally:
        _unpersist(cached)


def _complete(
    job: Job, running: PartitionState, counts: Counts, commit: CommitResult
) -> PartitionState | Exception:
    """The partition's complete state from its commit; an :class:`AccountingError` if
    the commit wrote other than the rows its counts leave for the target."""
    info = commit.partition(running.partition) or {}
    written = int(info.get("rows_written", -1))
    if written != counts.accepted:
        return AccountingError(
            f"job {job.name}, partition {running.partition}: {counts.read} rows read, "
            f"{counts.rejected} rejected, {counts.dropped} dropped, {counts.duplicate} "
            f"duplicates, so {counts.accepted} expected in the target, but the commit "
            f"wrote {written}"
        )
    complete = complete_from_commit(running, commit)
    assert complete is not None
    return complete


def complete_from_commit(state: PartitionState, commit: CommitResult) -> PartitionState | None:
    """``state``'s partition as complete, from the counts its unit's commit carries;
    None when the commit does not cover this attempt at it."""
    info = commit.partition(state.partition)
    if info is None or info.get("attempt") != state.attempt or "rows_read" not in info:
        return None
    if "manifest" in info:  # one chunk of a partition in chunks is not all of it
        return None
    written, inserted = int(info["rows_written"]), int(info["rows_inserted"])
    updated = int(info["rows_updated"])
    return state.advance(
        COMPLETE,
        rows_read=info["rows_read"],
        rows_written=written,
        rows_inserted=inserted,
        rows_updated=updated,
        rows_deleted=int(info["rows_deleted"]),
        rows_unchanged=written - inserted - updated,
        rows_duplicate=info["rows_duplicate"],
        rows_rejected=info["rows_rejected"],
        rows_dropped=info.get("rows_dropped", 0),
        fingerprint=info.get("fingerprint"),
        target_version=commit.version,
        error_class=None,
        error_message=None,
        finished_at=utcnow(),
    )
