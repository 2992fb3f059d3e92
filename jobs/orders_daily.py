"""orders_daily: one day of raw order events from the landing folder into silver.orders.

Source: JSON lines under ``<landing>/orders/order_date=YYYY-MM-DD/``, as the source
system exports them, re-delivered duplicates and malformed lines included. The job
normalises types and keys each event on (source_id, order_date, event_type); of several
deliveries of one event the latest ``ingested_at`` wins. Malformed lines go to the
quarantine with their parse error.

Run it::

    spark-submit jobs/orders_daily.py --date 2024-01-15
    ninelives run orders_daily --date 2024-01-15
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from framework.job import Job
from framework.sinks import MergeSink
from framework.sources import JsonLinesSource
from jobs.landing import RAW_ORDER_SCHEMA


def normalise_orders(df: DataFrame) -> DataFrame:
    """Raw strings -> typed, trimmed, canonical values. Pure: DataFrame -> DataFrame."""
    return df.select(
        F.trim("source_id").alias("source_id"),
        F.to_date("order_date").alias("order_date"),
        F.lower(F.trim("event_type")).alias("event_type"),
        # The export writes offsets (+01:00, Z): the cast reads them as instants.
        F.col("event_ts").cast("timestamp").alias("event_ts"),
        F.trim("customer_id").alias("customer_id"),
        F.col("amount").cast("decimal(12,2)").alias("amount"),
        F.upper(F.trim("currency")).alias("currency"),
        F.col("ingested_at").cast("timestamp").alias("ingested_at"),
    )


JOB = Job(
    name="orders_daily",
    description="raw order events -> silver.orders, one MERGE per order_date",
    source=JsonLinesSource("orders", RAW_ORDER_SCHEMA, partition_column="order_date"),
    transform=normalise_orders,
    key=("source_id", "order_date", "event_type"),
    partition_column="order_date",
    sink=MergeSink("silver.orders"),
    order_by=("ingested_at",),
)


def main(argv: Sequence[str] | None = None) -> int:
    """``spark-submit jobs/orders_daily.py --date D`` == ``ninelives run orders_daily --date D``."""
    from framework.cli import main as cli_main

    return cli_main(["run", JOB.name, *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
