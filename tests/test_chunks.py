"""Resumable big partitions: a date bigger than a work unit goes in chunks of
its files, one commit each; kill -9 between chunk commits, inside one, or after the last,
and the rerun processes only the chunks the target's log lacks, and equals one pass.

The date here is 200 orders in two landing files, dealt out line by line, so that a
re-delivered copy or correction of an event usually sits in another file (another
chunk) than the event: the cross-chunk dedupe has work to do. A unit size of one file
makes two chunks.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from framework.cli import main
from framework.engine.chunks import Manifest, cut, resumable
from framework.engine.runner import RunReport, RunRequest, run_job, stale_partitions
from framework.lake.storage import InputFile
from framework.state.ledger import COMPLETE, FAILED, RUNNING, PartitionState
from framework.testing import (
    KILLED,
    Lake,
    Reference,
    assert_recovered,
    expect_exit,
    new_lake,
    reference_run,
    rerun,
    run_child,
    tagged_commits,
)
from jobs.landing import seed_orders
from jobs.orders_daily import JOB as ORDERS_DAILY

D1 = dt.date(2024, 1, 1)
FILES = 2
TARGET_FOLDER = "silver/orders"


def deal_out(folder: Path, files: int) -> None:
    """Rewrite a landing date's lines as ``files`` files, line i into file i % files."""
    lines = [line for f in sorted(folder.glob("part-*")) for line in f.read_text().splitlines()]
    for f in folder.iterdir():
        f.unlink()
    for i in range(files):
        (folder / f"part-{i:05d}.json").write_text("".join(f"{x}\n" for x in lines[i::files]))


