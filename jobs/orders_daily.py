"""orders_daily: one day of raw order events from the landing folder into silver.orders.

Source: JSON lines under ``<landing>/orders/order_date=YYYY-MM-DD/``, as the source
system exports them, re-delivered duplicates and malformed lines included. The job
normalises types and keys each event on (source_id, order_date, event_type); of several
deliveries of one event the latest ``ingested_at`` wins. Malformed lines go to the
quarantine with their parse error, and so do events that break an expectation (unknown
event type or currency, negative amount, missing timestamps, a malformed source_id).

Run it::

    spark-submit jobs/orders_daily.py --date 2024-01-15
    ninelives run orders_daily --date 2024-01-15
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import DecimalType, StringType, StructField, StructType

from framework.core.expectations import accepted_values, in_range, matches, not_null
from framework.engine.job import Job
from framework.lake.sinks import MergeSink
from framework.lake.sources import JsonLinesSource

EVENT_TYPES = ("created", "paid", "shipped", "cancelled")
CURRENCIES = ("EUR", "USD", "GBP")


RAW_ORDER_SCHEMA = StructType(
    [
        StructField("source_id", StringType()),
        StructField("order_date", StringType()),
        StructField("event_type", StringType()),
        StructField("event_ts", StringType()),
        StructField("customer_id", StringType()),
        StructField("amount", DecimalType(12, 2)),
        StructField("currency", StringType()),
        StructField("ingested_at", StringType()),
    ]
)
"""The schema of the landing JSON lines this job reads (``jobs.landing`` writes them).

Timestamps stay strings: parsing them (offsets, the ``Z``) is the job's business, and
a reader that parsed them here would silently null out a bad one instead of
quarantining it. ``StructType.add`` mutates in place, and even
``StructType(RAW_ORDER_SCHEMA.fields)`` shares the field list, so a reader that needs
a corrupt-record column should take :func:`raw_order_schema` instead of adding to
this shared object.
"""


def raw_order_schema(corrupt_record_column: str | None = None) -> StructType:
    """A fresh copy of :data:`RAW_ORDER_SCHEMA`, optionally with a string column for
    ``columnNameOfCorruptRecord``.

    Example::

        spark.read.schema(raw_order_schema("_corrupt_record"))
            .option("mode", "PERMISSIVE")
            .option("columnNameOfCorruptRecord", "_corrupt_record")
            .json(report.path)
    """
    schema = StructType(list(RAW_ORDER_SCHEMA.fields))
    if corrupt_record_column is not None:
        schema = schema.add(corrupt_record_column, StringType())
    return schema


def normalise_orders(df: DataFrame) -> DataFrame:
    """Raw strings -> typed, trimmed, canonical values. Pure: DataFrame -> DataFrame."""
    return df.select(
        F.trim("source_id").alias("source_id"),
        F.col("order_date").try_cast("date").alias("order_date"),
        F.lower(F.trim("event_type")).alias("event_type"),
        # The export writes offsets (+01:00, Z): the cast reads them as instants. try_cast:
        # an unreadable time becomes NULL, which the not-null rules send to quarantine,
        # instead of an ANSI cast error failing the whole partition.
        F.col("event_ts").try_cast("timestamp").alias("event_ts"),
        F.trim("customer_id").alias("customer_id"),
        F.col("amount").cast("decimal(12,2)").alias("amount"),
        F.upper(F.trim("currency")).alias("currency"),
        F.col("ingested_at").try_cast("timestamp").alias("ingested_at"),
    )


JOB = Job(
    name="orders_daily",
    source=JsonLinesSource("orders", RAW_ORDER_SCHEMA, partition_column="order_date"),
    transform=normalise_orders,
    key=("source_id", "order_date", "event_type"),
    partition_column="order_date",
    sink=MergeSink("silver.orders"),
    order_by=("ingested_at",),
    expectations=(
        not_null("source_id"),
        matches("source_id", r"^ORD-[0-9]{10}$"),
        accepted_values("event_type", EVENT_TYPES),
        accepted_values("currency", CURRENCIES),
        in_range("amount", minimum=0),
        not_null("event_ts"),
        not_null("ingested_at"),
    ),
    # A broken export (most lines unreadable) fails instead of completing nearly empty.
    max_reject_ratio=0.05,
)


def main(argv: Sequence[str] | None = None) -> int:
    """``spark-submit jobs/orders_daily.py --date D`` == ``ninelives run orders_daily --date D``."""
    from framework.cli import main as cli_main

    return cli_main(["run", JOB.name, *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
