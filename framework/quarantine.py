"""The quarantine: every rejected source record, with the reason and the run that rejected it.

Each job has its own quarantine table, ``<framework schema>.quarantine_<job>``,
partitioned by ``partition``. A partition's rejects are written with the same
``replaceWhere`` + transaction id as a target, so a rerun replaces that partition's
quarantine rows and never appends them twice.

Example::

    ninelives quarantine orders_daily --date 2024-01-15     # (CLI, later issue)
    spark.read.format("delta").load("lakehouse/_ninelives/quarantine_orders_daily")
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    DateType,
    IntegerType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from framework.sinks import CommitResult, CommitTag, ReplaceSink
from framework.tables import Lakehouse, TableRef

QUARANTINE_SCHEMA = StructType(
    [
        StructField("partition", DateType(), False),
        StructField("raw", StringType(), True),
        StructField("reason", StringType(), False),
        StructField("job", StringType(), False),
        StructField("run_id", StringType(), False),
        StructField("attempt", IntegerType(), False),
        StructField("quarantined_at", TimestampType(), False),
    ]
)


def quarantine_table(lakehouse: Lakehouse, job: str) -> TableRef:
    return lakehouse.framework_table(f"quarantine_{job}")


def as_quarantine_rows(df: DataFrame, raw: Column, reason: Column, tag: CommitTag) -> DataFrame:
    """Shape rejected rows of any schema into :data:`QUARANTINE_SCHEMA`."""
    return df.select(
        F.lit(tag.partition).alias("partition"),
        raw.cast("string").alias("raw"),
        reason.cast("string").alias("reason"),
        F.lit(tag.job).alias("job"),
        F.lit(tag.run_id).alias("run_id"),
        F.lit(tag.attempt).cast("int").alias("attempt"),
        F.current_timestamp().alias("quarantined_at"),
    )


def write_quarantine(
    spark: SparkSession, ref: TableRef, rejects: DataFrame, tag: CommitTag
) -> CommitResult:
    """Replace the partition's quarantine rows with ``rejects`` in one tagged commit."""
    return ReplaceSink(ref.name).write(spark, ref, rejects, "partition", tag)
