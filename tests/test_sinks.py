"""Both sinks are idempotent, tagged, and write exactly the new data of a partition; the
empty tagged append records an attempt whose MERGE committed nothing."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from deltalake import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DateType, LongType, StringType, StructField, StructType

from framework.core.config import Config
from framework.core.errors import FencedError
from framework.core.keys import with_key, with_row_hash
from framework.lake.commits import CHUNK_SLOTS, CommitTag, find_commits, write_marker
from framework.lake.sinks import PROCESSED_AT_COLUMN, RUN_ID_COLUMN, MergeSink, ReplaceSink
from framework.lake.tables import Lakehouse
from framework.testing import assert_same_rows
from framework.testing.delta_log import log_commits

# The core suite: run again through Spark Connect (pytest --connect).
pytestmark = pytest.mark.connect

D1, D2 = dt.date(2024, 1, 15), dt.date(2024, 1, 16)
SCHEMA = StructType(
    [
        StructField("day", DateType()),
        StructField("id", StringType()),
        StructField("qty", LongType()),
    ]
)


def prepared(spark: SparkSession, rows: list[tuple], run_id: str = "r") -> DataFrame:
    return (
        spark.createDataFrame(rows, SCHEMA)
        .transform(with_key(["day", "id"]))
        .transform(with_row_hash())
        .withColumn(RUN_ID_COLUMN, F.lit(run_id))
        .withColumn(PROCESSED_AT_COLUMN, F.current_timestamp())
    )


@pytest.fixture(params=[MergeSink("silver.t"), ReplaceSink("silver.t")], ids=["merge", "replace"])
def sink(request: pytest.FixtureRequest) -> MergeSink | ReplaceSink:
    return request.param


def write(spark, config, sink, rows, day, unit, run_id="r"):
    """Write ``rows`` as a unit of one partition, ``day``, numbered ``unit``."""
    ref = Lakehouse(config.lakehouse).table(sink.table)
    tag = CommitTag.single("job", day, run_id, unit)
    return sink.write(spark, ref, prepared(spark, rows, run_id), "day", tag), ref


def test_two_runs_leave_the_table_unchanged(spark, config: Config, sink) -> None:
    rows = [(D1, "a", 1), (D1, "b", 2), (D2, "c", 3)]
    write(spark, config, sink, [r for r in rows if r[0] == D1], D1, 1)
    _, ref = write(spark, config, sink, [r for r in rows if r[0] == D2], D2, 2)
    first = ref.read(spark).collect()
    write(spark, config, sink, [r for r in rows if r[0] == D1], D1, 3, run_id="r2")
    assert_same_rows(ref.read(spark), spark.createDataFrame(first))


def test_changed_source_gives_exactly_the_new_data(spark, config: Config, sink) -> None:
    write(spark, config, sink, [(D1, "a", 1), (D1, "b", 2), (D1, "gone", 9)], D1, 1)
    write(spark, config, sink, [(D2, "other", 7)], D2, 2)
    # b changes, gone vanishes from the partition, new appears; D2 is untouched.
    _, ref = write(spark, config, sink, [(D1, "a", 1), (D1, "b", 20), (D1, "new", 5)], D1, 3)
    expected = prepared(spark, [(D1, "a", 1), (D1, "b", 20), (D1, "new", 5), (D2, "other", 7)])
    assert_same_rows(ref.read(spark), expected)


def test_unchanged_merge_updates_nothing_and_adds_no_file(spark, config: Config) -> None:
    rows = [(D1, "a", 1), (D1, "b", 2)]
    first, _ = write(spark, config, MergeSink("silver.t"), rows, D1, 1)
    assert first.metric("numOutputRows") == 2
    commit, ref = write(spark, config, MergeSink("silver.t"), rows, D1, 2, run_id="again")
    history = ref.history(spark).orderBy("version").collect()
    after_first = [h for h in history if h.version > first.version]
    assert [h.version for h in after_first] == [commit.version]
    assert commit.operation == "MERGE"
    assert commit.metric("numTargetRowsUpdated") == 0
    assert commit.metric("numTargetRowsInserted") == 0
    assert commit.metric("numTargetFilesAdded") == 0
    # The audit column keeps the run that last changed the row, not the last run.
    assert {r[RUN_ID_COLUMN] for r in ref.read(spark).collect()} == {"r"}


def test_first_write_of_a_partition_is_one_overwrite_then_merges(spark, config) -> None:
    sink = MergeSink("silver.t")
    write(spark, config, sink, [(D2, "other", 7)], D2, 1)
    first, ref = write(spark, config, sink, [(D1, "a", 1), (D1, "b", 2)], D1, 2)
    # No file of D1 yet: its rows go in by the partition's replaceWhere, not a MERGE.
    assert (first.operation, first.metric("numOutputRows")) == ("WRITE", 2)
    params = ref.history(spark, 1).first().operationParameters
    assert params["mode"] == "Overwrite" and "2024-01-15" in params["predicate"], params
    second, _ = write(spark, config, sink, [(D1, "a", 1), (D1, "b", 3)], D1, 3)
    assert (second.operation, second.metric("numTargetRowsUpdated")) == ("MERGE", 1)
    expected = prepared(spark, [(D1, "a", 1), (D1, "b", 3), (D2, "other", 7)])
    assert_same_rows(ref.read(spark), expected)


def test_a_stale_attempt_at_an_empty_partition_is_fenced_off(spark, config) -> None:
    """The newer attempt left the partition empty; the zombie's overwrite is skipped."""
    write(spark, config, MergeSink("silver.t"), [(D2, "other", 7)], D2, 1)
    write(spark, config, MergeSink("silver.t"), [], D1, 5)
    with pytest.raises(FencedError, match="newer unit"):
        write(spark, config, MergeSink("silver.t"), [(D1, "a", 999)], D1, 4, run_id="zombie")
    ref = Lakehouse(config.lakehouse).table("silver.t")
    assert [r.id for r in ref.read(spark).collect()] == ["other"]


