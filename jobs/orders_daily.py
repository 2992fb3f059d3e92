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

from framework.expectations import accepted_values, in_range, matches, not_null
from framework.job import Job
from framework.sinks import MergeSink
from framework.sources import JsonLinesSource
from jobs.landing import RAW_ORDER_SCHEMA

EVENT_TYPES = ("created", "paid", "shipped", "cancelled")
CURRENCIES = ("EUR", "USD", "GBP")


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
    description="raw order events -> silver.orders, merged by (order_date, key)",
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
