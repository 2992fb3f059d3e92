"""The empty tagged append that records an attempt when its MERGE committed nothing."""

from __future__ import annotations

import datetime as dt

import pytest

from framework.core.errors import FencedError
from framework.lake.commits import CommitTag, write_marker
from framework.lake.sinks import MergeSink
from framework.lake.tables import Lakehouse
from tests.test_sinks import D1, prepared


def test_marker_records_the_attempt_and_is_fenced_like_any_commit(spark, config) -> None:
    ref = Lakehouse(config.lakehouse).table("silver.t")
    df = prepared(spark, [(D1, "a", 1)])
    MergeSink("silver.t").write(spark, ref, df, "day", CommitTag.single("job", D1, "r", 1))
    before = ref.read(spark).collect()

    marker = write_marker(spark, ref, df, "day", CommitTag.single("job", D1, "r2", 3))
    assert marker.operation == "WRITE"
    assert marker.metric("numFiles") == 0 and marker.metric("numOutputRows") == 0
    assert marker.metadata["unit"] == 3 and marker.partition(D1)["attempt"] == 3
    assert ref.read(spark).collect() == before

    with pytest.raises(FencedError):
        write_marker(spark, ref, df, "day", CommitTag.single("job", D1, "zombie", 2))
    with pytest.raises(FencedError):
        MergeSink("silver.t").write(
            spark,
            ref,
            prepared(spark, [(D1, "a", 99)]),
            "day",
            CommitTag.single("job", dt.date(2024, 1, 15), "zombie", 2),
        )
    assert ref.read(spark).collect() == before
