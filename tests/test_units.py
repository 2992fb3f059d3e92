"""Work units: many dates in one Spark pass and one commit per table, each date its own
state, counts and error; the kill -9 side is in test_crash.py."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pytest
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from framework.core.config import Config, ConfigError, config_from_mapping, parse_size
from framework.engine.runner import RunReport, RunRequest, pack
from framework.lake.commits import CommitTag, write_marker
from framework.lake.quarantine import quarantine_table
from framework.lake.tables import Lakehouse
from framework.state.ledger import COMPLETE, FAILED
from framework.testing import assert_same_rows, commit_operations, tagged_commits
from jobs.orders_daily import JOB as ORDERS
from tests.helpers import ledger_of, run

# The core suite: run again through Spark Connect (pytest --connect).
pytestmark = pytest.mark.connect

D1, D2, D3 = DATES = [dt.date(2024, 1, 1), dt.date(2024, 1, 2), dt.date(2024, 1, 3)]


def beside(config: Config, tmp_path: Path, name: str) -> Config:
    """Another lakehouse over the same landing files."""
    return dataclasses.replace(
        config, lakehouse=dataclasses.replace(config.lakehouse, root=str(tmp_path / name))
    )


def target(spark, config: Config) -> DataFrame:
    return Lakehouse(config.lakehouse).table(ORDERS.sink.table).read(spark)


def rejects(spark, config: Config) -> DataFrame:
    table = quarantine_table(Lakehouse(config.lakehouse), ORDERS.name).read(spark)
    return table.select("partition", "raw", "reason", "attempt")


def outcome(report: RunReport) -> dict:
    """Each date's state, attempt and counts."""
    return {r.partition: (r.state, r.attempt, r.counts()) for r in report.results}


def test_a_backfill_is_one_unit_one_commit_per_table_and_each_dates_own_counts(
    spark, sample_config, tmp_path
) -> None:
    together = run(spark, sample_config, ORDERS, DATES)
    alone_config = beside(sample_config, tmp_path, "alone")
    alone = run(spark, alone_config, ORDERS, DATES, unit_partitions=1)

    assert outcome(together) == outcome(alone)
    assert {r.state for r in together.results} == {COMPLETE}
    assert len({r.unit for r in together.results}) == 1
    assert len({r.unit for r in alone.results}) == 3
    assert_same_rows(target(spark, sample_config), target(spark, alone_config))
    assert_same_rows(rejects(spark, sample_config), rejects(spark, alone_config))

    lake = Lakehouse(sample_config.lakehouse)
    for ref in (lake.table(ORDERS.sink.table), quarantine_table(lake, ORDERS.name)):
        [(_, _, meta)] = tagged_commits(Path(str(ref.path)))
        assert sorted(meta["partitions"]) == [d.isoformat() for d in DATES]
    # The claim of the unit (which creates the ledger) and every date's complete row
    # (and the compaction Delta's auto-compact adds, which is no write of ours).
    ledger = commit_operations(Path(str(lake.framework_table("ledger").path)))
    assert [op for _, op in ledger if op != "OPTIMIZE"] == ["WRITE"] * 2, ledger


def fragile_orders(bad_day: dt.date):
    """orders_daily with a transform whose Python UDF raises on one date's rows."""

    def transform(df: DataFrame) -> DataFrame:
        @F.udf("string")
        def checked(day, source_id):
            if day == bad_day.isoformat():
                raise ValueError(f"no source_id can be parsed on {day}")
            return source_id

        out = ORDERS.transform(df)
        return out.withColumn("source_id", checked(F.col("order_date").cast("string"), "source_id"))

    return dataclasses.replace(ORDERS, transform=transform)


def test_a_date_whose_rows_break_the_transform_fails_alone_once_its_unit_is_split(
    spark, sample_config, tmp_path
) -> None:
    """The UDF's error fails the unit's one pass; halves, then single dates, find it."""
    report = run(spark, sample_config, fragile_orders(D2), DATES)
    assert [(r.partition, r.state, r.attempt) for r in report.results] == [
        (D1, COMPLETE, 2),  # [D1, D2, D3] failed, then [D1] and [D2, D3]
        (D2, FAILED, 3),  # then [D2] and [D3]
        (D3, COMPLETE, 3),
    ]
    failed = report.results[1]
    assert "ValueError: no source_id can be parsed on 2024-01-02" in failed.error_message
    reference = beside(sample_config, tmp_path, "reference")
    run(spark, reference, ORDERS, [D1, D3])
    assert_same_rows(target(spark, sample_config), target(spark, reference))
    ledger = ledger_of(spark, sample_config)
    history = ledger.frame().where(F.col("state") == FAILED).select("partition", "attempt")
    assert sorted((r.partition, r.attempt) for r in history.collect()) == [
        (D1, 1),
        (D2, 1),
        (D2, 2),
        (D2, 3),
        (D3, 1),
        (D3, 2),
    ]