def test_changed_merge_reports_its_row_counts(spark, config: Config) -> None:
    write(spark, config, MergeSink("silver.t"), [(D1, "a", 1), (D1, "b", 2), (D1, "c", 3)], D1, 1)
    commit, _ = write(
        spark, config, MergeSink("silver.t"), [(D1, "a", 1), (D1, "b", 5), (D1, "d", 4)], D1, 2
    )
    assert commit.operation == "MERGE"
    assert (
        commit.metric("numSourceRows"),
        commit.metric("numTargetRowsInserted"),
        commit.metric("numTargetRowsUpdated"),
        commit.metric("numTargetRowsDeleted"),
    ) == (3, 1, 1, 1)


def test_commit_is_tagged_with_job_run_unit_and_each_partitions_attempt(spark, config, sink):
    commit, ref = write(spark, config, sink, [(D1, "a", 1)], D1, 7, run_id="run-x")
    counts = {"rows_written": 1, "rows_inserted": 1, "rows_updated": 0, "rows_deleted": 0}
    assert commit.metadata == {
        "job": "job",
        "run_id": "run-x",
        "unit": 7,
        "partitions": {"2024-01-15": {"attempt": 7, **counts}},
    }
    [found] = find_commits(spark, ref, "job")
    assert found.version == commit.version
    # Delta's idempotent-write id of the job, in the unit's own commit, at the unit's
    # number with room below for a big date's chunks: what fences off a stale writer.
    [logged] = [c for c in log_commits(Path(ref.path)) if c["version"] == commit.version]
    version = 7 * CHUNK_SLOTS
    assert logged["txn"] == [
        {
            "appId": "ninelives:job",
            "version": version,
            "lastUpdated": logged["txn"][0]["lastUpdated"],
        }
    ]
    assert DeltaTable(ref.path).transaction_version("ninelives:job") == version


D3 = dt.date(2024, 1, 17)


def write_unit(spark, config, sink, rows, unit, attempts, run_id="r"):
    ref = Lakehouse(config.lakehouse).table(sink.table)
    tag = CommitTag("job", run_id, unit, attempts)
    return sink.write(spark, ref, prepared(spark, rows, run_id), "day", tag), ref


def test_a_unit_of_many_partitions_is_one_commit_with_each_partitions_counts(
    spark, config, sink
) -> None:
    """New partitions in one overwrite; then one MERGE over partitions old and new, whose
    per-partition counts add up to its metrics; other partitions stay untouched."""
    write(spark, config, sink, [(D3, "other", 7)], D3, 1)
    first, ref = write_unit(
        spark, config, sink, [(D1, "a", 1), (D1, "b", 2), (D2, "a", 3)], 2, {D1: 1, D2: 1}
    )
    assert first.operation == "WRITE"
    assert (first.partition(D1)["rows_written"], first.partition(D2)["rows_written"]) == (2, 1)
    rows = [(D1, "a", 1), (D1, "c", 4), (D2, "a", 30)]  # D1: b gone, c new; D2: a changed
    second, _ = write_unit(spark, config, sink, rows, 3, {D1: 2, D2: 5}, run_id="r2")
    assert_same_rows(ref.read(spark), prepared(spark, [*rows, (D3, "other", 7)]))
    assert len(ref.history(spark).collect()) == 3  # D3 (creates it), unit 2, unit 3
    if isinstance(sink, ReplaceSink):
        assert second.partition(D1)["rows_written"] == 2
        return
    assert second.operation == "MERGE"
    assert {d: {k: v for k, v in second.partition(d).items()} for d in (D1, D2)} == {
        D1: {
            "attempt": 2,
            "rows_written": 2,
            "rows_inserted": 1,
            "rows_updated": 0,
            "rows_deleted": 1,
        },
        D2: {
            "attempt": 5,
            "rows_written": 1,
            "rows_inserted": 0,
            "rows_updated": 1,
            "rows_deleted": 0,
        },
    }
    assert (
        second.metric("numTargetRowsInserted"),
        second.metric("numTargetRowsUpdated"),
        second.metric("numTargetRowsDeleted"),
    ) == (1, 1, 1)


def test_a_unit_numbered_below_a_committed_one_is_fenced_and_told_the_newest(
    spark, config, sink
) -> None:
    """Another runner's unit of other dates committed a higher number first: Delta skips
    ours, and the error says which number to claim above."""
    write(spark, config, sink, [(D2, "b", 2)], D2, 8, run_id="other-runner")
    with pytest.raises(FencedError, match="newer unit") as fenced:
        write(spark, config, sink, [(D1, "a", 1)], D1, 7)
    assert fenced.value.newest_unit == 8
    ref = Lakehouse(config.lakehouse).table(sink.table)
    assert [r.id for r in ref.read(spark).collect()] == ["b"]


def test_a_stale_attempt_is_fenced_off(spark, config: Config, sink) -> None:
    write(spark, config, sink, [(D1, "a", 1)], D1, 5)
    with pytest.raises(FencedError, match="newer unit"):
        write(spark, config, sink, [(D1, "a", 999)], D1, 4, run_id="zombie")
    ref = Lakehouse(config.lakehouse).table(sink.table)
    assert [r.qty for r in ref.read(spark).collect()] == [1]


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