@pytest.fixture(scope="module")
def landing(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("chunks") / "landing"
    seed_orders(spark, str(root), days=1, rows_per_day=200)
    deal_out(root / "orders" / f"order_date={D1}", FILES)
    return root


@pytest.fixture(scope="module")
def unit(landing: Path) -> int:
    """A unit's size that holds one file and not two: a chunk per file."""
    return max(f.stat().st_size for f in (landing / "orders" / f"order_date={D1}").iterdir())


@pytest.fixture(scope="module")
def one_pass(spark: SparkSession, landing: Path, tmp_path_factory) -> Reference:
    """The same date in one pass (the default unit holds it whole)."""
    lake = new_lake(tmp_path_factory.mktemp("one-pass"), landing, ORDERS_DAILY)
    return reference_run(spark, lake.config, [D1], ORDERS_DAILY)


def run_chunked(spark: SparkSession, lake: Lake, unit: int, **options) -> RunReport:
    request = RunRequest.for_dates([D1], unit_bytes=unit, **options)
    report = run_job(spark, lake.lakehouse, lake.job, request)
    assert report.exit_code == 0, [(r.state, r.error_message) for r in report.results]
    return report


def chunk_commits(lake: Lake) -> list[tuple[str, int]]:
    """(run id, chunk) of each chunk commit in the target's log, in log order; the
    commit that drops keys held twice is chunk ``FILES``."""
    return [
        (meta["run_id"], meta["chunk"])
        for _, _, meta in tagged_commits(lake.target_path)
        if "chunk" in meta
    ]


def test_a_manifest_cuts_the_files_in_name_order_into_chunks_of_at_most_a_unit() -> None:
    assert cut([40, 40, 40, 40], 100) == ((0, 2), (2, 4))
    assert cut([40, 250, 40, 30, 30], 100) == ((0, 1), (1, 2), (2, 5))  # a big file alone
    assert cut([500], 100) == ((0, 1),)
    files = [InputFile(f"/l/part-{i}", 40, i) for i in range(3)]
    running = PartitionState("j", D1, 2, RUNNING, "run-1")
    manifest = Manifest.new(running, files, 100)
    assert (manifest.id, manifest.of, manifest.chunk(1).files) == ("run-1/2", 2, ("/l/part-2",))
    assert Manifest.from_json(manifest.to_json()) == manifest
    failed = dataclasses.replace(running, state=FAILED, manifest=manifest.to_json())
    late = [*files, InputFile("/l/part-9", 5, 9)]
    assert resumable(failed, late) == manifest  # a file after the manifest: resumed
    changed = [files[0], InputFile("/l/part-1", 41, 1), files[2]]
    assert resumable(failed, changed) is None  # a file of it changed: starts over
    assert resumable(dataclasses.replace(failed, state=COMPLETE), files) is None


def test_a_date_bigger_than_a_unit_goes_in_chunks_equals_one_pass_and_reprocesses_whole(
    spark, tmp_path, landing, unit, one_pass
) -> None:
    """In chunks, the same rows, rejects and counts as one pass; then, with a file gone,
    a forced rerun in chunks deletes the keys that vanished with it, as one pass would."""
    mine = tmp_path / "landing"
    shutil.copytree(landing, mine)
    lake = new_lake(tmp_path / "chunked", mine, ORDERS_DAILY)
    report = run_chunked(spark, lake, unit)

    assert_recovered(spark, lake, one_pass)
    [state] = report.results
    assert (state.state, state.chunks, state.chunks_committed) == (COMPLETE, FILES, FILES)
    # One commit per chunk, then the one that cut keys two chunks held down to one row;
    # its duplicates are in the counts the one-pass run has.
    assert [c for _, c in chunk_commits(lake)] == [*range(FILES), FILES]
    [drop] = [m for _, _, m in tagged_commits(lake.target_path) if m.get("chunk") == FILES]
    assert 0 < drop["partitions"][D1.isoformat()]["rows_duplicate"] <= state.rows_duplicate

    (mine / "orders" / f"order_date={D1}" / f"part-{FILES - 1:05d}.json").unlink()
    run_chunked(spark, lake, unit, force=True)

    one_pass_lake = new_lake(tmp_path / "one-pass", mine, ORDERS_DAILY)
    reference = reference_run(spark, one_pass_lake.config, [D1], ORDERS_DAILY)
    assert_recovered(spark, lake, reference)


# The three kills, each with the chunks its rerun must commit: between chunk
# commits (one of two in, before the ledger hears of it; a late file lands before the
# rerun), inside chunk 1's target commit (the table's second), and after the last chunk
# before the date is complete.
KILLS = [
    ("after_chunk_commit@2024-01-01#1", [1]),
    (f"commit_staged@{TARGET_FOLDER}#1", [1]),
    ("after_last_chunk@2024-01-01", []),
]


@pytest.mark.parametrize(("crash_at", "redone"), KILLS, ids=[k for k, _ in KILLS])
def test_a_kill_in_a_date_in_chunks_then_the_rerun_does_only_the_missing_chunks(
    spark, tmp_path, landing, unit, one_pass, crash_at, redone, capsys
) -> None:
    mine = tmp_path / "landing"
    shutil.copytree(landing, mine)
    lake = new_lake(tmp_path, mine, ORDERS_DAILY)
    expect_exit(run_child(lake, [D1], "--unit-size", str(unit), crash_at=crash_at), KILLED)
    done = FILES - len(redone)
    assert sorted(c for _, c in chunk_commits(lake)) == list(range(done))

    status = ["status", lake.job.name, "--date", str(D1), "--lakehouse", str(lake.root)]
    assert main([*status, "--conf", str(lake.conf)]) == 0
    out = capsys.readouterr().out
    assert f"{done}/{FILES} chunks committed" in out, out
    plan = f"resumes {D1} at chunk {done + 1} of {FILES}" if redone else f"finishes {D1}"
    assert plan in out, out
    late = crash_at.startswith("after_chunk_commit")
    if late:  # a file after the manifest: not read now, and the date is stale after
        folder = mine / "orders" / f"order_date={D1}"
        shutil.copy(folder / "part-00000.json", folder / "part-00009.json")

    report = rerun(spark, lake, [D1])  # the default unit: the manifest decides the chunks

    assert_recovered(spark, lake, one_pass)
    mine_commits = [c for run_id, c in chunk_commits(lake) if run_id == report.run_id]
    assert [c for c in mine_commits if c < FILES] == redone
    stale = stale_partitions(spark, lake.lakehouse, lake.job, lake.states(spark), [D1])
    assert stale == ({D1} if late else set())
