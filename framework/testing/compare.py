"""What "recovered" means: the lakehouse holds exactly what an uninterrupted run wrote.

:func:`reference_run` runs a job uninterrupted, in-process, and keeps what it wrote (a
:class:`Reference`). After a crash and a rerun, :func:`assert_recovered` compares a
lakehouse with it: the ledger, the target row by row, the quarantine. :func:`diff_rows`,
:func:`ledger_problems` and :func:`quarantine_problems` are its parts, for callers that
count differences instead of failing (the soak).

Example::

    reference = reference_run(spark, new_lake(tmp_path / "ref", landing, JOB).config, dates, JOB)
    ...  # kill a child run on another lakehouse, then
    rerun(spark, lake, dates)
    assert_recovered(spark, lake, reference)
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from framework.core.config import Config, LakehouseConfig
from framework.core.keys import KEY_COLUMN
from framework.engine.job import Job
from framework.engine.runner import RunObserver, RunReport, RunRequest, run_job
from framework.lake.sinks import AUDIT_COLUMNS
from framework.lake.tables import Lakehouse
from framework.state.ledger import COMPLETE, Ledger
from framework.testing.lakes import Lake

COUNTS = ("rows_read", "rows_written", "rows_rejected", "rows_duplicate")


def without_audit(df: DataFrame) -> DataFrame:
    """``df`` without the columns that differ from run to run (``_run_id``,
    ``_processed_at``)."""
    return df.drop(*AUDIT_COLUMNS)


def assert_same_rows(actual: DataFrame, expected: DataFrame) -> None:
    """Whole-table equality of every non-audit column, in any row order."""
    assert_df_equality(
        without_audit(actual).select(*sorted(without_audit(actual).columns)),
        without_audit(expected).select(*sorted(without_audit(expected).columns)),
        ignore_row_order=True,
        ignore_nullable=True,
    )


# ---------------------------------------------------------------- the reference


@dataclass(frozen=True)
class Reference:
    """What an uninterrupted run of ``job`` wrote: the target's rows, quarantine rows
    and ledger counts of ``dates``.

    The rows are collected and rebuilt with their schema, so the reference does not
    depend on files that a test might delete.
    """

    dates: tuple[dt.date, ...]
    silver: DataFrame
    quarantine: tuple[tuple[dt.date, str | None, str], ...]
    counts: dict[dt.date, dict[str, int]]
    job: Job

    def restricted(self, dates: Iterable[dt.date]) -> Reference:
        """The reference of ``dates`` only (each must be one of its dates)."""
        keep = tuple(sorted(set(dates)))
        missing = set(keep) - set(self.dates)
        assert not missing, f"the reference has no run for {sorted(missing)}"
        return Reference(
            keep,
            self.silver.where(F.col(self.job.partition_column).isin(list(keep))),
            tuple(q for q in self.quarantine if q[0] in keep),
            {d: c for d, c in self.counts.items() if d in keep},
            self.job,
        )


def frozen_frame(spark: SparkSession, df: DataFrame) -> DataFrame:
    """``df``'s rows, collected: a frame that no longer reads any file."""
    return spark.createDataFrame(df.collect(), df.schema)


def run_in_process(
    spark: SparkSession,
    lakehouse: Lakehouse,
    job: Job,
    dates: Sequence[dt.date],
    observers: Sequence[RunObserver] = (),
) -> RunReport:
    """``run_job`` over ``dates`` in this process, as a child's ``ninelives run`` would
    run it (a watermark job: its windows up to the last date); fails unless it exits 0.
    Crash tests rerun this way: the same planning, healing, lease takeover and writes as
    the command line, in the test's warm session, which saves a JVM start."""
    if job.watermark_start is not None:
        request = RunRequest(partitions=(), until=max(dates))
    else:
        request = RunRequest.for_dates(dates)
    report = run_job(spark, lakehouse, job, request, observers=observers)
    assert report.exit_code == 0, [(r.partition, r.state, r.error_message) for r in report.results]
    return report


def rerun(
    spark: SparkSession,
    lake: Lake,
    dates: Sequence[dt.date],
    observers: Sequence[RunObserver] = (),
) -> RunReport:
    """The rerun after a crash, in-process (:func:`run_in_process`)."""
    return run_in_process(spark, lake.lakehouse, lake.job, dates, observers)


