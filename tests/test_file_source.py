"""FileSource end to end through the runner: each format at its own path layout MERGEd
into a Delta target, csv's malformed rows quarantined with their reason, a corrupt file
failing its date or quarantined whole, a late file making a date stale, a date bigger
than a unit in chunks, and a kill -9 and rerun of a csv job.

Every file here lacks its date but in its path, so the jobs take it from
``date_column`` (the json files carry theirs)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import gzip
import json
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DateType, DecimalType, StringType, StructField, StructType

from framework import FileSource, Job, MergeSink, SourceMissingError, UsageError
from framework.core.config import Config
from framework.engine.runner import stale_partitions
from framework.lake.quarantine import quarantine_table
from framework.lake.sources.files import MALFORMED_REASONS
from framework.lake.tables import Lakehouse
from framework.ops import native
from framework.state.ledger import COMPLETE, FAILED
from framework.testing import crash_test
from tests.helpers import job_states, run_date

D = dt.date(2024, 1, 15)
COLUMNS = ("order_id", "customer", "amount", "ordered_at")
ORDER_SCHEMA = StructType(
    [
        StructField("order_id", StringType()),
        StructField("customer", StringType()),
        StructField("amount", DecimalType(12, 2)),
        StructField("ordered_at", StringType()),
    ]
)
ROWS = [
    ("O-1", "C-1", "10.50", "2024-01-15T08:00:00"),
    ("O-2", "C-2", "3.00", "2024-01-15T09:30:00"),
    ("O-3", "C-1", "7.25", "2024-01-15T23:59:59"),
    ("O-4", "C-3", "1.00", "2024-01-15T00:00:00"),
]


def typed(df: DataFrame) -> DataFrame:
    """The orders' columns as the target holds them."""
    return df.select(
        "order_id",
        "customer",
        F.col("amount").cast("decimal(12,2)").alias("amount"),
        F.col("ordered_at").cast("timestamp").alias("ordered_at"),
        F.col("order_date").cast("date").alias("order_date"),
    )


def parse_text(df: DataFrame) -> DataFrame:
    """``text`` lines ``id;customer;amount;ordered_at``."""
    parts = F.split("value", ";")
    return typed(df.select(*(parts[i].alias(c) for i, c in enumerate(COLUMNS)), "order_date"))


def orders_job(source: FileSource, transform: Callable[[DataFrame], DataFrame] = typed) -> Job:
    return Job(
        name="orders_files",
        source=source,
        transform=transform,
        key=("order_id", "order_date"),
        partition_column="order_date",
        sink=MergeSink("silver.orders"),
    )


def csv_lines(rows: Sequence[tuple[str, ...]]) -> str:
    return ",".join(COLUMNS) + "\n" + "".join(",".join(r) + "\n" for r in rows)


def spark_rows(spark: SparkSession, rows: Sequence[tuple[str, ...]]) -> DataFrame:
    strings = StructType([StructField(c, StringType()) for c in COLUMNS])
    df = spark.createDataFrame(rows, strings)
    return df.select(
        "order_id",
        "customer",
        F.col("amount").cast("decimal(12,2)").alias("amount"),
        F.col("ordered_at").cast("timestamp").alias("ordered_at"),
    )


def expected(spark: SparkSession, rows: Sequence[tuple[str, ...]] = ROWS) -> DataFrame:
    return typed(spark_rows(spark, rows).withColumn("order_date", F.lit(D)))


def target(spark: SparkSession, config: Config) -> DataFrame:
    df = Lakehouse(config.lakehouse).table("silver.orders").read(spark)
    return df.select(*(c for c in df.columns if not c.startswith("_")))


def assert_target(spark: SparkSession, config: Config, rows=ROWS) -> None:
    assert_df_equality(
        target(spark, config),
        expected(spark, rows),
        ignore_row_order=True,
        ignore_nullable=True,
        ignore_column_order=True,
    )


def landing(config: Config) -> Path:
    return Path(Lakehouse(config.lakehouse).landing_path())


def write_spark(spark: SparkSession, fmt: str, folder: Path) -> None:
    spark_rows(spark, ROWS).coalesce(1).write.format(fmt).mode("overwrite").save(str(folder))


# (format, template, how its files are written under the landing root or tmp_path, options)
def land_parquet(spark, config, tmp_path) -> FileSource:
    """Absolute Hive-style folder, the files' own schema."""
    write_spark(spark, "parquet", tmp_path / "exports" / f"dt={D}")
    return FileSource("parquet", f"{tmp_path}/exports/dt={{date}}/", date_column="order_date")


def land_avro(spark, config, tmp_path) -> FileSource:
    """A folder named by the ISO date, under the landing root."""
    write_spark(spark, "avro", landing(config) / "avro" / D.isoformat())
    return FileSource("avro", "avro/{date}", date_column="order_date")


