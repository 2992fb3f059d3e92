"""revenue_daily: a gold aggregate per order_date and currency, from silver.orders.

The whole date is recomputed from silver each time, so it is written with ``replace``
(``replaceWhere`` on the date). It depends on orders_daily being complete for the date.

Run it::

    spark-submit jobs/revenue_daily.py --date 2024-01-15
    ninelives run revenue_daily --date 2024-01-15
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from framework.engine.job import Job
from framework.lake.sinks import ReplaceSink
from framework.lake.sources import DeltaSource


def revenue_by_currency(orders: DataFrame) -> DataFrame:
    """Orders, paid revenue and cancellations per (order_date, currency)."""
    paid = F.col("event_type") == "paid"
    return orders.groupBy("order_date", "currency").agg(
        F.countDistinct("source_id").alias("orders"),
        F.coalesce(F.sum(F.when(paid, F.col("amount"))), F.lit(0))
        .cast("decimal(18,2)")
        .alias("paid_amount"),
        F.count(F.when(paid, 1)).alias("paid_orders"),
        F.count(F.when(F.col("event_type") == "cancelled", 1)).alias("cancelled_orders"),
    )


JOB = Job(
    name="revenue_daily",
    source=DeltaSource("silver.orders", partition_column="order_date"),
    transform=revenue_by_currency,
    key=("order_date", "currency"),
    partition_column="order_date",
    sink=ReplaceSink("gold.revenue_daily"),
    depends_on=("orders_daily",),
)


def main(argv: Sequence[str] | None = None) -> int:
    from framework.cli import main as cli_main

    return cli_main(["run", JOB.name, *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
