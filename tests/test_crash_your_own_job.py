"""A user's own job, crash-tested through the public kit (``framework.testing``) in the
few lines the README shows: killed with SIGKILL at every named crash point it passes
and at a random instant, each on its own lakehouse, rerun, and compared with an
uninterrupted run.

The job is defined here, as a user would in their own test module: JSON-lines clicks,
a re-delivered click and a malformed line per day (so that the quarantine commit is
one of the points), MERGEd into ``silver.clicks``. Nothing in the kit knows it: a child
process finds it as ``tests.test_crash_your_own_job:CLICKS``.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from framework import Job, JsonLinesSource, MergeSink
from framework.core.crashpoints import POINTS
from framework.testing import assert_recovered, crash_test, job_reference

# Also through Spark Connect (pytest --connect): the children are Connect clients.
pytestmark = pytest.mark.connect

CLICK_SCHEMA = StructType(
    [
        StructField("user_id", StringType()),
        StructField("day", StringType()),
        StructField("url", StringType()),
        StructField("ts", StringType()),
    ]
)


def clean_clicks(df: DataFrame) -> DataFrame:
    return df.select(
        "user_id",
        F.to_date("day").alias("day"),
        "url",
        F.col("ts").cast("timestamp").alias("ts"),
    )


CLICKS = Job(
    name="clicks_daily",
    source=JsonLinesSource("clicks", CLICK_SCHEMA, partition_column="day"),
    transform=clean_clicks,
    key=("user_id", "day", "url"),
    partition_column="day",
    sink=MergeSink("silver.clicks"),
    order_by=("ts",),  # of duplicate keys, the latest ts wins
)

DATES = [dt.date(2024, 1, 1), dt.date(2024, 1, 2)]


def write_clicks(landing: Path, dates: list[dt.date]) -> Path:
    """Eight clicks a day, one of them delivered twice (a later ts wins), and a line
    that is not JSON."""
    for day in dates:
        clicks = [
            {"user_id": f"u{n % 3}", "day": str(day), "url": f"/p/{n}", "ts": f"{day}T10:0{n}:00"}
            for n in range(8)
        ]
        again = {**clicks[0], "ts": f"{day}T11:00:00"}
        lines = [json.dumps(c) for c in [*clicks, again]] + ['{"user_id": "u9", "day":']
        folder = landing / "clicks" / f"day={day}"
        folder.mkdir(parents=True)
        (folder / "part-00000.json").write_text("".join(f"{line}\n" for line in lines))
    return landing


# Six child runs (five points, one instant) of 15-40 s each, and their reruns.
@pytest.mark.timeout(1200)
def test_a_users_own_job_survives_kill_9_at_every_crash_point_and_random_instants(
    spark, tmp_path
) -> None:
    landing = write_clicks(tmp_path / "landing", DATES)
    report = crash_test(spark, CLICKS, landing, DATES, tmp_path / "crash", random_kills=1, seed=7)

    # Every point of a unit's way was a case, killed there, and recovered (crash_test
    # raises otherwise); so were the random instants.
    named = [case.name for case in report.cases if not case.name.startswith("random@")]
    assert named == [f"{point}@{DATES[0]}" for point in POINTS], named
    assert all(case.killed for case in report.cases[: len(named)]), report.cases
    assert len(report.cases) == len(POINTS) + 1, report.cases
    assert job_reference(CLICKS) == f"{__name__}:CLICKS"

    # The check can fail: a lakehouse a rerun recovered, with one partition dropped,
    # is not recovered any more.
    lake = report.cases[0].lake
    spark.sql(f"DELETE FROM delta.`{lake.target_path}` WHERE day = DATE'{DATES[1]}'")
    with pytest.raises(AssertionError, match=r"missing=8"):
        assert_recovered(spark, lake, report.reference)
