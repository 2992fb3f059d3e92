"""TableSource end to end through the runner: a day of an unpartitioned Delta table by a
TIMESTAMP column (the half-open day, its fingerprint moved only by a commit that touches
the day), of a lakehouse table partitioned by another column, of a catalog table, and a
kill -9 and rerun of a job that reads one."""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from framework import Job, MergeSink, SchemaMismatchError, SourceMissingError, TableSource
from framework.core.config import Config
from framework.engine.runner import stale_partitions
from framework.lake.tables import Lakehouse
from framework.state.ledger import COMPLETE
from framework.testing import crash_test
from tests.helpers import job_states, run_date

D = dt.date(2024, 1, 15)
# (id, region, amount, event_ts): the day's bounds and the instants just outside them.
BEFORE = [("E-0", "eu", "1.00", "2024-01-14 23:59:59.999999")]
DAY = [
    ("E-1", "eu", "2.00", "2024-01-15 00:00:00"),
    ("E-2", "us", "3.50", "2024-01-15 12:30:00"),
    ("E-3", "us", "4.25", "2024-01-15 23:59:59.999999"),
]
AFTER = [("E-4", "eu", "5.00", "2024-01-16 00:00:00")]


def events(spark: SparkSession, rows: Sequence[tuple[str, ...]]) -> DataFrame:
    df = spark.createDataFrame(
        list(rows), "event_id string, region string, amount string, ts string"
    )
    return df.select(
        "event_id",
        "region",
        F.col("amount").cast("decimal(12,2)").alias("amount"),
        F.col("ts").cast("timestamp").alias("event_ts"),
    )


def with_date(df: DataFrame) -> DataFrame:
    return df.withColumn("event_date", F.to_date("event_ts"))


def events_job(source: TableSource) -> Job:
    return Job(
        name="events_daily",
        source=source,
        transform=lambda df: with_date(df.drop("event_date")),
        key=("event_id", "event_date"),
        partition_column="event_date",
        sink=MergeSink("silver.events"),
    )


def append(spark: SparkSession, where: str, rows, **options) -> None:
    """One commit of ``rows`` (one file) to the Delta table at ``where``."""
    events(spark, rows).coalesce(1).write.format("delta").mode("append").options(**options).save(
        where
    )


def assert_target(spark: SparkSession, config: Config, rows) -> None:
    target = Lakehouse(config.lakehouse).table("silver.events").read(spark)
    assert_df_equality(
        target.select("event_id", "region", "amount", "event_ts", "event_date"),
        with_date(events(spark, rows)),
        ignore_row_order=True,
        ignore_nullable=True,
    )


def test_a_timestamp_column_selects_the_half_open_day_of_an_unpartitioned_table(
    spark, config, tmp_path
) -> None:
    table = str(tmp_path / "events")
    for rows in (BEFORE, DAY, AFTER):  # a file each, so statistics can skip the others
        append(spark, table, rows)
    source = TableSource(table, date_column="event_ts")
    job = events_job(source)
    state = run_date(spark, config, job, D)
    assert (state.state, state.rows_read, state.rows_written) == (COMPLETE, 3, 3), (
        state.error_message
    )
    assert_target(spark, config, DAY)

    lake = Lakehouse(config.lakehouse)
    states = job_states(spark, config, job.name)
    assert state.fingerprint == source.fingerprint(spark, lake, D)
    append(spark, table, [("E-5", "eu", "6.00", "2024-01-17 08:00:00")])  # another day's
    assert stale_partitions(spark, lake, job, states, [D]) == set()
    append(spark, table, [("E-6", "us", "7.00", "2024-01-15 18:00:00")])  # the day's
    assert stale_partitions(spark, lake, job, states, [D]) == {D}


def test_a_date_column_selects_the_day_of_a_table_partitioned_by_another(spark, config) -> None:
    path = Lakehouse(config.lakehouse).table("bronze.events").path
    assert path is not None
    rows = [*BEFORE, *DAY, *AFTER]
    with_date(events(spark, rows)).write.format("delta").partitionBy("region").save(path)
    job = events_job(TableSource("bronze.events", date_column="event_date"))
    state = run_date(spark, config, job, D)
    assert (state.state, state.rows_read, state.rows_written) == (COMPLETE, 3, 3), (
        state.error_message
    )
    assert_target(spark, config, DAY)


@pytest.fixture
def schema_in_catalog(spark: SparkSession, tmp_path: Path) -> Iterator[str]:
    """A schema of the session's catalog, its tables' files under this test's folder."""
    name = f"ninelives_{uuid.uuid4().hex[:8]}"
    spark.sql(f"CREATE SCHEMA spark_catalog.{name} LOCATION '{tmp_path / name}'")
    yield name
    spark.sql(f"DROP SCHEMA spark_catalog.{name} CASCADE")


def test_a_catalog_table_by_its_three_part_name(spark, config, schema_in_catalog) -> None:
    name = f"spark_catalog.{schema_in_catalog}.events"
    events(spark, [*BEFORE, *DAY, *AFTER]).write.format("delta").saveAsTable(name)
    job = events_job(TableSource(name, date_column="event_ts"))
    state = run_date(spark, config, job, D)
    assert (state.state, state.rows_written) == (COMPLETE, 3), state.error_message
    assert_target(spark, config, DAY)


def test_a_missing_table_or_column_is_named(spark, config, tmp_path) -> None:
    lake = Lakehouse(config.lakehouse)
    missing = TableSource("spark_catalog.default.ninelives_no_such_table", "event_ts")
    with pytest.raises(SourceMissingError, match="ninelives_no_such_table` does not exist"):
        missing.read(spark, lake, D)
    assert missing.fingerprint(spark, lake, D) is None
    at_path = TableSource(str(tmp_path / "nothing"), "event_ts")
    with pytest.raises(SourceMissingError, match=f"{tmp_path}/nothing does not exist"):
        at_path.read(spark, lake, D)

    parquet = str(tmp_path / "parquet")
    events(spark, [*DAY, *AFTER]).write.parquet(parquet)
    assert TableSource(parquet, "event_ts", format="parquet").read(spark, lake, D).count() == 3
    with pytest.raises(SchemaMismatchError, match="has no column order_ts to select 2024-01-15"):
        TableSource(parquet, "order_ts", format="parquet").read(spark, lake, D)
    with pytest.raises(SchemaMismatchError, match="column amount is decimal"):
        TableSource(parquet, "amount", format="parquet").read(spark, lake, D)


# The kill -9 case. A child process imports this module and finds the job by name; the
# source table's path is this test's, so the job is made on access, from the variable.
TABLE_VARIABLE = "NINELIVES_TEST_EVENTS_TABLE"


def __getattr__(name: str) -> Job:
    if name == "EVENTS_DAILY":
        return events_job(TableSource(os.environ[TABLE_VARIABLE], date_column="event_ts"))
    raise AttributeError(name)


@pytest.mark.timeout(600)
def test_a_table_source_job_survives_kill_9_and_rerun(
    spark, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = str(tmp_path / "events")
    append(spark, table, [*BEFORE, *DAY, *AFTER])
    monkeypatch.setenv(TABLE_VARIABLE, table)
    report = crash_test(
        spark,
        __getattr__("EVENTS_DAILY"),
        tmp_path / "landing",
        [D],
        tmp_path / "crash",
        points=[f"after_target_commit@{D}"],
        random_kills=0,
        job_ref=f"{__name__}:EVENTS_DAILY",
    )
    assert [(c.name, c.killed, c.recovered) for c in report.cases] == [
        (f"after_target_commit@{D}", True, True)
    ]
