"""The quarantine: every rejected source record, with the reason and the run that rejected it.

Each job has its own quarantine table, ``<framework schema>.quarantine_<job>``,
partitioned by ``partition``. A partition's rejects are written with the same
``replaceWhere`` + transaction id as a target, so a rerun replaces that partition's
quarantine rows and never appends them twice. The first attempt at a partition (no
earlier attempt can have quarantined anything for it) appends them instead, with the
same transaction id and tag: same rows, one commit, without a scan for rows to replace.

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

from framework.sinks import CommitResult, CommitTag, ReplaceSink, _tagged_save, ensure_table
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
    spark: SparkSession, ref: TableRef, rejects: DataFrame, tag: CommitTag, *, first: bool = False
) -> CommitResult:
    """Replace the partition's quarantine rows with ``rejects`` in one tagged commit.

    ``first``: this is the first attempt ever at the partition (the ledger had no state
    for it when it was claimed), so the quarantine holds no rows of it and a tagged
    append does the same as the replace. A zombie's later append is fenced off by the
    transaction id like any write.
    """
    if first:
        ensure_table(spark, ref, rejects, "partition")
        return _tagged_save(spark, ref, rejects.write.mode("append"), tag)
    return ReplaceSink(ref.name).write(spark, ref, rejects, "partition", tag)
