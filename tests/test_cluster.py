"""spark-submit on a real Spark standalone cluster, kill -9 of the driver, resubmit.

A master and one worker (1 core, 1g) are started from the installed pyspark on
127.0.0.1 (:mod:`tests.clusterkit`). The project wheel is built once and
``jobs/orders_daily.py`` is submitted to ``spark://127.0.0.1:<port>`` with the wheel
as ``--py-files`` and Delta's jars as ``--jars``, exactly as a user would:

1. the first submission dies by SIGKILL of the driver's process group (the
   ``after_target_commit`` crash point of the second date: its quarantine and target
   commits exist, its ledger row does not);
2. the same command, resubmitted without the crash point, exits 0: it skips the first
   date and heals the second from its target commit, writing no commit of its own;
3. the lakehouse then equals an uninterrupted in-process run over the same landing
   files: target rows (chispa, audit columns aside), no duplicate ``_key``, every
   ledger state complete with counts equal to the reference's, same quarantine.

Both submissions must show that they ran on the cluster: the driver connected to the
master, the master lists the application as completed, and the worker ran the
application's tasks in an executor that fetched the wheel. The cluster is torn down
whatever happens.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from framework.core.config import load_config
from framework.core.keys import KEY_COLUMN
from framework.lake.tables import Lakehouse
from framework.state.ledger import COMPLETE, Ledger
from framework.testing import (
    KILLED,
    Child,
    assert_recovered,
    assert_same_rows,
    committed_partitions,
    expect_exit,
    reference_run,
)
from jobs.landing import sample_dates, seed_orders
from jobs.orders_daily import JOB as ORDERS_DAILY
from tests.clusterkit import REPO, StandaloneCluster, build_wheel, standalone_cluster, start_submit

JOB_NAME = ORDERS_DAILY.name
TARGET = ORDERS_DAILY.sink.table

DAYS = 2
ROWS_PER_DAY = 100
D1, D2 = DATES = sample_dates(DAYS)
SCRIPT = REPO / "jobs" / "orders_daily.py"
CRASH_AT = f"after_target_commit@{D2}"
APP_ID = re.compile(r"Granted executor ID (app-\d{14}-\d{4})/\d+")

# Cluster start, wheel, two submissions and the checks: about 2-3 minutes on two idle
# cores; a busy machine (another suite alongside) can triple that.
pytestmark = pytest.mark.timeout(1800)


def write_conf(path: Path, landing: Path) -> Path:
    path.write_text(f'[lakehouse]\nlanding = "{landing.resolve()}"\n')
    return path


def ran_on_cluster(child: Child, cluster: StandaloneCluster) -> str:
    """The application id of a submission whose driver connected to ``cluster`` and was
    granted an executor on its worker; fails with the driver's stderr otherwise."""
    stderr = child.stderr
    assert f"Connecting to master {cluster.url}" in stderr, (
        f"the driver did not connect to {cluster.url}\n{child.describe()}"
    )
    found = APP_ID.search(stderr)
    assert found, f"no executor was granted on the cluster\n{child.describe()}"
    return found.group(1)


def executor_ran_tasks(cluster: StandaloneCluster, app_id: str, wheel: Path) -> None:
    """The worker ran ``app_id``'s tasks in an executor that fetched the wheel."""
    executors = sorted((cluster.work_dir / app_id).glob("*"))
    assert executors, f"the worker has no executor folder for {app_id} in {cluster.work_dir}"
    assert any((e / wheel.name).is_file() for e in executors), (
        f"no executor of {app_id} fetched {wheel.name}"
    )
    assert any("Finished task" in (e / "stderr").read_text(errors="replace") for e in executors), (
        f"no executor of {app_id} finished a task"
    )


