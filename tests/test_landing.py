"""The landing seeder: deterministic, laid out per date, and bad in exactly the stated ways."""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DecimalType

from jobs.landing import SAMPLE_START, SeedReport, malformed_per_day, sample_dates, seed_orders
from jobs.orders_daily import RAW_ORDER_SCHEMA, raw_order_schema

DAYS = 3
ROWS_PER_DAY = 200
KEY = ["source_id", "order_date", "event_type"]


@pytest.fixture(scope="module")
def seeded(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> SeedReport:
    """One seeding shared by the read-only tests: seeding costs more than reading."""
    root = tmp_path_factory.mktemp("landing")
    return seed_orders(spark, str(root), days=DAYS, rows_per_day=ROWS_PER_DAY)


@pytest.fixture(scope="module")
def parsed(spark: SparkSession, seeded: SeedReport) -> Iterator[DataFrame]:
    """The seeded lines as a job reads them, parsed once for the read-only tests."""
    df = read_permissive(spark, seeded.path)
    yield df
    df.unpersist()


@pytest.fixture(scope="module")
def good(parsed: DataFrame) -> DataFrame:
    return parsed.filter(F.col("_corrupt_record").isNull())


def read_lines(spark: SparkSession, path: str) -> DataFrame:
    """Raw lines with the folder's date, as the text reader sees them."""
    return spark.read.text(path).select(F.col("order_date").cast("string"), "value")


def sorted_lines(spark: SparkSession, path: str) -> list[tuple[str, str]]:
    return sorted((r.order_date, r.value) for r in read_lines(spark, path).collect())


def read_permissive(spark: SparkSession, path: str) -> DataFrame:
    # Cached because Spark refuses a query over raw JSON that references only the
    # corrupt-record column. raw_order_schema() is a copy: StructType.add mutates, and
    # RAW_ORDER_SCHEMA is shared with the job.
    return (
        spark.read.schema(raw_order_schema("_corrupt_record"))
        .option("mode", "PERMISSIVE")
        .option("columnNameOfCorruptRecord", "_corrupt_record")
        .json(path)
        .cache()
    )


def test_same_arguments_give_the_same_lines_and_reseeding_overwrites(
    spark: SparkSession, seeded: SeedReport, lakehouse: Path
) -> None:
    again = seed_orders(spark, str(lakehouse), days=DAYS, rows_per_day=ROWS_PER_DAY)
    assert again.lines_written == seeded.lines_written
    expected = sorted_lines(spark, seeded.path)
    assert len(expected) == seeded.lines_written
    assert sorted_lines(spark, again.path) == expected

    # Seeding over existing data replaces it rather than adding to it.
    third = seed_orders(spark, str(lakehouse), days=DAYS, rows_per_day=ROWS_PER_DAY)
    assert third == again
    assert sorted_lines(spark, again.path) == expected


def test_a_different_seed_gives_different_lines_of_the_same_shape(
    spark: SparkSession, seeded: SeedReport, lakehouse: Path
) -> None:
    other = seed_orders(spark, str(lakehouse), days=DAYS, rows_per_day=ROWS_PER_DAY, seed=7)
    ours = {r.value for r in read_lines(spark, seeded.path).collect()}
    theirs = {r.value for r in read_lines(spark, other.path).collect()}
    assert len(ours & theirs) == 0
    assert other.malformed_lines == seeded.malformed_lines
    assert other.lines_written == (
        DAYS * ROWS_PER_DAY + other.duplicate_lines + DAYS * malformed_per_day(ROWS_PER_DAY)
    )


def test_one_folder_per_date_holding_only_that_dates_lines(
    spark: SparkSession, lakehouse: Path
) -> None:
    # Across a leap day, to check the date arithmetic in Spark matches sample_dates.
    start = datetime.date(2024, 2, 28)
    report = seed_orders(spark, str(lakehouse), days=DAYS, rows_per_day=ROWS_PER_DAY, start=start)
    dates = sample_dates(DAYS, start)
    assert [d.isoformat() for d in dates] == ["2024-02-28", "2024-02-29", "2024-03-01"]
    assert report.path == str(lakehouse / "orders")

    folders = sorted(p.name for p in (lakehouse / "orders").iterdir() if p.is_dir())
    assert folders == [f"order_date={d.isoformat()}" for d in dates]
    for folder in folders:
        parts = [f for f in os.listdir(lakehouse / "orders" / folder) if f.startswith("part-")]
        assert parts, folder
        assert all(f.endswith(".txt") for f in parts)

    lines = read_lines(spark, report.path)
    in_line = F.regexp_extract("value", r'"order_date":"([0-9-]{10})"', 1)
    misplaced = lines.filter(in_line != F.col("order_date")).count()
    assert misplaced == 0
    assert lines.count() == report.lines_written

    # Landing "the next day" adds its folder and leaves the earlier days as they were.
    before = sorted_lines(spark, report.path)
    next_day = seed_orders(
        spark, str(lakehouse), days=1, rows_per_day=ROWS_PER_DAY, start=datetime.date(2024, 3, 2)
    )
    after = sorted_lines(spark, report.path)
    assert [line for line in after if line[0] != "2024-03-02"] == before
    assert len(after) == len(before) + next_day.lines_written


def test_permissive_read_finds_exactly_the_malformed_lines(
    parsed: DataFrame, seeded: SeedReport
) -> None:
    bad = parsed.filter(F.col("_corrupt_record").isNotNull())
    assert seeded.malformed_lines == DAYS * malformed_per_day(ROWS_PER_DAY) == DAYS
    assert bad.count() == seeded.malformed_lines
    per_day = {r.order_date: r["count"] for r in bad.groupBy("order_date").count().collect()}
    assert per_day == {d.isoformat(): malformed_per_day(ROWS_PER_DAY) for d in sample_dates(DAYS)}
    # Both kinds occur: a truncated line parses to nothing, a wrongly typed one keeps
    # its other fields and loses only the amount.
    truncated = bad.filter(F.col("source_id").isNull()).count()
    wrong_type = bad.filter(
        F.col("source_id").isNotNull()
        & F.col("amount").isNull()
        & F.col("_corrupt_record").contains('"amount":"twelve"')
    ).count()
    assert truncated >= 1
    assert wrong_type >= 1
    assert truncated + wrong_type == seeded.malformed_lines


def test_each_day_has_rows_per_day_distinct_good_keys(
    spark: SparkSession, seeded: SeedReport, good: DataFrame
) -> None:
    per_day = good.select(*KEY).distinct().groupBy("order_date").count()
    expected = spark.createDataFrame(
        [(d.isoformat(), ROWS_PER_DAY) for d in sample_dates(DAYS)],
        "order_date string, count long",
    )
    assert_df_equality(per_day, expected, ignore_row_order=True, ignore_nullable=True)
    assert good.count() == DAYS * ROWS_PER_DAY + seeded.duplicate_lines
    assert good.filter(F.col("amount").isNull()).count() == 0


def test_duplicates_are_copies_or_later_corrections(seeded: SeedReport, good: DataFrame) -> None:
    unchanged = [c for c in RAW_ORDER_SCHEMA.fieldNames() if c not in ("amount", "ingested_at")]
    groups = (
        good.groupBy(*KEY)
        .agg(
            F.count(F.lit(1)).alias("n"),
            F.countDistinct(F.to_json(F.struct(*RAW_ORDER_SCHEMA.fieldNames()))).alias("lines"),
            F.countDistinct(F.to_json(F.struct(*unchanged))).alias("others"),
            F.max_by("amount", "ingested_at").alias("latest_amount"),
            F.min_by("amount", "ingested_at").alias("first_amount"),
            F.countDistinct("ingested_at").alias("exports"),
        )
        .filter("n > 1")
        .collect()
    )
    assert seeded.duplicate_lines > 0
    # Every re-delivered event comes exactly twice, so groups == extra lines.
    assert len(groups) == seeded.duplicate_lines
    assert all(g.n == 2 and g.others == 1 for g in groups)
    copies = [g for g in groups if g.lines == 1]
    corrections = [g for g in groups if g.lines == 2]
    assert copies
    assert corrections
    assert len(copies) + len(corrections) == len(groups)
    # A correction is a later export with another amount: keeping the latest by
    # ingested_at is what tells it from the first delivery.
    assert all(g.exports == 2 and g.latest_amount != g.first_amount for g in corrections)


def test_event_and_export_times_are_consistent(
    spark: SparkSession, seeded: SeedReport, good: DataFrame
) -> None:
    event_at = F.to_timestamp("event_ts", "yyyy-MM-dd'T'HH:mm:ss.SSSXXX")
    ingested_at = F.to_timestamp("ingested_at", "yyyy-MM-dd'T'HH:mm:ss.SSSX")
    violations = good.filter(
        event_at.isNull()
        | ingested_at.isNull()
        | (F.substring("event_ts", 1, 10) != F.col("order_date"))
        | ~F.substring("event_ts", 24, 6).isin("+00:00", "+01:00", "-05:00")
        | (ingested_at <= event_at)
        | ~F.col("ingested_at").endswith("Z")
        | ~F.col("currency").isin("EUR", "USD", "GBP")
        | ~F.col("event_type").isin("created", "paid", "shipped", "cancelled")
        | ~F.col("source_id").rlike(r"^ORD-[0-9]{10}$")
        | ~F.col("customer_id").rlike(r"^C-[0-9]{6}$")
    )
    assert violations.count() == 0
    offsets = {r.o for r in good.select(F.substring("event_ts", 24, 6).alias("o")).collect()}
    assert offsets == {"+00:00", "+01:00", "-05:00"}
    # Amounts are JSON numbers with two decimals in every well-formed line.
    well_formed = read_lines(spark, seeded.path).filter(
        F.col("value").endswith("}") & ~F.col("value").contains('"amount":"twelve"')
    )
    assert well_formed.count() == seeded.lines_written - seeded.malformed_lines
    two_decimals = F.col("value").rlike(r'"amount":[0-9]+\.[0-9]{2},')
    assert well_formed.filter(~two_decimals).count() == 0


def test_report_counts_match_the_files(spark: SparkSession, seeded: SeedReport) -> None:
    assert seeded.days == DAYS
    assert seeded.rows_per_day == ROWS_PER_DAY
    assert read_lines(spark, seeded.path).count() == seeded.lines_written
    assert seeded.lines_written == (
        DAYS * ROWS_PER_DAY + seeded.duplicate_lines + seeded.malformed_lines
    )


def test_defaults_and_validation(spark: SparkSession, lakehouse: Path) -> None:
    assert sample_dates() == [SAMPLE_START + datetime.timedelta(days=i) for i in range(7)]
    assert malformed_per_day(99) == 0
    assert malformed_per_day(100) == 1
    assert malformed_per_day(1500) == 3
    with pytest.raises(ValueError, match="rows_per_day"):
        seed_orders(spark, str(lakehouse), days=1, rows_per_day=0)
    assert not (lakehouse / "orders").exists()


def test_raw_order_schema_copies_do_not_touch_the_shared_schema() -> None:
    names = [
        "source_id",
        "order_date",
        "event_type",
        "event_ts",
        "customer_id",
        "amount",
        "currency",
        "ingested_at",
    ]
    with_corrupt = raw_order_schema("_corrupt_record")
    assert with_corrupt.fieldNames() == [*names, "_corrupt_record"]
    assert raw_order_schema() == RAW_ORDER_SCHEMA
    assert RAW_ORDER_SCHEMA.fieldNames() == names
    assert RAW_ORDER_SCHEMA["amount"].dataType == DecimalType(12, 2)
