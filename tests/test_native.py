"""The control plane without a JVM: delta-rs and Spark read the same ledger
and must report the same states, through a ledger's whole life (claims, lease
renewals, failures, retries, healing, work units, chunk progress, compaction, many
versions past Delta checkpoints) and through random histories; a rerun with nothing to
do answers from delta-rs alone, with JAVA_HOME pointing nowhere."""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from framework.cli import reads
from framework.core.config import LakehouseConfig
from framework.engine.runner import RunRequest, stale_partitions
from framework.engine.unit import process_unit
from framework.lake.tables import Lakehouse
from framework.ops import native
from framework.ops.history import HistoryObserver, RunHistory
from framework.state.ledger import COMPLETE, FAILED, RUNNING, Ledger, PartitionState, utcnow
from framework.testing import child_env, commit_operations, new_lake, run_args
from jobs.orders_daily import JOB as ORDERS
from jobs.revenue_daily import JOB as REVENUE
from tests.helpers import (
    commit_unknown_reader_feature,
    dead_pid,
    delta_log,
    job_states,
    run,
    running,
)

REPO = Path(__file__).resolve().parents[1]

D1, D2, D3, MISSING = (dt.date(2024, 1, d) for d in (1, 2, 3, 4))
JOBS = (ORDERS.name, REVENUE.name)


def claim(partition: dt.date, attempt: int, *, pid: int, run_id: str, unit: int) -> PartitionState:
    return dataclasses.replace(running(partition, pid, attempt=attempt, run_id=run_id), unit=unit)


def test_both_readers_report_the_same_states_through_a_ledgers_whole_life(
    spark, sample_config, monkeypatch
) -> None:
    monkeypatch.setattr("framework.state.ledger.COMPACT_AT_FILES", 5)  # an OPTIMIZE on the way
    lake = Lakehouse(sample_config.lakehouse)
    ledger = Ledger(spark, lake.framework_table("ledger"))
    history = RunHistory.of(spark, lake)
    path = Path(str(ledger.ref.path))

    def agree() -> dict[str, dict[dt.date, PartitionState]]:
        by_spark = ledger.states(*JOBS)
        assert native.ledger_states(lake, JOBS) == by_spark
        return by_spark

    def recorded() -> list[HistoryObserver]:
        return [HistoryObserver(history, arguments="test", host="h", pid=1)]

    assert agree() == {job: {} for job in JOBS}  # no ledger yet
    # A dead runner's unit of D1 and D2: written to the target, never recorded complete.
    pid = dead_pid()
    abandoned = {p: claim(p, 1, pid=pid, run_id="crashed", unit=1) for p in (D1, D2)}
    ledger.record(abandoned.values())
    spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ('delta.checkpointInterval' = '3')")
    process_unit(spark, lake, ORDERS, abandoned, {})
    agree()
    # Heals D1 and D2, processes D3, fails MISSING (no source): a unit split on failure.
    first = run(spark, lake, ORDERS, [D1, D2, D3, MISSING], observers=recorded())
    assert {s.partition for s in first.healed} == {D1, D2}
    states = agree()[ORDERS.name]
    assert (states[D3].state, states[MISSING].state) == (COMPLETE, FAILED)
    run(spark, lake, ORDERS, [MISSING], observers=recorded())  # the retry: attempt 2, failed again
    # A third attempt in chunks, its lease renewed as the chunks commit, then its runner dies.
    manifest = '{"id": "m1", "chunks": [[], [], []]}'
    attempt = dataclasses.replace(
        claim(MISSING, 3, pid=dead_pid(), run_id="chunked", unit=9), manifest=manifest
    )
    [attempt] = ledger.record(attempt)
    for done in range(1, 4):
        renewal = dataclasses.replace(
            attempt,
            chunks_committed=done,
            lease_expires_at=utcnow() + dt.timedelta(minutes=10),
            recorded_at=None,
        )
        ledger.record(renewal)
    states = agree()[ORDERS.name]
    assert (states[MISSING].attempt, states[MISSING].chunks_committed) == (3, 3)
    # A job that depends on another: two jobs in one read.
    run(spark, lake, REVENUE, [D1, D2, D3], observers=recorded())
    agree()
    assert len(list(delta_log(path).glob("*.checkpoint.parquet"))) >= 3
    assert "OPTIMIZE" in [op for _, op in commit_operations(path)]
    for job in JOBS:
        assert native.recent_runs(lake, job, 10) == history.recent(job, 10)


