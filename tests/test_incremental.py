"""Changed inputs: fingerprints and stale partitions, lookback, long backfills, parallelism."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import time
from pathlib import Path

import pytest

from framework.cli import main
from framework.lake.tables import Lakehouse
from framework.state.ledger import COMPLETE, Ledger, PartitionState
from framework.testing import assert_same_rows
from jobs.orders_daily import JOB as ORDERS
from tests.helpers import delta_version, ledger_of, run, table

# The core suite: run again through Spark Connect (pytest --connect).
pytestmark = pytest.mark.connect
DATES = [dt.date(2024, 1, 1), dt.date(2024, 1, 2), dt.date(2024, 1, 3)]


def add_late_file(config, day: dt.date) -> None:
    folder = Path(config.lakehouse.landing) / "orders" / f"order_date={day}"
    record = {
        "source_id": "ORD-9999999999",
        "order_date": str(day),
        "event_type": "created",
        "event_ts": f"{day}T23:59:00+00:00",
        "customer_id": "C-000001",
        "amount": 1.00,
        "currency": "EUR",
        "ingested_at": f"{day + dt.timedelta(days=2)}T23:00:00Z",
    }
    late = json.dumps(record) + "\n"
    (folder / "part-late.txt").write_text(late)


def test_a_late_file_makes_its_date_stale_and_only_that_date_reruns(
    spark, sample_config, capsys
) -> None:
    run(spark, sample_config, ORDERS, DATES)
    lake = Lakehouse(sample_config.lakehouse)
    target = Path(lake.table("silver.orders").path)
    add_late_file(sample_config, DATES[1])

    assert (
        main(
            [
                "status",
                "orders_daily",
                "--lakehouse",
                sample_config.lakehouse.root,
                "--conf",
                str(conf(sample_config)),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    with capsys.disabled():
        print(out)  # what status shows of a stale date (pytest -s shows it)
    assert "stale: its input changed since it completed" in out
    assert out.rstrip().endswith("--include-stale")
    assert "1 stale" in out

    args = ["--lakehouse", sample_config.lakehouse.root, "--conf", str(conf(sample_config))]
    assert main(["status", "orders_daily", "--json", *args]) == 0
    document = json.loads(capsys.readouterr().out)
    assert [(p["partition"], p["state"], p["stale"]) for p in document["partitions"]] == [
        (str(DATES[0]), COMPLETE, False),
        (str(DATES[1]), "stale", True),
        (str(DATES[2]), COMPLETE, False),
    ]
    assert document["summary"] == {COMPLETE: 2, "stale": 1}
    assert document["recovery_commands"][-1].endswith("--include-stale")

    # A plain rerun does not look; --include-stale reprocesses exactly the stale date.
    assert run(spark, sample_config, ORDERS, DATES).results == []
    version = delta_version(target)
    again = run(spark, sample_config, ORDERS, DATES, include_stale=True)
    assert [
        (r.partition, r.state, r.attempt, r.rows_inserted, r.rows_updated) for r in again.results
    ] == [(DATES[1], COMPLETE, 2, 1, 0)]
    assert delta_version(target) == version + 1
    assert (
        table(spark, sample_config, "silver.orders").where("source_id = 'ORD-9999999999'").count()
        == 1
    )
    assert run(spark, sample_config, ORDERS, DATES, include_stale=True).results == []


def conf(config) -> Path:
    path = Path(config.lakehouse.root).parent / "incremental.toml"
    path.write_text(f'[lakehouse]\nlanding = "{config.lakehouse.landing}"\n')
    return path


def test_lookback_reprocesses_recent_days_idempotently(spark, sample_config) -> None:
    run(spark, sample_config, ORDERS, DATES[:2])
    job = dataclasses.replace(ORDERS, lookback_days=2)
    report = run(spark, sample_config, job, [DATES[2]])
    assert [(r.partition, r.attempt) for r in report.results] == [
        (DATES[0], 2),
        (DATES[1], 2),
        (DATES[2], 1),
    ]
    for state in report.results[:2]:
        assert (state.rows_updated, state.rows_inserted, state.rows_deleted) == (0, 0, 0)


def test_a_365_date_plan_is_one_ledger_read(spark, config) -> None:
    start = dt.date(2023, 1, 1)
    dates = [start + dt.timedelta(days=i) for i in range(365)]
    ledger = ledger_of(spark, config)
    ledger.record(PartitionState(ORDERS.name, d, 1, COMPLETE, "old-run") for d in dates)
    reads = Ledger.reads
    began = time.monotonic()
    report = run(spark, config, ORDERS, dates)
    seconds = time.monotonic() - began
    assert Ledger.reads - reads == 1
    assert report.exit_code == 0 and report.results == [] and len(report.plan.skipped) == 365
    print(f"\n365-date plan with everything complete: {seconds:.2f} s, 1 ledger read")


def test_parallel_units_equal_one_sequential_unit(spark, sample_config, tmp_path) -> None:
    """Three units of one date, two at a time in threads of their own sessions, against
    one unit of the three dates."""
    parallel = run(spark, sample_config, ORDERS, DATES, max_parallel=2, unit_partitions=1)
    assert parallel.exit_code == 0 and len(parallel.results) == 3
    sequential_config = dataclasses.replace(
        sample_config,
        lakehouse=dataclasses.replace(sample_config.lakehouse, root=str(tmp_path / "seq")),
    )
    run(spark, sequential_config, ORDERS, DATES)
    assert_same_rows(
        table(spark, sample_config, "silver.orders"),
        table(spark, sequential_config, "silver.orders"),
    )
    versions = {r.target_version for r in parallel.results}
    assert len(versions) == 3  # one commit per unit, none lost