def reference_run(
    spark: SparkSession, config: Config, dates: Sequence[dt.date], job: Job
) -> Reference:
    """Run ``job`` in-process, uninterrupted, into ``config``'s lakehouse; return what
    the lakehouse then holds for ``dates``.

    Partitions are independent, so the lakehouse may already hold some of ``dates``
    from an earlier uninterrupted run (a snapshot of it can serve as a template).
    """
    run_in_process(spark, Lakehouse(config.lakehouse), job, dates)
    return read_reference(spark, config, dates, job)


def read_reference(
    spark: SparkSession, config: Config, dates: Sequence[dt.date], job: Job
) -> Reference:
    """What ``config``'s lakehouse holds for ``dates``, written by an uninterrupted run."""
    lakehouse = Lakehouse(config.lakehouse)
    keep = sorted(set(dates))
    silver = (
        lakehouse.table(job.sink.table).read(spark).where(F.col(job.partition_column).isin(keep))
    )
    rejects = lakehouse.framework_table(f"quarantine_{job.name}")
    rows = rejects.read(spark).collect() if rejects.exists(spark) else []  # none rejected
    quarantine = tuple((r.partition, r.raw, r.reason) for r in rows if r.partition in keep)
    states = Ledger(spark, lakehouse.framework_table("ledger")).states(job.name)[job.name]
    counts = {d: {n: getattr(states[d], n) for n in COUNTS} for d in keep}
    return Reference(tuple(keep), frozen_frame(spark, silver), quarantine, counts, job)


# ---------------------------------------------------------------- recovered?


def _lakehouse_config(where: Lake | Config | LakehouseConfig) -> LakehouseConfig:
    if isinstance(where, Lake):
        return where.config.lakehouse
    if isinstance(where, Config):
        return where.lakehouse
    return where


@dataclass(frozen=True)
class RowDiff:
    """How a target differs from the reference, row by row, keyed on ``_key``."""

    rows: int
    duplicates: int
    missing: int
    mismatched: int
    examples: tuple[str, ...] = ()

    @property
    def clean(self) -> bool:
        return not (self.duplicates or self.missing or self.mismatched)


def diff_rows(
    actual: DataFrame, expected: DataFrame, partition_column: str | None = None
) -> RowDiff:
    """Count duplicates (rows beyond the first of each ``_key``), missing reference keys
    and mismatched rows (a non-audit column differs, or a key the reference lacks).
    Examples name each row's partition when ``partition_column`` is given."""
    actual, expected = without_audit(actual), without_audit(expected)
    columns = sorted(c for c in expected.columns if c != KEY_COLUMN)
    stats = actual.agg(
        F.count(F.lit(1)).alias("rows"), F.count_distinct(KEY_COLUMN).alias("keys")
    ).first()
    assert stats is not None
    a, e = actual.alias("a"), expected.alias("e")
    joined = a.join(e, F.col(f"a.{KEY_COLUMN}") == F.col(f"e.{KEY_COLUMN}"), "full_outer")
    same = F.lit(True)
    for c in columns:
        same = same & F.col(f"a.{c}").eqNullSafe(F.col(f"e.{c}"))
    a_key, e_key = F.col(f"a.{KEY_COLUMN}"), F.col(f"e.{KEY_COLUMN}")
    missing = e_key.isNotNull() & a_key.isNull()
    mismatched = a_key.isNotNull() & (e_key.isNull() | ~same)
    counts = joined.agg(
        F.sum(missing.cast("int")).alias("missing"),
        F.sum(mismatched.cast("int")).alias("mismatched"),
    ).first()
    assert counts is not None
    if not (counts["missing"] or counts["mismatched"]):
        return RowDiff(
            rows=stats["rows"], duplicates=stats["rows"] - stats["keys"], missing=0, mismatched=0
        )
    where = (
        [
            F.col(f"a.{partition_column}").alias("actual_partition"),
            F.col(f"e.{partition_column}").alias("expected_partition"),
        ]
        if partition_column
        else []
    )
    examples = tuple(
        str(r.asDict())
        for r in joined.where(missing | mismatched)
        .select(
            F.coalesce(a_key, e_key).alias(KEY_COLUMN),
            *where,
            F.when(missing, "missing").otherwise("mismatched").alias("problem"),
        )
        .limit(5)
        .collect()
    )
    return RowDiff(
        rows=stats["rows"],
        duplicates=stats["rows"] - stats["keys"],
        missing=counts["missing"] or 0,
        mismatched=counts["mismatched"] or 0,
        examples=examples,
    )