def land_csv(spark, config, tmp_path) -> FileSource:
    """A glob of gzipped csv files with a header; another file beside them is not read."""
    folder = landing(config) / "csv" / D.strftime("%Y%m%d")
    folder.mkdir(parents=True)
    (folder / "part-0.csv.gz").write_bytes(gzip.compress(csv_lines(ROWS[:2]).encode()))
    (folder / "part-1.csv.gz").write_bytes(gzip.compress(csv_lines(ROWS[2:]).encode()))
    (folder / "README.txt").write_text("not an export\n")
    return FileSource(
        "csv",
        "csv/{date:%Y%m%d}/*.csv.gz",
        schema=ORDER_SCHEMA,
        options={"header": True},
        date_column="order_date",
    )


def land_json(spark, config, tmp_path) -> FileSource:
    """A strftime folder; the lines carry their date."""
    folder = landing(config) / "json" / D.strftime("%Y/%m/%d")
    folder.mkdir(parents=True)
    lines = [json.dumps({**dict(zip(COLUMNS, r, strict=True)), "order_date": str(D)}) for r in ROWS]
    (folder / "orders.jsonl").write_text("".join(f"{line}\n" for line in lines))
    schema = StructType([*ORDER_SCHEMA.fields, StructField("order_date", DateType())])
    return FileSource("json", "json/{date:%Y/%m/%d}/", schema=schema)


def land_text(spark, config, tmp_path) -> FileSource:
    """A recursive glob: files at any depth under the day's folder."""
    day = landing(config) / "text" / D.strftime("%Y/%m/%d")
    for i, sub in enumerate(["", "a", "b/c", "b/d"]):
        (day / sub).mkdir(parents=True, exist_ok=True)
        (day / sub / f"orders-{i}.txt").write_text(";".join(ROWS[i]) + "\n")
    return FileSource("text", "text/{date:%Y/%m/%d}/**/*.txt", date_column="order_date")


LANDERS = {
    "parquet": land_parquet,
    "avro": land_avro,
    "csv": land_csv,
    "json": land_json,
    "text": land_text,
}


@pytest.mark.parametrize("fmt", list(LANDERS))
def test_each_format_is_read_at_its_path_layout_and_merged(spark, config, tmp_path, fmt) -> None:
    source = LANDERS[fmt](spark, config, tmp_path)
    job = orders_job(source, parse_text if fmt == "text" else typed)
    state = run_date(spark, config, job, D)
    assert (state.state, state.rows_read, state.rows_written) == (COMPLETE, 4, 4), (
        state.error_message
    )
    assert_target(spark, config)
    assert state.fingerprint == source.listing_fingerprint(Lakehouse(config.lakehouse), D)


def test_templates_resolve_under_the_landing_root_or_as_given(tmp_path) -> None:
    lake = Lakehouse(Config().with_lakehouse_root(str(tmp_path)).lakehouse)
    landing_root = lake.landing_path()
    hive = FileSource("parquet", "orders/dt={date}/")
    assert hive.location(lake, D) == f"{landing_root}/orders/dt=2024-01-15/"
    glob = FileSource("csv", "x/{date:%Y%m%d}/*.csv.gz", schema=ORDER_SCHEMA)
    assert glob.location(lake, D) == f"{landing_root}/x/20240115/*.csv.gz"
    assert FileSource("avro", "/in/{date:%Y/%m/%d}").location(lake, D) == "/in/2024/01/15"
    s3 = FileSource("parquet", "s3a://b/raw/{date:%Y/%m/%d}/**/part-*.parquet")
    assert s3.location(lake, D) == "s3a://b/raw/2024/01/15/**/part-*.parquet"
    assert FileSource("text", "t/{date}").listing_fingerprint(lake, D) is None

    with pytest.raises(UsageError, match="does not depend on the date"):
        FileSource("parquet", "raw/**/part-*.parquet")
    with pytest.raises(UsageError, match="not a template of the date"):
        FileSource("parquet", "raw/{day}/")
    with pytest.raises(UsageError, match="a csv file source needs a schema"):
        FileSource("csv", "raw/{date}/")
    with pytest.raises(UsageError, match="is not one of: parquet, csv, json, text, avro"):
        FileSource("orc", "raw/{date}/")


def test_no_files_for_a_date_is_a_missing_source(spark, config) -> None:
    lake = Lakehouse(config.lakehouse)
    source = FileSource("csv", "csv/{date:%Y%m%d}/*.csv", schema=ORDER_SCHEMA)
    with pytest.raises(SourceMissingError, match=r"no source files for 2024-01-15 at .*/20240115/"):
        source.read(spark, lake, D)
    assert source.fingerprint(spark, lake, D) is None


# A value of the wrong type, too few fields, too many fields.
MALFORMED = [
    "O-7,C-7,twelve,2024-01-15T10:00:00",
    "O-8,C-8",
    "O-9,C-9,1.00,2024-01-15T10:00:00,surplus",
]