def test_both_readers_agree_on_random_histories(spark, tmp_path) -> None:
    """Attempts, states and leases in a random order, a few per commit; an older attempt
    recorded after a newer one must not win, in either reader."""
    lake = Lakehouse(LakehouseConfig(root=str(tmp_path / "lakehouse")))
    ledger = Ledger(spark, lake.framework_table("ledger"))
    rng = random.Random(17)
    dates = [D1 + dt.timedelta(days=i) for i in range(6)]
    for commit in range(24):
        if commit == 1:
            path = ledger.ref.path
            spark.sql(
                f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ('delta.checkpointInterval' = '5')"
            )
        batch = []
        for partition in rng.sample(dates, rng.randint(1, 3)):
            state = rng.choice((RUNNING, COMPLETE, FAILED))
            batch.append(
                PartitionState(
                    rng.choice(JOBS),
                    partition,
                    rng.randint(1, 3),
                    state,
                    f"run-{commit}",
                    host=rng.choice(["a", "b", None]),
                    pid=rng.randint(1, 1 << 20),
                    unit=rng.randint(1, 5),
                    rows_read=rng.randint(0, 100) if state == COMPLETE else None,
                    error_message="boom: ' and \\" if state == FAILED else None,
                    lease_expires_at=utcnow() + dt.timedelta(seconds=rng.randint(-60, 60)),
                )
            )
        ledger.record(batch)
        if commit % 8 == 7:
            assert native.ledger_states(lake, JOBS) == ledger.states(*JOBS)
    assert native.ledger_states(lake, ["no_such_job"]) == {"no_such_job": {}}


def test_stale_dates_and_the_plan_are_the_same_without_a_jvm(spark, sample_config) -> None:
    lake = Lakehouse(sample_config.lakehouse)
    run(spark, lake, ORDERS, [D1, D2, D3])
    folder = Path(sample_config.lakehouse.landing) / "orders" / f"order_date={D2}"
    first = sorted(folder.glob("part-*"))[0]
    (folder / "part-late.json").write_text(first.read_text().splitlines()[0] + "\n")
    states = job_states(spark, lake, ORDERS.name)
    dates = [D1, D2, D3]
    assert native.stale(lake, ORDERS, states, dates) == stale_partitions(
        spark, lake, ORDERS, states, dates
    )
    for include_stale in (False, True):
        options: dict[str, Any] = {"include_stale": include_stale, "dry_run": True}
        planned, _ = native.plan(lake, ORDERS, RunRequest.for_dates(dates, **options))
        assert planned == run(spark, lake, ORDERS, dates, **options).plan
        assert planned.to_run == ((D2,) if include_stale else ())


def test_a_rerun_with_nothing_to_do_needs_no_java_and_one_with_work_does(
    spark, tmp_path, sample_landing
) -> None:
    """With JAVA_HOME pointing nowhere, a JVM cannot start: the
    rerun of complete dates still exits 0 with its summary; a date to process, or
    NINELIVES_NATIVE=0, fails for want of Java."""
    lake = new_lake(tmp_path, sample_landing, ORDERS)
    run(spark, lake.lakehouse, ORDERS, [D1, D2])
    env = {**child_env(), "JAVA_HOME": str(tmp_path / "no-java")}  # Spark's launcher uses it

    def cli(dates, **extra_env):
        argv = [sys.executable, "-m", "framework.cli", *run_args(lake, dates)]
        return subprocess.run(
            argv, cwd=REPO, env={**env, **extra_env}, capture_output=True, text=True, timeout=300
        )

    nothing = cli([D1, D2])
    assert nothing.returncode == 0, nothing.stderr
    assert "0 partition(s) planned, 0 complete, 0 failed, 2 skipped" in nothing.stdout
    assert "ninelives:" not in nothing.stderr  # no notice of a fallback, no error
    assert cli([D1, D2, D3]).returncode != 0
    assert cli([D1, D2], NINELIVES_NATIVE="0").returncode != 0


def test_the_quarantine_reads_the_same_after_a_forced_rerun_replaced_a_dates_rejects(
    spark, sample_config, monkeypatch
) -> None:
    lake = Lakehouse(sample_config.lakehouse)
    run(spark, lake, ORDERS, [D1, D2, D3])
    run(spark, lake, ORDERS, [D2], force=True)
    path = Path(str(lake.framework_table(f"quarantine_{ORDERS.name}").path))
    assert len(commit_operations(path)) > 1  # the forced rerun rewrote D2's rejects
    by_delta_rs = [reads.quarantined(sample_config, ORDERS.name, d, 1000) for d in (None, D2)]
    monkeypatch.setenv(native.ENABLED_VARIABLE, "0")
    by_spark = [reads.quarantined(sample_config, ORDERS.name, d, 1000) for d in (None, D2)]
    assert by_delta_rs == by_spark
    (total, rows), (on_d2, _) = by_spark
    assert 0 < on_d2 < total == len(rows) == len({(r["partition"], r["raw"]) for r in rows})


def test_a_ledger_delta_rs_cannot_read_is_never_guessed_at(spark, sample_config, caplog) -> None:
    """A reader feature neither engine knows: delta-rs refuses, the command says so in one
    line and asks Spark, which refuses too, naming the feature; no state is made up."""
    lake = Lakehouse(sample_config.lakehouse)
    run(spark, lake, ORDERS, [D1])
    feature = "timeTravelToTheFuture"
    commit_unknown_reader_feature(lake.framework_table("ledger").path, feature)

    with pytest.raises(native.NativeUnavailable, match="could not be read without a JVM"):
        native.ledger_states(lake, JOBS)
    with pytest.raises(Exception, match=feature):
        reads.states(sample_config, lake, ORDERS.name, ())
    [notice] = [r for r in caplog.records if r.name == "framework.ops.native"]
    assert notice.levelname == "WARNING" and notice.getMessage().endswith("; reading it with Spark")
    assert feature in notice.getMessage()
