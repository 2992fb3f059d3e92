"""The declaration of a job: how to read a partition, a pure transform, where to write.

Example::

    JOB = Job(
        name="orders_daily",
        source=JsonLinesSource("orders", RAW_ORDER_SCHEMA, partition_column="order_date"),
        transform=normalise_orders,
        key=("source_id", "order_date", "event_type"),
        partition_column="order_date",
        sink=MergeSink("silver.orders"),
        order_by=("ingested_at",),
    )
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from pyspark.sql import DataFrame

from framework.core.errors import UsageError
from framework.core.expectations import Expectation
from framework.core.names import IDENTIFIER, checked_identifier, checked_table_name
from framework.lake.sinks import MergeSink, ReplaceSink
from framework.lake.sources import Source

Transform = Callable[[DataFrame], DataFrame]
SCHEMA_DRIFT = ("fail", "evolve", "ignore")
CORRUPT_FILES = ("fail", "quarantine")


def identity(df: DataFrame) -> DataFrame:
    return df


@dataclass(frozen=True)
class Job:
    """A named pipeline over date partitions.

    :param name: the job's name, an identifier; also its name on the CLI.
    :param source: reads one partition (:mod:`framework.lake.sources`).
    :param transform: a pure ``DataFrame -> DataFrame`` function over the parsed rows.
    :param key: columns of the transform's output that identify a row within the target.
    :param partition_column: the date column the target is partitioned by; every output
        row must carry the partition being processed, others go to quarantine.
    :param sink: :class:`~framework.MergeSink` or :class:`~framework.ReplaceSink`.
    :param order_by: tie-break among rows with the same key: the greatest wins (then the
        greatest row hash, so the choice is the same on every rerun).
    :param depends_on: jobs whose same partition must be complete first.
    :param allow_empty: a partition whose source has no files or no rows may complete
        with 0 rows; otherwise that partition fails with SourceMissingError.
    :param expectations: rules on the transformed rows (:mod:`framework.core.expectations`).
    :param max_reject_ratio: a partition with a larger share of rejected rows fails
        (its rejects are still quarantined) instead of completing.
    :param schema_drift: what a transform output that differs from the target does:
        ``fail`` (default), ``evolve`` (new columns are added to the target) or
        ``ignore`` (new columns dropped, missing ones NULL). A changed type always fails.
    :param corrupt_files: what an input file Spark cannot read (truncated, corrupt, a
        checksum mismatch) does: ``fail`` (default) fails the partition naming the file;
        ``quarantine`` quarantines the whole file (its path and the reason, counted as
        one record read and rejected) and processes the partition's other files.
    :param max_attempts: attempts per work unit and run for transient errors (Delta
        write conflicts, I/O errors), with exponential backoff and jitter.
    :param watermark_start: makes this an incremental (watermark) job over daily
        windows of an append-only source, starting at this date. Its watermark is the
        first window that is not complete; a run without dates processes the windows
        from the watermark on, and a window behind it is only rerun with ``force``.
    :param chunks: a partition whose input is bigger than a work unit is processed in
        chunks of its files, each one commit, and a rerun after a crash processes only
        the chunks not committed (:mod:`framework.engine.chunks`). Set False when the transform
        needs a partition's rows all at once (a window or an aggregate over the day);
        ``ReplaceSink`` jobs are never chunked.
    :param cache: cache a unit's staged rows, which its count and its write both read.
        Where the session refuses caching (Databricks serverless), a run goes on without
        it, asking once per session; ``False`` never asks, and the input is then read
        twice. A source with malformed rows to tell apart (JSON, CSV) is cached all the
        same, as it must be read once to be counted right (on serverless such a date
        fails, naming the refusal).
    :param lookback_days: every run also reprocesses the complete partitions of the N
        days before the newest requested date, to pick up late data (idempotent:
        unchanged rows are not rewritten).
    """

    name: str
    source: Source
    key: tuple[str, ...]
    partition_column: str
    sink: MergeSink | ReplaceSink
    transform: Transform = identity
    order_by: tuple[str, ...] = ()
    depends_on: tuple[str, ...] = ()
    allow_empty: bool = False
    expectations: tuple[Expectation, ...] = ()
    max_reject_ratio: float = 1.0
    schema_drift: str = "fail"
    corrupt_files: str = "fail"
    max_attempts: int = 3
    lookback_days: int = 0
    watermark_start: dt.date | None = None
    chunks: bool = True
    cache: bool = True

    def __post_init__(self) -> None:
        if not IDENTIFIER.match(self.name):
            raise UsageError(f"invalid job name {self.name!r}: use letters, digits and underscores")
        if not self.key:
            raise UsageError(f"job {self.name}: key must name at least one column")
        for column in (*self.key, self.partition_column, *self.order_by):
            checked_identifier(column, f"column name in job {self.name}")
        checked_table_name(self.sink.table)
        if self.schema_drift not in SCHEMA_DRIFT:
            raise UsageError(
                f"job {self.name}: schema_drift {self.schema_drift!r} is not one of: "
                f"{', '.join(SCHEMA_DRIFT)}"
            )
        if self.corrupt_files not in CORRUPT_FILES:
            raise UsageError(
                f"job {self.name}: corrupt_files {self.corrupt_files!r} is not one of: "
                f"{', '.join(CORRUPT_FILES)}"
            )
        if not 0 <= self.max_reject_ratio <= 1:
            raise UsageError(f"job {self.name}: max_reject_ratio must be between 0 and 1")
        if self.lookback_days < 0:
            raise UsageError(f"job {self.name}: lookback_days must be >= 0")
        if self.max_attempts < 1:
            raise UsageError(f"job {self.name}: max_attempts must be at least 1")