def test_malformed_csv_rows_are_quarantined_and_a_late_file_makes_the_date_stale(
    spark, config
) -> None:
    folder = landing(config) / "csv" / D.strftime("%Y%m%d")
    folder.mkdir(parents=True)
    (folder / "part-0.csv").write_text(csv_lines(ROWS[:2]) + "".join(f"{m}\n" for m in MALFORMED))
    source = FileSource(
        "csv",
        "csv/{date:%Y%m%d}/*.csv",
        schema=ORDER_SCHEMA,
        options={"header": True},
        date_column="order_date",
    )
    job = orders_job(source)
    state = run_date(spark, config, job, D)
    assert (state.state, state.rows_read, state.rows_written, state.rows_rejected) == (
        COMPLETE,
        5,
        2,
        3,
    ), state.error_message
    assert_target(spark, config, ROWS[:2])
    lake = Lakehouse(config.lakehouse)
    rejects = quarantine_table(lake, job.name).read(spark).collect()
    assert sorted((r.raw, r.reason) for r in rejects) == sorted(
        (m, MALFORMED_REASONS["csv"]) for m in MALFORMED
    )

    states = job_states(spark, config, job.name)
    assert stale_partitions(spark, lake, job, states, [D]) == set()
    (folder / "part-1.csv").write_text(csv_lines(ROWS[2:]))  # a late file
    assert stale_partitions(spark, lake, job, states, [D]) == {D}
    assert native.stale(lake, job, states, [D]) == {D}  # and without a JVM


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def corrupt_parquet(spark, config, tmp_path) -> tuple[FileSource, Path]:
    """A truncated parquet file first in name order: Spark fails reading its footer
    while it infers the schema."""
    folder = landing(config) / "pq" / str(D)
    write_spark(spark, "parquet", folder)
    [good] = folder.glob("part-*.parquet")
    bad = folder / "a-truncated.parquet"
    shutil.copy(good, bad)
    truncate(bad)
    return FileSource("parquet", "pq/{date}", date_column="order_date"), bad


def test_a_corrupt_file_fails_its_date_naming_it_or_is_quarantined_whole(
    spark, config, tmp_path
) -> None:
    """A truncated parquet file; a cut gzip is the same path through FileSource, which
    tests/test_failures.py takes with JsonLinesSource's files."""
    source, bad = corrupt_parquet(spark, config, tmp_path)
    job = orders_job(source)
    failed = run_date(spark, config, job, D)
    assert (failed.state, failed.attempt) == (FAILED, 1), failed.error_message
    assert "FAILED_READ_FILE" in failed.error_class, failed.error_class
    assert f"{bad}" in failed.error_message and "\n" not in failed.error_message

    quarantining = dataclasses.replace(job, corrupt_files="quarantine")
    state = run_date(spark, config, quarantining, D)
    assert (state.state, state.rows_read, state.rows_written, state.rows_rejected) == (
        COMPLETE,
        len(ROWS) + 1,
        len(ROWS),
        1,
    ), state.error_message
    assert_target(spark, config)
    [quarantined] = quarantine_table(Lakehouse(config.lakehouse), job.name).read(spark).collect()
    assert quarantined.raw.endswith(str(bad)), quarantined.raw
    assert quarantined.reason.startswith("unreadable file, quarantined whole: ")


def test_a_date_bigger_than_a_unit_is_processed_in_chunks_of_its_files(spark, config) -> None:
    source = land_csv(spark, config, Path())
    files = source.files(spark, Lakehouse(config.lakehouse), D)
    assert len(files) == 2
    unit = max(f.size for f in files)  # one file per chunk
    state = run_date(spark, config, orders_job(source), D, unit_bytes=unit)
    assert (state.state, state.chunks, state.chunks_committed) == (COMPLETE, 2, 2), (
        state.error_message
    )
    assert state.rows_written == len(ROWS)
    assert_target(spark, config)


# The kill -9 case: a module-level job (a child process imports it), reading csv by a
# date template, with a malformed row so that its quarantine commits before the target.
CSV_ORDERS = orders_job(
    FileSource(
        "csv",
        "exports/{date:%Y/%m/%d}/*.csv",
        schema=ORDER_SCHEMA,
        options={"header": True},
        date_column="order_date",
    )
)


@pytest.mark.timeout(600)
def test_a_csv_file_source_job_survives_kill_9_and_rerun(spark, tmp_path) -> None:
    root = tmp_path / "landing"
    folder = root / "exports" / D.strftime("%Y/%m/%d")
    folder.mkdir(parents=True)
    (folder / "orders.csv").write_text(csv_lines(ROWS) + f"{MALFORMED[0]}\n")
    report = crash_test(
        spark,
        CSV_ORDERS,
        root,
        [D],
        tmp_path / "crash",
        points=[f"after_rejects_commit@{D}"],
        random_kills=0,
    )
    assert [(c.name, c.killed, c.recovered) for c in report.cases] == [
        (f"after_rejects_commit@{D}", True, True)
    ]
