"""The ledger: a Delta table with the state of every (job, partition).

One ledger per lakehouse, at ``<lakehouse>/_ninelives/ledger`` (or
``<catalog>._ninelives.ledger``): one table to query with SQL across all jobs, and the
place where a job checks that the partitions it depends on are complete, in the same read.

The ledger is an append-only log of state transitions. Each transition is one row and
one blind-append commit: appends never conflict in Delta, so runners of different
partitions and jobs never retry against each other, and the full history of every
partition stays queryable. The state of a partition is its newest row, by
``(attempt, seq, recorded_at)``::

    SELECT * FROM delta.`lakehouse/_ninelives/ledger`
        QUALIFY row_number() OVER (PARTITION BY job, partition
                               ORDER BY attempt DESC, seq DESC, recorded_at DESC) = 1

A ``running`` row is also the partition's lease: owner ``run_id``, ``host``, ``pid`` and
``lease_expires_at``. Claims are a compare-and-swap (:meth:`Ledger.claim`): the claim
is recorded only if nothing was recorded for the partition since the claimant read it.
A claim also numbers the work units it claims: ``unit`` is above every unit number the
job's partitions hold, so a newer attempt's unit always outnumbers an older one's.
On a local ledger the compare is a read under the ledger's write lock, which every
writer takes, and the swap a blind append; elsewhere it is one MERGE, and concurrent
claims conflict in Delta. Either way exactly one of two runners gets each partition.

Example::

    ledger = Ledger(spark, lakehouse.framework_table("ledger"))
    states = ledger.states("orders_daily")      # {date: PartitionState}
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    DateType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from framework.core.names import quoted, sql_string
from framework.lake.locks import needs_lock, write_lock
from framework.lake.tables import TableRef

RUNNING, COMPLETE, FAILED = "running", "complete", "failed"

# Order of transitions within one attempt: running, then complete or failed.
_SEQ = {RUNNING: 1, COMPLETE: 2, FAILED: 2}

COUNT_FIELDS = (
    "rows_read",
    "rows_written",
    "rows_inserted",
    "rows_updated",
    "rows_deleted",
    "rows_unchanged",
    "rows_duplicate",
    "rows_rejected",
    "rows_dropped",
)

LEDGER_SCHEMA = StructType(
    [
        StructField("job", StringType(), False),
        StructField("partition", DateType(), False),
        StructField("attempt", IntegerType(), False),
        StructField("seq", IntegerType(), False),
        StructField("state", StringType(), False),
        StructField("run_id", StringType(), False),
        StructField("host", StringType(), True),
        StructField("pid", IntegerType(), True),
        StructField("unit", LongType(), True),
        *(StructField(name, LongType(), True) for name in COUNT_FIELDS),
        StructField("target_version", LongType(), True),
        StructField("error_class", StringType(), True),
        StructField("error_message", StringType(), True),
        StructField("fingerprint", StringType(), True),
        StructField("manifest", StringType(), True),
        StructField("chunks_committed", IntegerType(), True),
        StructField("lease_expires_at", TimestampType(), True),
        StructField("started_at", TimestampType(), True),
        StructField("finished_at", TimestampType(), True),
        StructField("recorded_at", TimestampType(), False),
    ]
)

COMPACT_AT_FILES = 50
"""A job's ledger partition is compacted at the end of a run once it holds this many
files (Delta's own ``autoCompact.minNumFiles``). Not ``autoCompact``: on this ledger of
one-row commits Delta compacted every few commits, seconds each on a partition's path."""

ERROR_MESSAGE_LIMIT = 4000


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@dataclass(frozen=True)
class PartitionState:
    """One row of the ledger: one state of one attempt at one partition."""

    job: str
    partition: dt.date
    attempt: int
    state: str
    run_id: str
    host: str | None = None
    pid: int | None = None
    unit: int | None = None
    """The work unit the attempt was claimed in: its sequence number, the target commit's
    transaction version (:mod:`framework.lake.sinks`)."""
    rows_read: int | None = None
    rows_written: int | None = None
    rows_inserted: int | None = None
    rows_updated: int | None = None
    rows_deleted: int | None = None
    rows_unchanged: int | None = None
    rows_duplicate: int | None = None
    rows_rejected: int | None = None
    rows_dropped: int | None = None
    target_version: int | None = None
    error_class: str | None = None
    error_message: str | None = None
    fingerprint: str | None = None
    manifest: str | None = None
    """A partition processed in chunks: the attempt's manifest of its input files and
    chunks, as JSON (:class:`framework.engine.chunks.Manifest`); kept by the attempts that
    resume it."""
    chunks_committed: int | None = None
    """Of the manifest's chunks, how many the attempt knew committed when it recorded
    this state (progress for ``status``; the target's log is what a resume trusts)."""
    lease_expires_at: dt.datetime | None = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    recorded_at: dt.datetime | None = None

    @property
    def seq(self) -> int:
        return _SEQ[self.state]

    @property
    def chunks(self) -> int | None:
        """How many chunks the attempt's manifest has (None: not processed in chunks)."""
        return len(json.loads(self.manifest)["chunks"]) if self.manifest else None

    def counts(self) -> dict[str, int | None]:
        return {name: getattr(self, name) for name in COUNT_FIELDS}

    def advance(self, state: str, **changes: object) -> PartitionState:
        """The next state of the same attempt."""
        return dataclasses.replace(self, state=state, recorded_at=None, **changes)  # type: ignore[arg-type]


class Ledger:
    """Reads and appends partition states: a read or an append is one Spark job, a claim
    both."""

    reads = 0
    """How many times any ledger was read in this process (diagnostics and tests: a
    plan must cost one read however many dates it covers)."""

    def __init__(self, spark: SparkSession, ref: TableRef) -> None:
        self.spark = spark
        self.ref = ref

    def ensure(self) -> None:
        """Create the ledger table if it does not exist yet (a MERGE needs a table to
        merge into; :meth:`record` creates it with its first rows)."""
        if self.ref.exists(self.spark):
            return
        with write_lock(self.ref):
            if not self.ref.exists(self.spark):
                self.ref.create(self.spark, LEDGER_SCHEMA, partition_by="job")

    def frame(self) -> DataFrame:
        """Every ledger row, for SQL-style queries."""
        return self.ref.read(self.spark)

    def latest_frame(self, jobs: Iterable[str]) -> DataFrame:
        """The newest row of each (job, partition) of ``jobs``."""
        frame = self.frame()
        # A ledger written before a column was added lacks it until its next append.
        fields = [
            F.col(f.name) if f.name in frame.columns else F.lit(None).cast(f.dataType).alias(f.name)
            for f in LEDGER_SCHEMA.fields
        ]
        newest = F.max_by(F.struct(*fields), F.struct("attempt", "seq", "recorded_at"))
        return (
            frame.where(F.col("job").isin(list(jobs)))
            .groupBy("job", "partition")
            .agg(newest.alias("row"))
            .select("row.*")
        )

    def states(self, *jobs: str) -> dict[str, dict[dt.date, PartitionState]]:
        """``{job: {partition: newest state}}`` for ``jobs``, in a single ledger read."""
        result: dict[str, dict[dt.date, PartitionState]] = {job: {} for job in jobs}
        Ledger.reads += 1
        if not self.ref.exists(self.spark):
            return result
        for row in self.latest_frame(jobs).collect():
            values = row.asDict()
            values.pop("seq")
            state = PartitionState(**values)
            result[state.job][state.partition] = state
        return result

    def record(self, states: PartitionState | Iterable[PartitionState]) -> list[PartitionState]:
        """Append states in one commit; return them as recorded (with ``recorded_at``)."""
        items = [states] if isinstance(states, PartitionState) else list(states)
        if not items:
            return []
        now = utcnow()
        items = [s if s.recorded_at else dataclasses.replace(s, recorded_at=now) for s in items]
        rows = [_to_row(s, now) for s in items]
        df = self.spark.createDataFrame(rows, LEDGER_SCHEMA).coalesce(1)  # a file a commit
        # mergeSchema: a ledger written before a column was added takes the new column.
        writer = df.write.format("delta").mode("append").option("mergeSchema", "true")
        with write_lock(self.ref):
            self.ref.save(self.spark, writer, LEDGER_SCHEMA, partition_by="job")
        return items

    def compact(self, job: str) -> bool:
        """Rewrite ``job``'s ledger files into few once they are :data:`COMPACT_AT_FILES`
        or more: reads stay fast however many transitions a job records. One OPTIMIZE
        of the job's partition, off every partition's path (a run calls it as it ends).
        Returns whether it compacted. It rewrites no row and only appends race it, so a
        concurrent claim that loses to it plans again, as after any claim conflict."""
        if not self.ref.exists(self.spark):
            return False
        files = self.frame().where(F.col("job") == job).inputFiles()
        if len(files) < COMPACT_AT_FILES:
            return False
        with write_lock(self.ref):
            self.ref.optimize(self.spark, f"`job` = {sql_string(job)}")
        return True

    def claim(
        self,
        units: Sequence[Mapping[dt.date, tuple[PartitionState, PartitionState | None]]],
        *,
        above: int = 0,
    ) -> list[dict[dt.date, PartitionState]]:
        """Record ``running`` claims atomically; return, per unit, the claims that were won.

        Each unit maps a partition to (the running state to record, the newest state the
        claimant read, or None). A claim is inserted only if the partition has no row
        newer than that read, so a claim based on a stale read loses. The won claims of
        each unit get the unit's number, the next above every one the job holds and
        above ``above`` (the newest unit number a table's log holds for the job, once a
        commit was skipped as older: the ledger may have been lost or rebuilt).
        """
        claims = [c for unit in units for c in unit.values()]
        if not claims:
            return [{} for _ in units]
        job = claims[0][0].job
        if needs_lock(self.ref):
            return self._claim_under_lock(job, units, above)
        self.ensure()
        return self._claim_by_merge(job, units, above)

    def _claim_under_lock(
        self,
        job: str,
        units: Sequence[Mapping[dt.date, tuple[PartitionState, PartitionState | None]]],
        above: int = 0,
    ) -> list[dict[dt.date, PartitionState]]:
        """The compare-and-swap on a local ledger: every writer of it holds its write lock
        (:mod:`framework.lake.locks`), so nothing is recorded between this read and the
        append. One read and one blind append: a MERGE would cost the same read, a join
        and a commit, and it is the heaviest code a run that writes only new partitions
        would load into its JVM."""
        with write_lock(self.ref):
            newest = self.states(job)[job]
            numbered = _numbered(units, newest, above)
            won = [
                new
                for unit in numbered
                for p, (new, seen) in unit.items()
                if not _newer(newest.get(p), seen)
            ]
            recorded = {state.partition: state for state in self.record(won)}
            return [{p: recorded[p] for p in unit if p in recorded} for unit in numbered]

    def _claim_by_merge(
        self,
        job: str,
        units: Sequence[Mapping[dt.date, tuple[PartitionState, PartitionState | None]]],
        above: int = 0,
    ) -> list[dict[dt.date, PartitionState]]:
        """The compare-and-swap where Delta arbitrates commits (Unity Catalog, cloud
        storage): a MERGE that inserts a claim only if no newer row matches it.

        Two runners that claim at once can number their units alike; the second one's
        target commit is then skipped by Delta as already seen, and that runner claims
        its partitions again under a new number (:class:`~framework.core.errors.FencedError`).
        """
        now = utcnow()
        numbered = _numbered(units, self.states(job)[job], above)
        rows = []
        for new, seen in (c for unit in numbered for c in unit.values()):
            row = dict(zip(LEDGER_SCHEMA.fieldNames(), _to_row(new, now), strict=True))
            row["_seen_attempt"] = seen.attempt if seen else None
            row["_seen_seq"] = seen.seq if seen else None
            row["_seen_at"] = seen.recorded_at if seen else None
            rows.append(row)
        schema = StructType(
            [
                *LEDGER_SCHEMA.fields,
                StructField("_seen_attempt", IntegerType()),
                StructField("_seen_seq", IntegerType()),
                StructField("_seen_at", TimestampType()),
            ]
        )
        source = self.spark.createDataFrame(
            [tuple(r[name] for name in schema.fieldNames()) for r in rows], schema
        )
        newer = (
            "s._seen_attempt IS NULL OR t.attempt > s._seen_attempt"
            " OR (t.attempt = s._seen_attempt AND t.seq > s._seen_seq)"
            " OR (t.attempt = s._seen_attempt AND t.seq = s._seen_seq"
            " AND t.recorded_at > s._seen_at)"
        )
        on = (
            f"t.job = {sql_string(job)} AND t.job = s.job"
            f" AND t.`partition` = s.`partition` AND ({newer})"
        )
        present = set(self.frame().columns)  # a claim sets none of the newer columns
        columns = [quoted(name) for name in LEDGER_SCHEMA.fieldNames() if name in present]
        with write_lock(self.ref):
            self.ref.merge(
                self.spark,
                source,
                on,
                f"WHEN NOT MATCHED THEN INSERT ({', '.join(columns)})"
                f" VALUES ({', '.join(f's.{name}' for name in columns)})",
            )
        newest = self.states(job)[job]
        return [
            {
                p: newest[p]
                for p, (new, _) in unit.items()
                if p in newest
                and newest[p].run_id == new.run_id
                and newest[p].attempt == new.attempt
            }
            for unit in numbered
        ]


def _numbered(
    units: Sequence[Mapping[dt.date, tuple[PartitionState, PartitionState | None]]],
    newest: Mapping[dt.date, PartitionState],
    above: int = 0,
) -> list[dict[dt.date, tuple[PartitionState, PartitionState | None]]]:
    """The claims with their units' numbers: the next ones above ``above`` and every
    number in ``newest``.

    A partition's newest row holds the highest unit number it was ever claimed in (later
    claims only add higher ones), so the maximum over the newest rows is the maximum
    over the job's whole history."""
    base = max([above, *(s.unit or 0 for s in newest.values())])
    return [
        {p: (dataclasses.replace(new, unit=base + i), seen) for p, (new, seen) in unit.items()}
        for i, unit in enumerate(units, start=1)
    ]


def _order(state: PartitionState) -> tuple[int, int, int]:
    """A state's place in its partition's history: (attempt, seq, recorded_at in µs)."""
    assert state.recorded_at is not None
    at = state.recorded_at
    if at.tzinfo is None:  # as Spark returns it: the local wall clock
        at = at.astimezone()
    return state.attempt, state.seq, (at - _EPOCH) // dt.timedelta(microseconds=1)


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def _newer(current: PartitionState | None, seen: PartitionState | None) -> bool:
    """Whether the ledger recorded something for the partition after ``seen``, the newest
    state the claimant read (None: it read nothing for the partition)."""
    if current is None:
        return False
    return seen is None or _order(current) > _order(seen)


def _to_row(state: PartitionState, now: dt.datetime) -> tuple[object, ...]:
    values: Mapping[str, object] = {
        **dataclasses.asdict(state),
        "seq": state.seq,
        "recorded_at": state.recorded_at or now,
        "error_message": (state.error_message or None)
        and str(state.error_message)[:ERROR_MESSAGE_LIMIT],
    }
    return tuple(values[name] for name in LEDGER_SCHEMA.fieldNames())