def test_a_date_without_source_fails_alone_and_its_neighbours_share_one_commit(
    spark, sample_config
) -> None:
    landing = Path(sample_config.lakehouse.landing) / "orders" / f"order_date={D2}"
    for f in landing.iterdir():
        f.unlink()
    report = run(spark, sample_config, ORDERS, DATES)
    assert [(r.partition, r.state, r.attempt) for r in report.results] == [
        (D1, COMPLETE, 1),
        (D2, FAILED, 1),
        (D3, COMPLETE, 1),
    ]
    assert report.results[1].error_class == "SourceMissingError"
    path = Path(str(Lakehouse(sample_config.lakehouse).table(ORDERS.sink.table).path))
    [(_, _, meta)] = tagged_commits(path)
    assert sorted(meta["partitions"]) == [D1.isoformat(), D3.isoformat()]


def test_a_unit_skipped_for_a_newer_number_is_claimed_again_above_it(
    spark, sample_config, tmp_path
) -> None:
    """The target's log holds unit 50 of the job (a runner of other dates numbered
    higher, or a ledger rebuilt from scratch): Delta skips this run's unit 2, and the run
    claims its dates again as unit 51 instead of failing them. Unit 2's rejects, which
    committed before its target write was skipped, are replaced by unit 51's."""
    run(spark, sample_config, ORDERS, [D3])
    lake = Lakehouse(sample_config.lakehouse)
    ref = lake.table(ORDERS.sink.table)
    marker = CommitTag.single(ORDERS.name, D3, "other", 50, 2)
    write_marker(spark, ref, ref.read(spark), ORDERS.partition_column, marker)

    report = run(spark, sample_config, ORDERS, [D1, D2])
    assert [(r.partition, r.state, r.attempt, r.unit) for r in report.results] == [
        (D1, COMPLETE, 2, 51),
        (D2, COMPLETE, 2, 51),
    ]
    fenced = ledger_of(spark, lake).frame().where(F.col("state") == FAILED).collect()
    assert {(r.partition, r.attempt, r.error_class) for r in fenced} == {
        (D1, 1, "FencedError"),
        (D2, 1, "FencedError"),
    }
    reference = beside(sample_config, tmp_path, "reference")
    run(spark, reference, ORDERS, DATES)
    assert_same_rows(target(spark, sample_config), target(spark, reference))
    quarantined = rejects(spark, sample_config)
    attempts = quarantined.where(F.col("partition") != D3).select("partition", "attempt")
    assert sorted(attempts.distinct().collect()) == [(D1, 2), (D2, 2)]
    assert_same_rows(quarantined.drop("attempt"), rejects(spark, reference).drop("attempt"))


def test_dates_are_packed_in_order_by_input_bytes_and_count(spark, sample_config) -> None:
    lake = Lakehouse(sample_config.lakehouse)
    sizes = [ORDERS.source.size(spark, lake, d) for d in DATES]  # type: ignore[attr-defined]
    assert all(sizes)

    def units(**options) -> list:
        return pack(spark, lake, ORDERS, DATES[::-1], RunRequest.for_dates(DATES, **options))

    assert units() == [tuple(DATES)]
    assert units(unit_partitions=2) == [(D1, D2), (D3,)]
    assert units(unit_bytes=sizes[0] + sizes[1]) == [(D1, D2), (D3,)]
    assert units(unit_bytes=1) == [(D1,), (D2,), (D3,)]  # a bigger date is a unit alone


def test_unit_sizes_read_as_bytes_and_a_bad_one_is_a_config_error() -> None:
    assert [parse_size(s) for s in ("512MB", "2GB", "1048576", "1.5K", "3 gb")] == [
        512 << 20,
        2 << 30,
        1 << 20,
        1536,
        3 << 30,
    ]
    with pytest.raises(ConfigError, match=r"run\.unit_size.*not a size: 'lots'"):
        config_from_mapping({"run": {"unit_size": "lots"}}, source="x.toml")
    with pytest.raises(ConfigError, match=r"run\.max_partitions_per_unit"):
        config_from_mapping({"run": {"max_partitions_per_unit": 0}}, source="x.toml")
