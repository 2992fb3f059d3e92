"""Leases, claims and plan-time healing, in process; crash tests do the same with kill -9."""

from __future__ import annotations

import dataclasses
import datetime as dt
import subprocess
from pathlib import Path

import pytest

from framework.engine.runner import reconcile
from framework.engine.unit import process_unit
from framework.lake.tables import Lakehouse
from framework.state.leases import held_message, this_host
from framework.state.ledger import COMPLETE, FAILED, PartitionState
from jobs.orders_daily import JOB as ORDERS
from tests.helpers import dead_pid, delta_version, ledger_of, run, running

D1, D2, D3 = dt.date(2024, 1, 1), dt.date(2024, 1, 2), dt.date(2024, 1, 3)


@pytest.fixture
def live_process():
    proc = subprocess.Popen(["sleep", "300"])
    yield proc
    proc.kill()
    proc.wait()


@pytest.mark.parametrize("how", ["under_lock", "by_merge"])
def test_a_claim_based_on_a_stale_read_loses(spark, config, how) -> None:
    """Both compare-and-swaps: a local ledger's (read under the write lock, append) and
    the MERGE that storage arbitrating its own commits gets."""
    ledger = ledger_of(spark, config)
    ledger.ensure()

    def claim(new: PartitionState, seen: PartitionState | None) -> set[dt.date]:
        [won] = getattr(ledger, f"_claim_{how}")(ORDERS.name, [{new.partition: (new, seen)}])
        return set(won)

    first = running(D1, 1, run_id="a")
    assert claim(first, None) == {D1}
    # A second runner that read the ledger before the first claim landed:
    assert claim(running(D1, 2, run_id="b"), None) == set()
    assert ledger.states(ORDERS.name)[ORDERS.name][D1].run_id == "a"
    # With the current state as its read, a claim for the next attempt wins; with the
    # state it just recorded (a retry's read), too.
    current = ledger.states(ORDERS.name)[ORDERS.name][D1]
    assert claim(running(D1, 3, run_id="c", attempt=2), current) == {D1}
    [failed] = ledger.record(running(D1, 3, run_id="c", attempt=2).advance(FAILED))
    assert claim(running(D1, 3, run_id="c", attempt=3), failed) == {D1}
    # A read older than that loses.
    assert claim(running(D1, 4, run_id="d", attempt=3), current) == set()
    assert ledger.states(ORDERS.name)[ORDERS.name][D1].run_id == "c"


@pytest.mark.parametrize("how", ["under_lock", "by_merge"])
def test_a_claim_numbers_its_units_above_every_number_the_job_holds(spark, config, how):
    """The unit number is the target commit's transaction version: it only grows, and a
    claim told a table's newer number (after a skipped commit) goes above it."""
    ledger = ledger_of(spark, config)
    ledger.ensure()
    claim = getattr(ledger, f"_claim_{how}")
    first, second = claim(
        ORDERS.name,
        [{D1: (running(D1, 1, run_id="a"), None)}, {D2: (running(D2, 1, run_id="a"), None)}],
    )
    assert (first[D1].unit, second[D2].unit) == (1, 2)
    [failed] = ledger.record(first[D1].advance(FAILED))
    [again] = claim(ORDERS.name, [{D1: (running(D1, 1, run_id="a", attempt=2), failed)}])
    assert again[D1].unit == 3
    [above] = claim(ORDERS.name, [{D3: (running(D3, 1, run_id="a"), None)}], 40)
    assert above[D3].unit == 41
    assert ledger.states(ORDERS.name)[ORDERS.name][D3].unit == 41


