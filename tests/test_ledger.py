"""Ledger transitions: the newest (attempt, seq) row is the state; one read serves many jobs."""

from __future__ import annotations

import datetime as dt

import pytest

from framework.lake.tables import Lakehouse
from framework.state.ledger import COMPLETE, FAILED, RUNNING, Ledger, PartitionState

# The core suite: run again through Spark Connect (pytest --connect).
pytestmark = pytest.mark.connect
D1, D2 = dt.date(2024, 1, 1), dt.date(2024, 1, 2)


def test_transitions_and_newest_state(spark, config) -> None:
    ledger = Ledger(spark, Lakehouse(config.lakehouse).framework_table("ledger"))
    assert ledger.states("a") == {"a": {}}

    first = PartitionState("a", D1, 1, RUNNING, "run1", rows_read=None)
    ledger.record(first)
    assert ledger.states("a")["a"][D1].state == RUNNING

    ledger.record(first.advance(FAILED, error_class="X", error_message="boom"))
    failed = ledger.states("a")["a"][D1]
    assert (failed.state, failed.attempt, failed.error_message) == (FAILED, 1, "boom")

    second = PartitionState("a", D1, 2, RUNNING, "run2")
    ledger.record([second, PartitionState("b", D2, 1, RUNNING, "run2")])
    ledger.record(second.advance(COMPLETE, rows_read=10, rows_written=9, rows_duplicate=1))
    states = ledger.states("a", "b")
    assert states["a"][D1].state == COMPLETE and states["a"][D1].attempt == 2
    assert states["a"][D1].counts()["rows_written"] == 9
    assert states["b"][D2].state == RUNNING

    # Plain SQL over the table sees every transition.
    rows = ledger.frame().where("job = 'a'").orderBy("attempt", "seq").collect()
    assert [(r.attempt, r.state) for r in rows] == [
        (1, RUNNING),
        (1, FAILED),
        (2, RUNNING),
        (2, COMPLETE),
    ]
