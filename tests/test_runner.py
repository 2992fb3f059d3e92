"""End to end over the sample landing data: plan, process, skip, force, fail, quarantine."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import shutil
from decimal import Decimal
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from framework.core.config import Config
from framework.core.keys import KEY_COLUMN
from framework.lake.tables import Lakehouse
from framework.state.ledger import COMPLETE, FAILED
from framework.testing import assert_same_rows, commit_operations
from jobs.orders_daily import JOB as ORDERS
from jobs.revenue_daily import JOB as REVENUE
from tests.helpers import delta_version, job_states, ledger_of, run

# The core suite: run again through Spark Connect (pytest --connect).
pytestmark = pytest.mark.connect

DATES = [dt.date(2024, 1, 1), dt.date(2024, 1, 2), dt.date(2024, 1, 3)]
KEY = ("source_id", "order_date", "event_type")


def landing_lines(config: Config, day: dt.date) -> list[str]:
    folder = Path(config.lakehouse.landing) / "orders" / f"order_date={day}"
    return [line for f in sorted(folder.glob("part-*")) for line in f.read_text().splitlines()]


def parse(line: str) -> dict | None:
    """What a correct reader keeps of one line: None for a malformed one."""
    try:
        event = json.loads(line)
        amount = Decimal(str(event["amount"]))
    except (ValueError, TypeError, ArithmeticError):
        return None
    return {**event, "amount": amount}


def expected_orders(config: Config, days: list[dt.date]) -> tuple[list[tuple], int, int]:
    """Latest delivery per key, computed in plain Python; plus malformed and dup counts."""
    latest: dict[tuple, dict] = {}
    malformed = total = 0
    for day in days:
        for line in landing_lines(config, day):
            event = parse(line)
            if event is None:
                malformed += 1
                continue
            total += 1
            key = tuple(event[k] for k in KEY)
            if key not in latest or event["ingested_at"] > latest[key]["ingested_at"]:
                latest[key] = event
    rows = [
        (
            e["source_id"],
            dt.date.fromisoformat(e["order_date"]),
            e["event_type"],
            e["customer_id"],
            e["amount"],
            e["currency"],
        )
        for e in latest.values()
    ]
    return rows, malformed, total - len(latest)


def silver(spark, config: Config):
    return Lakehouse(config.lakehouse).table("silver.orders").read(spark)


@pytest.mark.parametrize("cache", [True, False], ids=["cached", "uncached"])
def test_orders_daily_writes_each_event_once_latest_delivery_wins(
    spark, sample_config, cache: bool
) -> None:
    """Uncached too: ``Job(cache=False)``, as on compute that refuses ``persist``, stages
    its rows twice, once for the counts and again for the write, with the same result
    (its parsed JSON input stays cached: malformed rows are told apart once)."""
    report = run(spark, sample_config, dataclasses.replace(ORDERS, cache=cache), DATES)
    assert report.exit_code == 0
    rows, malformed, duplicates = expected_orders(sample_config, DATES)
    columns = ["source_id", "order_date", "event_type", "customer_id", "amount", "currency"]
    actual = silver(spark, sample_config).select(*columns)
    assert_same_rows(actual, spark.createDataFrame(rows, actual.schema))

    assert sum(r.rows_rejected for r in report.results) == malformed > 0
    assert sum(r.rows_duplicate for r in report.results) == duplicates > 0
    for state in report.results:
        assert state.state == COMPLETE
        assert state.rows_read == state.rows_written + state.rows_rejected + state.rows_duplicate
        assert state.rows_inserted == state.rows_written


def test_malformed_lines_land_in_quarantine_with_their_text(spark, sample_config) -> None:
    run(spark, sample_config, ORDERS, DATES)
    bad = sorted(
        (day, line)
        for day in DATES
        for line in landing_lines(sample_config, day)
        if parse(line) is None
    )
    quarantine = Lakehouse(sample_config.lakehouse).framework_table("quarantine_orders_daily")
    rows = quarantine.read(spark).collect()
    assert sorted((r.partition, r.raw) for r in rows) == bad
    assert all(r.reason.startswith("malformed record") and r.attempt == 1 for r in rows)


def test_a_line_appended_by_hand_is_quarantined_by_a_forced_rerun(spark, sample_config) -> None:
    """Sample files are plain files, as an exporter writes them (no checksum file
    beside them): editing one by hand, then ``--force``, quarantines just that line."""
    day = DATES[0]
    folder = Path(sample_config.lakehouse.landing) / "orders" / f"order_date={day}"
    assert not list(folder.glob(".*.crc")), sorted(p.name for p in folder.iterdir())
    run(spark, sample_config, ORDERS, [day])
    first = silver(spark, sample_config)
    before = spark.createDataFrame(first.collect(), first.schema)
    appended = '{"source_id": "ORD-9999999999", "order_date": "' + str(day) + '", "amount'
    with next(folder.glob("part-*")).open("a") as landing_file:
        landing_file.write(appended + "\n")

    forced = run(spark, sample_config, ORDERS, [day], force=True)
    assert [(r.state, r.rows_updated, r.rows_inserted) for r in forced.results] == [
        (COMPLETE, 0, 0)
    ]
    assert_same_rows(silver(spark, sample_config), before)
    quarantine = Lakehouse(sample_config.lakehouse).framework_table("quarantine_orders_daily")
    raws = [r.raw for r in quarantine.read(spark).where(F.col("attempt") == 2).collect()]
    assert appended in raws
    assert sorted(raws) == sorted(
        line for line in landing_lines(sample_config, day) if parse(line) is None
    )


def test_rerun_when_complete_reads_no_source_and_commits_nothing(spark, sample_config) -> None:
    run(spark, sample_config, ORDERS, DATES)
    lake = Lakehouse(sample_config.lakehouse)
    target, ledger = (
        Path(lake.table("silver.orders").path),
        Path(lake.framework_table("ledger").path),
    )
    versions = delta_version(target), delta_version(ledger)
    # Without its source, a rerun can only succeed by not reading it.
    shutil.rmtree(Path(sample_config.lakehouse.landing))

    again = run(spark, sample_config, ORDERS, DATES)
    assert again.exit_code == 0
    assert again.plan.to_run == () and again.results == []
    assert (delta_version(target), delta_version(ledger)) == versions


def test_force_reprocesses_one_date_and_leaves_the_others_untouched(spark, sample_config) -> None:
    run(spark, sample_config, ORDERS, DATES)
    others = silver(spark, sample_config).where(F.col("order_date") != DATES[1])
    before_others = others.collect()  # audit columns included: untouched means untouched
    before_all = silver(spark, sample_config).drop("_run_id", "_processed_at")
    before_all = spark.createDataFrame(before_all.collect(), before_all.schema)

    forced = run(spark, sample_config, ORDERS, [DATES[1]], force=True)
    assert [(r.partition, r.state, r.attempt) for r in forced.results] == [(DATES[1], COMPLETE, 2)]
    assert forced.results[0].rows_updated == forced.results[0].rows_inserted == 0
    assert_same_rows(others, spark.createDataFrame(before_others, others.schema))
    after = silver(spark, sample_config)
    assert after.count() == after.select(KEY_COLUMN).distinct().count()
    assert_same_rows(after, before_all)
    states = job_states(spark, sample_config, ORDERS.name)
    assert {d: s.attempt for d, s in states.items()} == {DATES[0]: 1, DATES[1]: 2, DATES[2]: 1}


def test_a_failed_partition_does_not_stop_the_others(spark, sample_config) -> None:
    shutil.rmtree(Path(sample_config.lakehouse.landing) / "orders" / "order_date=2024-01-02")
    report = run(spark, sample_config, ORDERS, DATES)
    assert report.exit_code == 1
    assert [(r.partition, r.state) for r in report.results] == [
        (DATES[0], COMPLETE),
        (DATES[1], FAILED),
        (DATES[2], COMPLETE),
    ]
    failed = report.results[1]
    assert failed.error_class == "SourceMissingError"
    assert failed.error_message.startswith("no source files for 2024-01-02 under ")
    assert report.incomplete == [DATES[1]]


def test_fail_fast_stops_before_the_unit_after_the_first_failure(spark, sample_config) -> None:
    """The partitions of one unit are one pass: a failure stops the units after it."""
    shutil.rmtree(Path(sample_config.lakehouse.landing) / "orders" / "order_date=2024-01-01")
    report = run(spark, sample_config, ORDERS, DATES, fail_fast=True, unit_partitions=1)
    assert [(r.partition, r.state) for r in report.results] == [(DATES[0], FAILED)]
    assert report.incomplete == DATES
    together = run(spark, sample_config, ORDERS, DATES, fail_fast=True, unit_partitions=2)
    assert [(r.partition, r.state) for r in together.results] == [
        (DATES[0], FAILED),
        (DATES[1], COMPLETE),
    ]


def test_revenue_waits_for_orders_then_matches_silver(spark, sample_config) -> None:
    early = run(spark, sample_config, REVENUE, [DATES[0]])
    assert early.results[0].state == FAILED
    assert "upstream job orders_daily is missing" in early.results[0].error_message

    run(spark, sample_config, ORDERS, [DATES[0]])
    assert run(spark, sample_config, REVENUE, [DATES[0]]).exit_code == 0
    rows, _, _ = expected_orders(sample_config, [DATES[0]])
    expected: dict[tuple, list] = {}
    for source_id, day, event_type, _, amount, currency in rows:
        agg = expected.setdefault((day, currency), [set(), Decimal(0), 0, 0])
        agg[0].add(source_id)
        agg[1] += amount if event_type == "paid" else 0
        agg[2] += event_type == "paid"
        agg[3] += event_type == "cancelled"
    gold = Lakehouse(sample_config.lakehouse).table("gold.revenue_daily").read(spark)
    columns = ["order_date", "currency", "orders", "paid_amount", "paid_orders", "cancelled_orders"]
    actual = gold.select(*columns)
    assert_same_rows(
        actual,
        spark.createDataFrame(
            [(d, c, len(a[0]), a[1], a[2], a[3]) for (d, c), a in expected.items()], actual.schema
        ),
    )
    # Forcing it again replaces the date: same rows, no duplicates.
    assert run(spark, sample_config, REVENUE, [DATES[0]], force=True).exit_code == 0
    assert_same_rows(gold.select(*columns), actual)


def test_a_jobs_ledger_files_are_compacted_once_as_a_run_ends_and_its_states_stay(
    spark, sample_config, monkeypatch
) -> None:
    """Compaction waits for the threshold, then is the run's last ledger commit: no
    partition's transition pays for it, and it changes no state."""
    monkeypatch.setattr("framework.state.ledger.COMPACT_AT_FILES", 4)
    ledger = ledger_of(spark, sample_config)
    path = Path(ledger.ref.path)

    def job_files() -> int:
        return len(ledger.frame().where(F.col("job") == ORDERS.name).inputFiles())

    run(spark, sample_config, ORDERS, DATES)
    assert "OPTIMIZE" not in [op for _, op in commit_operations(path)]
    assert 1 < job_files() < 4
    run(spark, sample_config, ORDERS, DATES, force=True)
    commits = commit_operations(path)
    assert [op for _, op in commits].index("OPTIMIZE") == len(commits) - 1, commits
    assert job_files() == 1
    before = spark.read.format("delta").option("versionAsOf", commits[-2][0]).load(str(path))
    assert_same_rows(ledger.frame(), before)
