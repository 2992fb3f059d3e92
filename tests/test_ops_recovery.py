"""The runbook for situations that are slow to produce with real runs: dead and live
runners, expired leases, an upstream job that is not complete. No Spark needed: the
states are ledger rows as the runner writes them, the leases are judged by the real
lease rules (framework.state.leases), against real processes."""

from __future__ import annotations

import datetime as dt
import io

from rich.console import Console

from framework.ops.report import print_status
from framework.ops.runbook import dates_text, error_hint, plan_recovery
from framework.state.leases import this_host
from framework.state.ledger import COMPLETE, FAILED, RUNNING, PartitionState, utcnow
from tests.helpers import dead_pid

D = [dt.date(2024, 3, d) for d in range(1, 8)]
NOW = utcnow()


def state(day: dt.date, name: str, **fields) -> PartitionState:
    values = {"run_id": "r1", "host": this_host(), "pid": 1, "attempt": 1, **fields}
    return PartitionState("orders_daily", day, state=name, **values)


def test_dead_runner_lease_is_taken_over_and_live_one_is_waited_for() -> None:
    states = {
        D[0]: state(D[0], COMPLETE, rows_read=10),
        D[1]: state(
            D[1],
            RUNNING,
            run_id="dead-run",
            pid=dead_pid(),
            started_at=NOW - dt.timedelta(minutes=5),
            lease_expires_at=NOW + dt.timedelta(minutes=5),
        ),
        D[2]: state(D[2], COMPLETE, rows_read=10),
        D[3]: state(
            D[3],
            RUNNING,
            run_id="live-run",
            host="other-host",
            pid=4242,
            started_at=NOW - dt.timedelta(minutes=1),
            lease_expires_at=NOW + dt.timedelta(minutes=9),
        ),
        D[4]: state(
            D[4],
            RUNNING,
            run_id="expired-run",
            host="other-host",
            pid=4243,
            lease_expires_at=NOW - dt.timedelta(seconds=1),
        ),
    }
    recovery = plan_recovery("orders_daily", D[:5], states, cli_options=" --lakehouse /l", now=NOW)
    assert recovery.commands == (
        "ninelives run orders_daily --from 2024-03-02 --to 2024-03-05 --wait --lakehouse /l",
    )
    assert recovery.to_process == (D[1], D[4])
    assert recovery.taken_over == (D[1], D[4])
    assert recovery.waited_for == (D[3],)
    assert recovery.untouched == (D[2],)
    text = "\n".join(recovery.lines)
    assert (
        f"  2024-03-02 is running but its runner is gone (run dead-run, pid "
        f"{states[D[1]].pid} on {this_host()})"
    ) in text
    assert (
        "  2024-03-05 is running but its runner is gone (run expired-run, pid 4243 on other-host)"
        in text
    )
    assert (
        "  2024-03-04 is being processed by a live runner (run live-run, pid 4242 on other-host"
        in text
    )
    assert "  takes over the lease(s) of 2024-03-02, 2024-03-05 from the dead runner" in text
    assert "  waits (--wait) for 2024-03-04, held by a live runner" in text
    assert "  skips 1 complete partition(s) in 2024-03-02..2024-03-05 (2024-03-03)" in text


def test_upstream_job_gets_its_own_command_first() -> None:
    upstream_error = (
        "job revenue_daily, partition 2024-03-02: upstream job orders_daily is missing for "
        "this date; run `ninelives run orders_daily --date 2024-03-02` first"
    )
    states = {
        d: state(d, FAILED, error_class="PartitionError", error_message=upstream_error)
        for d in D[1:3]
    }
    orders = {D[1]: state(D[1], COMPLETE)}
    out = io.StringIO()
    bad = print_status(
        "revenue_daily",
        D[1:3],
        states,
        Console(file=out, width=200),
        " --lakehouse /l",
        upstream={"orders_daily": orders},
    )
    assert bad == D[1:3]
    lines = out.getvalue().rstrip().splitlines()
    assert lines[-2:] == [
        "First: ninelives run orders_daily --date 2024-03-03 --lakehouse /l",
        "To recover: ninelives run revenue_daily --from 2024-03-02 --to 2024-03-03 --lakehouse /l",
    ]
    assert (
        "    why: an upstream job is not complete for the date: complete it first (command below)"
        in lines
    )
    assert (
        "  first, the upstream job orders_daily must complete 2024-03-03: "
        "ninelives run orders_daily --date 2024-03-03 --lakehouse /l"
    ) in lines


def test_nothing_to_recover() -> None:
    states = {d: state(d, COMPLETE) for d in D[:2]}
    recovery = plan_recovery("orders_daily", D[:2], states, now=NOW)
    assert recovery.commands == ()
    assert recovery.lines == ("Nothing to recover: every partition shown is complete.",)


def test_error_hints_and_date_folding() -> None:
    assert error_hint("ConcurrentAppendException").startswith("another writer committed")
    assert error_hint("Py4JJavaError:DELTA_CONCURRENT_APPEND").startswith("unexpected error")
    assert error_hint("AbandonedAttempt").startswith("the runner died")
    assert error_hint("SchemaMismatchError").startswith("the source or the transform output")
    assert (
        dates_text([D[0], D[1], D[2], D[4], D[6], D[5]])
        == "2024-03-01..2024-03-03, 2024-03-05..2024-03-07"
    )
    assert dates_text([D[0], D[2], D[4]], limit=2) == "2024-03-01, 2024-03-03 and 1 more"
