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

from collections.abc import Callable
from dataclasses import dataclass

from pyspark.sql import DataFrame

from framework.errors import UsageError
from framework.sinks import MergeSink, ReplaceSink
from framework.sources import Source
from framework.tables import IDENTIFIER, checked_identifier

Transform = Callable[[DataFrame], DataFrame]


def identity(df: DataFrame) -> DataFrame:
    return df


@dataclass(frozen=True)
class Job:
    """A named pipeline over date partitions.

    :param name: the job's name, an identifier; also its name on the CLI.
    :param source: reads one partition (:mod:`framework.sources`).
    :param transform: a pure ``DataFrame -> DataFrame`` function over the parsed rows.
    :param key: columns of the transform's output that identify a row within the target.
    :param partition_column: the date column the target is partitioned by; every output
        row must carry the partition being processed, others go to quarantine.
    :param sink: :class:`~framework.sinks.MergeSink` or :class:`~framework.sinks.ReplaceSink`.
    :param order_by: tie-break among rows with the same key: the greatest wins (then the
        greatest row hash, so the choice is the same on every rerun).
    :param depends_on: jobs whose same partition must be complete first.
    :param allow_empty: a partition whose source has no rows may complete with 0 rows.
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
    description: str = ""

    def __post_init__(self) -> None:
        if not IDENTIFIER.match(self.name):
            raise UsageError(f"invalid job name {self.name!r}: use letters, digits and underscores")
        if not self.key:
            raise UsageError(f"job {self.name}: key must name at least one column")
        for column in (*self.key, self.partition_column, *self.order_by):
            checked_identifier(column, f"column name in job {self.name}")

    @property
    def txn_app_id(self) -> str:
        """Prefix of the Delta transaction id; one id per job and partition."""
        return f"ninelives:{self.name}"