def test_spark_submit_on_a_standalone_cluster_survives_kill_9_of_the_driver(
    spark: SparkSession, tmp_path: Path
) -> None:
    started = time.monotonic()
    phases: dict[str, float] = {}

    def phase(name: str, since: float) -> float:
        now = time.monotonic()
        phases[name] = now - since
        return now

    try:
        # Landing files and the uninterrupted reference, in-process (local session).
        landing = tmp_path / "landing"
        seed_orders(spark, str(landing), days=DAYS, rows_per_day=ROWS_PER_DAY)
        reference_root = tmp_path / "reference"
        reference_config = load_config(
            write_conf(tmp_path / "reference.toml", landing), lakehouse=str(reference_root)
        )
        reference = reference_run(spark, reference_config, DATES, ORDERS_DAILY)
        mark = phase("seed + reference", started)

        wheel = build_wheel(tmp_path / "wheel")
        mark = phase("wheel", mark)

        lake_root = tmp_path / "lakehouse"
        conf = write_conf(tmp_path / "ninelives.toml", landing)
        config = load_config(conf, lakehouse=str(lake_root))
        args = [
            "--from",
            D1.isoformat(),
            "--to",
            D2.isoformat(),
            "--lakehouse",
            str(lake_root),
            "--conf",
            str(conf),
            # A unit per date: a complete date next to the crashed one (the crash suite
            # kills inside units of several dates).
            "--max-partitions-per-unit",
            "1",
        ]
        logs = tmp_path / "submit-logs"

        with standalone_cluster(tmp_path / "spark", cores=1, memory="1g") as cluster:
            mark = phase("cluster start", mark)

            # 1. The driver kills its whole process group once D2's target commit exists.
            crashed = start_submit(cluster, wheel, SCRIPT, args, logs, crash_at=CRASH_AT)
            crashed.wait()
            expect_exit(crashed, KILLED)
            crashed_app = ran_on_cluster(crashed, cluster)
            mark = phase("crashed submission", mark)

            lakehouse = Lakehouse(config.lakehouse)
            ledger = Ledger(spark, lakehouse.framework_table("ledger"))
            states = ledger.states(JOB_NAME)[JOB_NAME]
            assert states[D1].state == COMPLETE, states
            assert states[D2].state != COMPLETE, states
            target_path = Path(str(lakehouse.table(TARGET).path))
            committed = committed_partitions(target_path)
            assert committed == [D1.isoformat(), D2.isoformat()], committed

            # The master notices the dead driver and frees the worker's core.
            cluster.wait_idle()

            # 2. The same command again, without the crash point.
            rerun = start_submit(cluster, wheel, SCRIPT, args, logs)
            rerun.wait()
            expect_exit(rerun, 0)
            rerun_app = ran_on_cluster(rerun, cluster)
            # D1 stays as it was; D2 is healed from its commits, nothing recomputed.
            assert "1 partition(s) planned" in rerun.stdout, rerun.stdout
            assert "1 skipped as already complete" in rerun.stdout, rerun.stdout
            assert "1 healed from their Delta commits" in rerun.stdout, rerun.stdout
            mark = phase("resubmission", mark)

            state = cluster.wait_idle()
            completed = {app["id"]: app for app in state["completedapps"]}
            assert {crashed_app, rerun_app} <= completed.keys(), state
            assert completed[rerun_app]["state"] == "FINISHED", completed[rerun_app]
            for app_id in (crashed_app, rerun_app):
                executor_ran_tasks(cluster, app_id, wheel)

        # 3. The lakehouse equals the uninterrupted run.
        target = lakehouse.table(TARGET).read(spark)
        assert_same_rows(target, reference.silver)
        duplicates = target.groupBy(KEY_COLUMN).count().where(F.col("count") > 1).count()
        assert duplicates == 0, f"{duplicates} duplicate {KEY_COLUMN} value(s) in {TARGET}"
        states = ledger.states(JOB_NAME)[JOB_NAME]
        assert {d: s.state for d, s in states.items()} == dict.fromkeys(DATES, COMPLETE), states
        assert states[D1].attempt == 1, states[D1]
        committed = committed_partitions(target_path)
        assert committed == [D1.isoformat(), D2.isoformat()], committed
        assert_recovered(spark, config, reference)
        phase("checks", mark)
    finally:
        total = time.monotonic() - started
        detail = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in phases.items())
        print(f"\ncluster test: {total:.1f} s in total ({detail})")
