"""kill -9 anywhere, then rerun: the result equals an uninterrupted run.

Every crashed run here is a real ``ninelives run`` child process (``orders_daily``, and
the watermark job ``orders_incremental``, at a crash point of each state a kill can
leave) in its own process group, killed with SIGKILL of the whole group: at a named
crash point, at a random instant, or the moment the filesystem shows a commit in
flight. Named points inside Delta's own writes (each table's first commit, a
checkpoint) are the crash kit's file system (:mod:`framework.testing`, ``JVM_POINTS``),
which kills the group from inside the JVM at that instant. The rerun that follows is
``run_job`` in the test's own session (:func:`framework.testing.rerun`): the same
planning, healing and lease takeover as the command line, minus a JVM start. The
takeover test reruns on the command line, which is what it is about. "Recovered" is
:func:`framework.testing.assert_recovered`: ledger complete with counts that add up,
target equal to an uninterrupted run into another lakehouse in every non-audit column,
quarantine equal too.

The uninterrupted references and lakehouses with the first date already complete are
made once per test session, in-process, by whichever pytest-xdist worker needs them
first (the others wait for it and read them); each test copies what it needs. Child sessions use
``local[1]`` to stay light on a two-core machine.
"""

from __future__ import annotations

import functools
import json
import os
import random
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest
from filelock import FileLock
from pyspark.sql import Row, SparkSession
from pyspark.sql import functions as F

from framework.cli import main
from framework.core.crashpoints import POINTS, RENEWAL_POINT
from framework.core.keys import KEY_COLUMN
from framework.engine.job import Job
from framework.ops.history import HistoryObserver, RunHistory
from framework.state.ledger import COMPLETE, Ledger
from framework.testing import (
    KILLED,
    Lake,
    Reference,
    assert_log_has_no_gap,
    assert_recovered,
    child_env,
    commit_operations,
    committed_partitions,
    diff_rows,
    expect_exit,
    files_under,
    kill_when,
    log_versions,
    new_lake,
    read_reference,
    reference_run,
    rerun,
    run_args,
    run_child,
    start_run,
)
from jobs.landing import sample_dates, seed_orders
from jobs.orders_daily import JOB as ORDERS_DAILY
from jobs.orders_incremental import JOB as ORDERS_INCREMENTAL

REPO = Path(__file__).resolve().parents[1]
JOB_NAME = ORDERS_DAILY.name

DAYS = 3
D1, D2, D3 = DATES = sample_dates(DAYS)
TWO_DAYS = [D1, D2]

# Whether the crashed partition's target commit exists yet, at each named point.
# The target commit is a unit's last write, so after it the rerun heals the unit.
BEFORE_TARGET_COMMIT = {"after_claim", "after_read", "after_rejects_commit"}
AFTER_TARGET_COMMIT = {"after_target_commit", "before_complete"}

RANDOM_KILLS = 1  # the soak (-m soak) kills 200 times; one here keeps the net in every run
KILL_WINDOW = (3.0, 25.0)  # seconds after the child's start


# ---------------------------------------------------------------- module fixtures


