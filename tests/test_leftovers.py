"""A table folder without a committed version is a table that does not exist yet.

A kill inside a table's first commit leaves its folder without a commit: an empty
``_delta_log/``, one that holds only a staged (temporary) commit file, or data files
that no commit names. Whatever it left, in every table the framework writes (target,
quarantine, ledger, run history), the next run creates the table and finishes the work.
The real kills that leave such folders are in ``tests/test_crash.py``.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

from pyspark.sql import SparkSession

from framework.core.config import Config
from framework.engine.runner import RunReport
from framework.lake.tables import Lakehouse
from framework.ops.history import HistoryObserver, RunHistory
from framework.state.ledger import COMPLETE, Ledger
from framework.testing import assert_same_rows
from jobs.orders_daily import JOB as ORDERS
from tests.helpers import delta_log, job_states, run

DAY = dt.date(2024, 1, 1)
QUARANTINE = f"_ninelives.quarantine_{ORDERS.name}"


def empty_log(table: Path) -> None:
    # Delta makes _delta_log/ as it makes the staged-commits folder inside it.
    (delta_log(table) / "_staged_commits").mkdir(parents=True, exist_ok=True)


def staged_commit(table: Path) -> None:
    empty_log(table)
    staged = delta_log(table) / ".00000000000000000000.json.5f0c1e6a.tmp"
    staged.write_text('{"commitInfo":{"operation":"WRITE"}}\n')


def orphan_data_file(table: Path) -> None:
    table.mkdir(parents=True, exist_ok=True)
    (table / "part-00000-5f0c1e6a-c000.snappy.parquet").write_bytes(b"PAR1 half a file")


# Each table gets another leftover, so that one run covers every kind.
LEFTOVERS = {
    ORDERS.sink.table: (empty_log,),
    QUARANTINE: (staged_commit,),
    "_ninelives.ledger": (orphan_data_file,),
    "_ninelives.run_history": (orphan_data_file, staged_commit),
}


def run_day(spark: SparkSession, lake: Lakehouse) -> RunReport:
    """A run of ``DAY`` that also appends to the run history, the fourth table."""
    return run(spark, lake, ORDERS, [DAY], observers=[HistoryObserver(RunHistory.of(spark, lake))])


def test_every_table_is_created_over_what_a_killed_first_commit_left(
    spark: SparkSession, sample_config: Config, tmp_path: Path
) -> None:
    lake = Lakehouse(sample_config.lakehouse)
    for name, leftovers in LEFTOVERS.items():
        for leave in leftovers:
            leave(Path(str(lake.table(name).path)))
        assert not lake.table(name).exists(spark), name

    assert run_day(spark, lake).exit_code == 0
    rerun = run_day(spark, lake)  # nothing left to do, and nothing fails
    assert (rerun.exit_code, rerun.results) == (0, [])

    clean = Lakehouse(sample_config.with_lakehouse_root(str(tmp_path / "clean")).lakehouse)
    assert run_day(spark, clean).exit_code == 0
    for name, columns in ((ORDERS.sink.table, ["*"]), (QUARANTINE, ["partition", "raw", "reason"])):
        assert_same_rows(
            lake.table(name).read(spark).select(*columns),
            clean.table(name).read(spark).select(*columns),
        )
    state = job_states(spark, lake, ORDERS.name)[DAY]
    assert (state.state, state.attempt) == (COMPLETE, 1)
    runs = RunHistory.of(spark, lake).recent(ORDERS.name)
    assert len(runs) == 2 and runs[0].run_id == rerun.run_id


def test_a_first_commit_by_another_process_is_seen_at_once(
    spark: SparkSession, sample_config: Config, tmp_path: Path
) -> None:
    """This process looks at the ledger while another one is inside its first commit,
    then that commit lands (a file copied in place, as another JVM's rename is): the
    ledger exists, and its states, what a claim reads, hold the other runner's rows."""
    lake = Lakehouse(sample_config.lakehouse)
    ledger = lake.framework_table("ledger")
    empty_log(Path(str(ledger.path)))
    assert not ledger.exists(spark)

    other = Lakehouse(sample_config.with_lakehouse_root(str(tmp_path / "other")).lakehouse)
    assert run_day(spark, other).exit_code == 0
    shutil.copytree(str(other.framework_table("ledger").path), str(ledger.path), dirs_exist_ok=True)

    assert ledger.exists(spark)
    state = Ledger(spark, ledger).states(ORDERS.name)[ORDERS.name][DAY]
    assert state.state == COMPLETE