def ledger_problems(
    spark: SparkSession, where: Lake | Config | LakehouseConfig, reference: Reference
) -> list[str]:
    """Requested partitions not complete, or whose counts do not add up or differ from
    the reference's (a record lost or counted twice)."""
    lakehouse = Lakehouse(_lakehouse_config(where))
    job = reference.job.name
    states = Ledger(spark, lakehouse.framework_table("ledger")).states(job)[job]
    problems = []
    for day in reference.dates:
        state = states.get(day)
        if state is None or state.state != COMPLETE:
            problems.append(f"{day} is {state.state if state else 'missing'} in the ledger")
            continue
        got = {n: getattr(state, n) for n in COUNTS}
        read, written, rejected, duplicate = (got[n] for n in COUNTS)
        if None in got.values() or read != written + rejected + duplicate:
            problems.append(f"ledger counts of {day} do not add up: {got}")
        elif got != reference.counts[day]:
            problems.append(
                f"ledger counts of {day} differ from the uninterrupted run: "
                f"{got} != {reference.counts[day]}"
            )
    return problems


def quarantine_problems(
    spark: SparkSession, where: Lake | Config | LakehouseConfig, reference: Reference
) -> list[str]:
    """Quarantine rows that differ from the reference's (partition, raw, reason), or a
    partition whose rows come from more than one attempt."""
    lakehouse = Lakehouse(_lakehouse_config(where))
    quarantine = lakehouse.framework_table(f"quarantine_{reference.job.name}")
    rows = quarantine.read(spark).collect() if quarantine.exists(spark) else []
    actual, expected = (
        Counter((r.partition, r.raw, r.reason) for r in rows),
        Counter(reference.quarantine),
    )
    problems = []
    if actual != expected:
        problems.append(
            f"quarantine differs from the uninterrupted run: extra {dict(actual - expected)}, "
            f"missing {dict(expected - actual)}"
        )
    # A partition in chunks: each chunk's rows from one attempt (a rerun resumes it).
    attempts: dict[tuple[dt.date, int | None], set[tuple[str, int]]] = {}
    for r in rows:
        attempts.setdefault((r.partition, r.asDict().get("chunk")), set()).add(
            (r.run_id, r.attempt)
        )
    mixed = {str(d): sorted(a) for d, a in attempts.items() if len(a) > 1}
    if mixed:
        problems.append(f"quarantine partitions hold rows of several attempts: {mixed}")
    return problems


def target_frame(
    spark: SparkSession, where: Lake | Config | LakehouseConfig, job: Job
) -> DataFrame:
    """``job``'s target table in the lakehouse ``where``."""
    return Lakehouse(_lakehouse_config(where)).table(job.sink.table).read(spark)


def assert_recovered(
    spark: SparkSession, where: Lake | Config | LakehouseConfig, reference: Reference
) -> None:
    """The lakehouse holds exactly what the uninterrupted ``reference`` run wrote.

    * every requested partition is ``complete`` in the ledger, and its counts add up
      (read = written + rejected + duplicate) and equal the reference's;
    * the target has no duplicate ``_key``, no missing one, nothing outside the
      reference's partitions, and equals the reference in every non-audit column
      (``_key`` and ``_row_hash`` included; any row order);
    * the quarantine holds exactly the reference's (partition, raw, reason) rows, each
      partition's from a single attempt.
    """
    root = Lakehouse(_lakehouse_config(where)).root
    problems = ledger_problems(spark, where, reference)
    problems += quarantine_problems(spark, where, reference)
    job = reference.job
    target = target_frame(spark, where, job)
    diff = diff_rows(target, reference.silver, job.partition_column)
    if not diff.clean:
        problems.append(f"target differs from the uninterrupted run: {diff}")
    assert not problems, f"{root} did not recover:\n  " + "\n  ".join(problems)
    assert_same_rows(target, reference.silver)