@pytest.fixture(scope="module")
def crash_root(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """Shared by every pytest-xdist worker of the session, so that the landing files and
    the references below are built once (:func:`built_once`), not once per worker."""
    base = tmp_path_factory.getbasetemp()
    root = (base if worker_id == "master" else base.parent) / "crash-shared"
    root.mkdir(exist_ok=True)
    return root


def built_once(root: Path, name: str, build: Callable[[Path], object]) -> Path:
    """``root / name``, built by ``build`` unless another worker already built it; the
    lock makes a second worker wait for the first instead of building it again."""
    path = root / name
    with FileLock(str(root / f".{name}.lock")):
        if not (root / f".{name}.done").exists():
            shutil.rmtree(path, ignore_errors=True)
            build(path)
            (root / f".{name}.done").touch()
    return path


@pytest.fixture(scope="module")
def landing(spark: SparkSession, crash_root: Path) -> Path:
    """Three days of sample orders; children only read it, so they share it."""
    return built_once(
        crash_root, "landing", lambda p: seed_orders(spark, str(p), days=DAYS, rows_per_day=100)
    )


def reference_and_first_day(
    spark: SparkSession, crash_root: Path, landing: Path, job: Job
) -> tuple[Reference, Path]:
    """The uninterrupted in-process reference of ``job`` over all dates, in its own
    lakehouse, and a snapshot of that lakehouse taken when only D1 was complete."""

    def build(base: Path) -> None:
        lake = new_lake(base, landing, job=job)
        reference_run(spark, lake.config, [D1], job)
        shutil.copytree(lake.root, base / "first-day-done")
        reference_run(spark, lake.config, DATES, job)

    base = built_once(crash_root, f"reference-{job.name}", build)
    lake = Lake(base / "lakehouse", base / "ninelives.toml", base / "logs", job)
    return read_reference(spark, lake.config, DATES, job), base / "first-day-done"


@pytest.fixture(scope="module")
def daily(spark, crash_root, landing) -> tuple[Reference, Path]:
    return reference_and_first_day(spark, crash_root, landing, ORDERS_DAILY)


@pytest.fixture(scope="module")
def incremental(spark, crash_root, landing) -> tuple[Reference, Path]:
    """orders_incremental, a watermark job: the first-day snapshot has its watermark
    at D2."""
    return reference_and_first_day(spark, crash_root, landing, ORDERS_INCREMENTAL)


@pytest.fixture(scope="module")
def reference(daily: tuple[Reference, Path]) -> Reference:
    return daily[0]


@pytest.fixture(scope="module")
def first_day_done(daily: tuple[Reference, Path]) -> Path:
    """A lakehouse whose ledger holds D1 complete: copied by tests that crash in D2,
    so that a complete partition sits next to the crashed one without every test
    paying for a child to process it."""
    return daily[1]


def ledger_rows(spark: SparkSession, lake: Lake) -> list:
    return (
        Ledger(spark, lake.lakehouse.framework_table("ledger"))
        .frame()
        .where(F.col("job") == JOB_NAME)
        .select("partition", "attempt", "state", "run_id", "pid")
        .collect()
    )


def partition_state(spark: SparkSession, lake: Lake, day):
    return lake.states(spark).get(day)


# ---------------------------------------------------------------- 1. named crash points


def test_the_recovery_check_sees_duplicate_missing_and_changed_rows(spark, reference) -> None:
    """The checker itself can fail: one row doubled, one dropped, one amount changed."""
    rows = reference.restricted([D1]).silver.orderBy(KEY_COLUMN).collect()
    changed = rows[2].asDict()
    changed["amount"] += 1
    broken = spark.createDataFrame(
        [rows[0], rows[0], *rows[3:], Row(**changed)], reference.silver.schema
    )
    diff = diff_rows(broken, reference.restricted([D1]).silver)
    assert (diff.duplicates, diff.missing, diff.mismatched) == (1, 1, 1), diff
    assert diff_rows(reference.silver, reference.silver).clean


def test_every_crash_point_of_issue_3_exists() -> None:
    assert set(POINTS) >= BEFORE_TARGET_COMMIT | AFTER_TARGET_COMMIT, POINTS


JOBS = {ORDERS_DAILY.name: ORDERS_DAILY, ORDERS_INCREMENTAL.name: ORDERS_INCREMENTAL}
SCENARIO = {ORDERS_DAILY.name: "daily", ORDERS_INCREMENTAL.name: "incremental"}
# The target not committed yet (after_read; after_claim leaves the same), and every
# write done but the ledger's (after_target_commit; so does before_complete). The
# watermark job with its rejects committed and not its target (after_rejects_commit:
# its watermark stays at the crashed window, as after nothing committed), and at
# after_target_commit. Every point of POINTS is also killed and recovered by
# test_crash_your_own_job (crash_test kills a job at each point it passes), and
# after_rejects_commit of a partition job by test_file_source's kill test too.
PARTITION_POINTS = ("after_read", "after_target_commit")
WATERMARK_POINTS = ("after_rejects_commit", "after_target_commit")
POINTS_BY_JOB = [
    *((point, ORDERS_DAILY.name) for point in PARTITION_POINTS),
    *((point, ORDERS_INCREMENTAL.name) for point in WATERMARK_POINTS),
]


@pytest.mark.parametrize(("point", "job_name"), POINTS_BY_JOB)
def test_rerun_after_a_crash_at_each_point_equals_an_uninterrupted_run(
    request, spark, tmp_path, landing, point, job_name
) -> None:
    """The partition job runs D1..D3 with D1 complete, so that D2 and D3 are one work
    unit; the watermark job runs ``--to D2`` from its watermark D2. The child dies at the
    point in D2, and a plain rerun recovers. A kill inside a unit takes all of its
    partitions: neither D2 nor D3 is complete, and D3 is in the target commit exactly
    when D2 is. A watermark never moves past a window whose completion is not recorded,
    and needs no ``--force`` to finish a window whose data the crashed run committed.
    Once the unit's target commit exists, every write of it does: the rerun heals the
    unit from that commit and writes no target commit of its own."""
    job = JOBS[job_name]
    reference, first_day_done = request.getfixturevalue(SCENARIO[job_name])
    lake = new_lake(tmp_path, landing, template=first_day_done, job=job)
    dates = TWO_DAYS if job.watermark_start is not None else DATES
    unit = dates[1:]

    crashed = run_child(lake, dates, crash_at=f"{point}@{D2}")
    expect_exit(crashed, KILLED)
    # The crash happened where it says: the unit claimed, not complete, committed or not.
    committed = committed_partitions(lake.target_path)
    for day in unit:
        state = partition_state(spark, lake, day)
        assert state is not None and state.state != COMPLETE, (point, day, state)
        assert (day.isoformat() in committed) == (point in AFTER_TARGET_COMMIT), (point, day)
    if job.watermark_start is not None:
        assert lake.watermark(spark) == D2, "the watermark moved ahead of a crashed window"

    target_commits = len(commit_operations(lake.target_path))
    report = rerun(spark, lake, dates)
    if point in AFTER_TARGET_COMMIT:
        assert sorted(s.partition for s in report.healed) == unit, report.healed
        assert len(commit_operations(lake.target_path)) == target_commits, point
    if job.watermark_start is not None:
        assert lake.watermark(spark) == D3
    assert_recovered(spark, lake, reference.restricted(dates))


# ---------------------------------------------------------------- 2. random instants


def test_random_kills_then_a_rerun_equal_an_uninterrupted_run(
    spark, tmp_path, landing, reference
) -> None:
    seed = int(os.environ.get("NINELIVES_CRASH_SEED") or random.SystemRandom().randrange(2**32))
    print(f"random kill seed {seed}; replay with NINELIVES_CRASH_SEED={seed}")
    rng = random.Random(seed)
    lake = new_lake(tmp_path, landing, ORDERS_DAILY)

    history = []
    all_complete = False
    for _ in range(RANDOM_KILLS):
        # If the last run got to the end, force the next one so that it has work to lose.
        extra = ("--force",) if all_complete else ()
        child = start_run(lake, DATES, *extra)
        delay = rng.uniform(*KILL_WINDOW)
        killed = child.kill_after(delay)
        if not killed:
            expect_exit(child, 0)
        all_complete = not killed
        history.append(
            f"{' '.join(extra) or 'plain'} run {'killed' if killed else 'ended'} at {delay:.1f} s"
        )
    print("; ".join(history))

    rerun(spark, lake, DATES)
    assert_recovered(spark, lake, reference)


# ---------------------------------------------------------------- 3. commits in flight


def test_kill_during_the_target_merge_commit(
    spark, tmp_path, landing, first_day_done, reference
) -> None:
    """Two kills in the MERGE of D2, then a rerun: first the instant its data files
    appear in the partition folder (written, not committed), then, in the run that
    takes over, the instant its commit file appears in ``_delta_log`` (mid-commit)."""
    lake = new_lake(tmp_path, landing, ORDERS_DAILY, template=first_day_done)
    partition_dir = lake.target_path / f"order_date={D2}"
    log_dir = lake.target_path / "_delta_log"

    def data_files(before: set[str]) -> str | None:
        new = sorted(f for f in files_under(partition_dir) - before if f.endswith(".parquet"))
        return f"data files {new}" if new else None

    def commit_file(before: set[str]) -> str | None:
        new = sorted(files_under(log_dir) - before)
        return f"log entries {new}" if new else None

    for watch, folder in ((data_files, partition_dir), (commit_file, log_dir)):
        before, commits_before = files_under(folder), commit_operations(lake.target_path)
        child = start_run(lake, TWO_DAYS)
        # Should the first kill land after the commit, the second run heals D2 from it
        # and never writes the target: then there is no second moment to catch.
        caught = kill_when(child, functools.partial(watch, before), must_happen=watch is data_files)
        new_commits = commit_operations(lake.target_path)[len(commits_before) :]
        print(
            f"{'killed' if caught else 'ended'} after {child.seconds:.1f} s"
            f"{f' on {caught}' if caught else ''}; new target commits: {new_commits}"
        )

    rerun(spark, lake, TWO_DAYS)
    assert_recovered(spark, lake, reference.restricted(TWO_DAYS))


def test_kill_during_the_ledger_write_that_follows_the_target_commit(
    spark, tmp_path, landing, first_day_done, reference
) -> None:
    """Once D2's target commit exists, SIGKILL at the first file of the next ledger
    write (the one that would record ``complete``): data committed, ledger behind."""
    lake = new_lake(tmp_path, landing, ORDERS_DAILY, template=first_day_done)
    target_before = max(log_versions(lake.target_path))
    ledger_before: set[str] | None = None

    def seen() -> str | None:
        nonlocal ledger_before
        if ledger_before is None:
            if max(log_versions(lake.target_path), default=-1) > target_before:
                ledger_before = files_under(lake.ledger_path)
            return None
        new = sorted(files_under(lake.ledger_path) - ledger_before)
        return f"ledger files {new}" if new else None

    ledger_before_run = len(commit_operations(lake.ledger_path))
    child = start_run(lake, TWO_DAYS)
    caught = kill_when(child, seen)
    new_commits = commit_operations(lake.ledger_path)[ledger_before_run:]
    print(f"killed after {child.seconds:.1f} s on {caught}; new ledger commits: {new_commits}")

    rerun(spark, lake, TWO_DAYS)
    assert_recovered(spark, lake, reference.restricted(TWO_DAYS))


# ---------------------------------------------------------------- 3b. inside Delta's commits

TARGET_FOLDER = "silver/orders"
QUARANTINE_FOLDER = f"_ninelives/quarantine_{JOB_NAME}"
LEDGER_FOLDER = "_ninelives/ledger"
HISTORY_FOLDER = "_ninelives/run_history"

# On a fresh lakehouse, each table the framework writes, killed inside its very first
# commit: the ledger with its log folder just made (empty), the others with the commit
# staged beside its final name (the run history's carries its first row's data file).
# tests/test_leftovers.py runs every kind of leftover through every table in-process.
FIRST_COMMIT_POINTS = [
    f"log_folder_made@{LEDGER_FOLDER}",
    f"commit_staged@{TARGET_FOLDER}#0",
    f"commit_staged@{HISTORY_FOLDER}#0",
]
QUARANTINE_FIRST_COMMIT = f"commit_staged@{QUARANTINE_FOLDER}#0"


def killed_inside_first_commit(lake: Lake, crash_at: str) -> Path:
    """Run D1 on ``lake`` (fresh) until the kill inside a table's first commit; return
    that table's folder, which is there and holds no commit."""
    expect_exit(run_child(lake, [D1], crash_at=crash_at), KILLED)
    table = Path(lake.root) / crash_at.partition("@")[2].partition("#")[0]
    assert table.is_dir() and not log_versions(table), (crash_at, sorted(files_under(table)))
    return table


def assert_rerun_recovers(spark: SparkSession, lake: Lake, reference: Reference) -> None:
    """A rerun of D1 equals an uninterrupted run and is the history's only run."""
    history = RunHistory.of(spark, lake.lakehouse)
    report = rerun(spark, lake, [D1], observers=[HistoryObserver(history)])
    assert_recovered(spark, lake, reference.restricted([D1]))
    assert [r.run_id for r in history.recent(JOB_NAME)] == [report.run_id]


@pytest.mark.parametrize("crash_at", FIRST_COMMIT_POINTS)
def test_a_kill_inside_a_tables_first_commit_then_a_rerun_equals_an_uninterrupted_run(
    spark, tmp_path, landing, reference, crash_at
) -> None:
    lake = new_lake(tmp_path, landing, ORDERS_DAILY)
    killed_inside_first_commit(lake, crash_at)
    assert_rerun_recovers(spark, lake, reference)


def test_a_kill_inside_the_quarantines_first_commit_and_a_table_with_an_empty_log_folder(
    spark, tmp_path, landing, reference
) -> None:
    """D1's target committed, then the kill inside the quarantine's first commit. A copy
    of that lakehouse has a quarantine folder that holds only an empty ``_delta_log/``,
    as when the kill lands before the commit is staged. Both reruns recover (a table
    whose log holds no commit is no table: a rerun used to fail DELTA_TABLE_NOT_FOUND)."""
    lake = new_lake(tmp_path / "staged", landing, ORDERS_DAILY)
    quarantine = killed_inside_first_commit(lake, QUARANTINE_FIRST_COMMIT)
    staged = Path(lake.root)
    reproduction = new_lake(tmp_path / "empty-log", landing, ORDERS_DAILY, template=staged)
    emptied = Path(reproduction.root) / quarantine.relative_to(staged)
    shutil.rmtree(emptied)
    (emptied / "_delta_log").mkdir(parents=True)

    for each in (lake, reproduction):
        assert_rerun_recovers(spark, each, reference)
    rerun(spark, reproduction, [D1])  # and again: nothing left to do, nothing fails


@pytest.mark.parametrize("event", ["checkpoint_staged", "last_checkpoint_staged"])
def test_a_kill_while_delta_writes_a_checkpoint_then_a_rerun_equals_an_uninterrupted_run(
    spark, tmp_path, landing, first_day_done, reference, event
) -> None:
    """The ledger checkpoints every second version here, so D2's run writes one: killed
    with the checkpoint (or the ``_last_checkpoint`` hint after it) written beside its
    final name, not yet renamed into place."""
    lake = new_lake(tmp_path, landing, ORDERS_DAILY, template=first_day_done)
    spark.sql(
        f"ALTER TABLE delta.`{lake.ledger_path}` "
        "SET TBLPROPERTIES ('delta.checkpointInterval' = '2')"
    )
    crashed = run_child(lake, TWO_DAYS, crash_at=f"{event}@{LEDGER_FOLDER}")
    expect_exit(crashed, KILLED)

    rerun(spark, lake, TWO_DAYS)
    assert_recovered(spark, lake, reference.restricted(TWO_DAYS))


def test_a_kill_as_the_lease_renewer_commits_then_a_rerun_equals_an_uninterrupted_run(
    spark, tmp_path, landing, first_day_done, reference
) -> None:
    """Leases of 3 s are renewed every second, in the renewer's own thread: the first
    renewal of D2's lease takes the whole group down, wherever the main thread is."""
    lake = new_lake(tmp_path, landing, ORDERS_DAILY, template=first_day_done)
    with lake.conf.open("a") as conf:
        conf.write("\n[run]\nlease_seconds = 3\n")
    expect_exit(run_child(lake, TWO_DAYS, crash_at=RENEWAL_POINT), KILLED)
    state = partition_state(spark, lake, D2)
    assert state is not None and state.state != COMPLETE, state

    rerun(spark, lake, TWO_DAYS)
    assert_recovered(spark, lake, reference.restricted(TWO_DAYS))


# ---------------------------------------------------------------- 4-6. concurrent runners


HELD = re.compile(
    rf"ninelives: job {JOB_NAME} partition (\d{{4}}-\d\d-\d\d) is held by run (\S+) "
    r"\(host (\S+), pid (\d+)\) since (\S+);"
)


def test_two_runners_on_the_same_dates_one_works_the_other_exits_3(
    spark, tmp_path, landing, reference
) -> None:
    lake = new_lake(tmp_path, landing, ORDERS_DAILY)
    first, second = start_run(lake, TWO_DAYS), start_run(lake, TWO_DAYS)
    for child in (first, second):
        child.wait()
    assert sorted([first.rc, second.rc]) == [0, 3], (
        "expected one runner to finish (0) and the other to find the job held (3)\n"
        f"=== first ===\n{first.describe()}\n=== second ===\n{second.describe()}"
    )
    winner, loser = (first, second) if first.rc == 0 else (second, first)

    held = HELD.search(loser.stderr)
    assert held, f"the loser's message does not name the lease owner\n{loser.describe()}"
    _, owner_run, _, owner_pid, _ = held.groups()
    assert int(owner_pid) == winner.pid, (held.group(0), winner.pid)

    # Each partition processed once: one attempt, by the winner; one target commit.
    attempts = defaultdict(set)
    for row in ledger_rows(spark, lake):
        attempts[row.partition].add((row.attempt, row.run_id, row.pid))
    assert set(attempts) == set(TWO_DAYS), attempts
    for day, seen in attempts.items():
        assert seen == {(1, owner_run, winner.pid)}, (day, seen)
    commits = committed_partitions(lake.target_path)
    assert sorted(commits) == sorted(d.isoformat() for d in TWO_DAYS), commits
    assert_recovered(spark, lake, reference.restricted(TWO_DAYS))


def test_two_runners_on_different_dates_both_finish_and_no_commit_is_lost(
    spark, tmp_path, landing, reference
) -> None:
    lake = new_lake(tmp_path, landing, ORDERS_DAILY)  # fresh: they even race to create the tables
    first, second = start_run(lake, [D1]), start_run(lake, [D2])
    for child in (first, second):
        child.wait()
    expect_exit(first, 0)
    expect_exit(second, 0)

    quarantine = lake.path(f"_ninelives.quarantine_{JOB_NAME}")
    for table in (lake.target_path, lake.ledger_path, quarantine):
        assert_log_has_no_gap(table)
    for table in (lake.target_path, quarantine):
        assert sorted(set(committed_partitions(table))) == [D1.isoformat(), D2.isoformat()]
    states = defaultdict(set)
    for row in ledger_rows(spark, lake):
        states[row.partition].add(row.state)
    assert all(COMPLETE in states[d] for d in (D1, D2)), states
    assert_recovered(spark, lake, reference.restricted(TWO_DAYS))


def test_a_runner_killed_holding_its_lease_is_taken_over_by_the_next_plain_run(
    spark, tmp_path, landing, first_day_done, reference, capsys
) -> None:
    lake = new_lake(tmp_path, landing, ORDERS_DAILY, template=first_day_done)
    dead = run_child(lake, [D2], crash_at=f"after_claim@{D2}")
    expect_exit(dead, KILLED)
    claimed = partition_state(spark, lake, D2)
    assert claimed is not None and claimed.state != COMPLETE and claimed.pid == dead.pid, claimed

    # Immediately, without --wait and without any manual step, on the command line: the
    # CLI's entry point, in this process (another process than the dead one's).
    capsys.readouterr()
    assert main(run_args(lake, [D2])) == 0
    stderr = capsys.readouterr().err
    assert not HELD.search(stderr), stderr
    final = partition_state(spark, lake, D2)
    assert final.state == COMPLETE and final.attempt > claimed.attempt, (claimed, final)
    assert final.pid == os.getpid(), final
    assert_recovered(spark, lake, reference.restricted(TWO_DAYS))


# ---------------------------------------------------------------- soak


@pytest.mark.soak
@pytest.mark.timeout(24 * 3600)
def test_soak_200_random_kills(request, tmp_path) -> None:
    """``bench/soak.py --kills 200``: 0 duplicates, 0 missing, 0 mismatched rows.

    Hours long: it runs only when asked for, with ``pytest -m soak`` (``make soak``),
    not when this file is run as a whole."""
    if not re.search(r"(?<!not )\bsoak\b", request.config.getoption("markexpr") or ""):
        pytest.skip("a soak of 200 kills takes hours: run it with `pytest -m soak`")
    log = tmp_path / "soak.log"
    print(f"soak output: {log}")
    with log.open("w") as out:
        proc = subprocess.run(
            [sys.executable, "-m", "bench.soak", "--kills", "200", "--workdir", str(tmp_path)],
            cwd=REPO,
            env=child_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=24 * 3600,
        )
    lines = log.read_text().splitlines()
    tail = "\n".join(lines[-30:])
    results = [json.loads(line) for line in lines if line.startswith('{"kills"')]
    assert proc.returncode == 0 and results, f"soak exited {proc.returncode}\n{tail}"
    result = results[-1]
    assert result["kills"] >= 200, tail
    assert (result["duplicates"], result["missing"], result["mismatched"]) == (0, 0, 0), tail