def test_a_live_lease_is_not_taken_then_a_dead_owner_is(spark, sample_config, live_process):
    ledger = ledger_of(spark, sample_config)
    lake = Lakehouse(sample_config.lakehouse)
    ledger.record(running(D1, live_process.pid))
    report = run(spark, lake, ORDERS, [D1, D2])
    assert report.exit_code == 3
    assert set(report.held) == {D1}
    assert [(r.partition, r.state) for r in report.results] == [(D2, COMPLETE)]
    message = held_message(ORDERS.name, report.held[D1])
    assert f"is held by run other-run (host {this_host()}, pid {live_process.pid}) since" in message

    live_process.kill()
    live_process.wait()
    again = run(spark, lake, ORDERS, [D1, D2])
    assert again.exit_code == 0
    assert [(r.partition, r.state, r.attempt) for r in again.results] == [(D1, COMPLETE, 2)]


def test_an_expired_lease_of_another_host_is_taken_over(spark, sample_config) -> None:
    ledger_of(spark, sample_config).record(running(D1, 1, host="elsewhere", expires_in=-1))
    report = run(spark, sample_config, ORDERS, [D1])
    assert report.exit_code == 0 and report.results[0].attempt == 2


def test_a_live_lease_of_another_host_is_not_taken(spark, sample_config) -> None:
    ledger_of(spark, sample_config).record(running(D1, dead_pid(), host="elsewhere"))
    report = run(spark, sample_config, ORDERS, [D1])
    assert report.exit_code == 3 and report.results == []


def test_wait_waits_for_the_holder_to_finish(spark, sample_config) -> None:
    ledger = ledger_of(spark, sample_config)
    ledger.record(running(D1, 1, host="elsewhere", expires_in=6))
    report = run(spark, sample_config, ORDERS, [D1], wait=True, wait_poll_seconds=1.0)
    assert report.exit_code == 0 and [r.attempt for r in report.results] == [2]


def _abandon_after_writes(spark, sample_config, partitions=(D1,)) -> list[PartitionState]:
    """Do a unit's writes under a dead runner's leases, without recording complete."""
    ledger = ledger_of(spark, sample_config)
    pid = dead_pid()
    states = [
        dataclasses.replace(running(p, pid, run_id="crashed-run"), unit=1) for p in partitions
    ]
    ledger.record(states)
    lake = Lakehouse(sample_config.lakehouse)
    done = process_unit(spark, lake, ORDERS, {s.partition: s for s in states}, {})
    assert all(isinstance(s, PartitionState) and s.state == COMPLETE for s in done.values()), done
    return states


@pytest.mark.parametrize("partitions", [(D1,), (D1, D2, D3)], ids=["one", "unit_of_3"])
def test_a_committed_but_unrecorded_unit_is_healed_without_recompute(
    spark, sample_config, partitions
):
    _abandon_after_writes(spark, sample_config, partitions)
    lake = Lakehouse(sample_config.lakehouse)
    target = Path(lake.table("silver.orders").path)
    version = delta_version(target)

    report = run(spark, lake, ORDERS, partitions)
    assert report.exit_code == 0 and report.results == []
    assert [(h.partition, h.state, h.attempt, h.run_id) for h in report.healed] == [
        (p, COMPLETE, 1, "crashed-run") for p in partitions
    ]
    for healed in report.healed:
        assert healed.rows_read == (
            healed.rows_written + healed.rows_rejected + healed.rows_duplicate
        )
        assert healed.rows_written == 100 and healed.rows_rejected > 0
    assert delta_version(target) == version  # nothing recomputed, nothing rewritten


def test_reconcile_settles_abandoned_partitions(spark, sample_config) -> None:
    _abandon_after_writes(spark, sample_config)
    ledger = ledger_of(spark, sample_config)
    ledger.record(running(D2, dead_pid(), run_id="crashed-early"))

    fixed = reconcile(spark, Lakehouse(sample_config.lakehouse), ORDERS)
    assert [(b.partition, a.state) for b, a in fixed] == [(D1, COMPLETE), (D2, FAILED)]
    states = ledger.states(ORDERS.name)[ORDERS.name]
    assert states[D2].error_class == "AbandonedAttempt"
    assert reconcile(spark, Lakehouse(sample_config.lakehouse), ORDERS) == []
