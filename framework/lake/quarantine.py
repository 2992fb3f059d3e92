"""The quarantine: every rejected source record, with the reason and the run that rejected it.

Each job has its own quarantine table, ``<framework schema>.quarantine_<job>``,
partitioned by ``partition``. A unit's rejects are written in one commit with the same
``replaceWhere`` + transaction id as a target, so a rerun replaces its partitions'
quarantine rows and never appends them twice. When every partition written is at its
first attempt (no earlier attempt can have quarantined anything for it) the rejects are
appended instead, with the same transaction id and tag: same rows, one commit, without
a scan for rows to replace.

Example::

    ninelives quarantine orders_daily --date 2024-01-15
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

from framework.lake.commits import CommitResult, CommitTag, tagged_save
from framework.lake.sinks import append_partitions, replace_partitions
from framework.lake.tables import Lakehouse, TableRef

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


CHUNK_COLUMN = "chunk"
"""Rows of a partition processed in chunks carry their chunk's number (a column added
by the first such write, NULL in every other row)."""


def as_quarantine_rows(
    df: DataFrame, raw: Column, reason: Column, partition: Column, tag: CommitTag
) -> DataFrame:
    """Shape rejected rows of any schema into :data:`QUARANTINE_SCHEMA`; ``partition``
    says which of the unit's partitions a row was read for."""
    attempts = F.create_map(*(F.lit(x) for p, a in sorted(tag.attempts.items()) for x in (p, a)))
    chunk = [] if tag.chunk is None else [F.lit(tag.chunk).cast("int").alias(CHUNK_COLUMN)]
    return df.select(
        partition.alias("partition"),
        raw.cast("string").alias("raw"),
        reason.cast("string").alias("reason"),
        F.lit(tag.job).alias("job"),
        F.lit(tag.run_id).alias("run_id"),
        attempts[partition].cast("int").alias("attempt"),
        F.current_timestamp().alias("quarantined_at"),
        *chunk,
    )


def write_quarantine(
    spark: SparkSession, ref: TableRef, rejects: DataFrame, tag: CommitTag, *, first: bool = False
) -> CommitResult:
    """Replace the quarantine rows of ``tag``'s partitions with ``rejects`` in one commit.

    ``first``: every one of them is at its first attempt ever (the ledger had no state
    for it when it was claimed), so the quarantine holds no rows of them and a tagged
    append does the same as the replace. A zombie's later append is fenced off by the
    transaction id like any write.
    """
    if tag.chunk:
        return _write_chunk(spark, ref, rejects, tag)
    if first and tag.chunk is None:
        return append_partitions(spark, ref, rejects, "partition", tag)
    if first:  # chunk 0, whose rows add the chunk column
        writer = rejects.write.mode("append").option("mergeSchema", "true")
        return tagged_save(spark, ref, writer, rejects.schema, "partition", tag)
    return replace_partitions(spark, ref, rejects, "partition", tag, evolve=tag.chunk is not None)


def _write_chunk(
    spark: SparkSession, ref: TableRef, rejects: DataFrame, tag: CommitTag
) -> CommitResult:
    """The rejects of a chunk after the first: they replace that chunk's rows (an attempt
    that died after this commit and before the target's left them), and nothing else of
    the partition. Chunk 0 replaces the whole partition (:func:`write_quarantine`)."""
    if not ref.exists(spark) or CHUNK_COLUMN not in ref.read(spark).columns:
        writer = rejects.write.mode("append").option("mergeSchema", "true")
    else:
        [partition] = tag.partitions
        writer = (
            rejects.write.mode("overwrite")
            .option("mergeSchema", "true")
            .option(
                "replaceWhere",
                f"partition = DATE'{partition}' AND {CHUNK_COLUMN} = {int(tag.chunk or 0)}",
            )
        )
    return tagged_save(spark, ref, writer, rejects.schema, "partition", tag)
