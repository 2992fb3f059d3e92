"""A lakehouse on S3, for real: the orders job with its lakehouse root and its landing
files in ``s3a://`` buckets of an S3 emulator on 127.0.0.1 (moto's server, started and
stopped by the ``s3`` fixture). Spark goes through Hadoop's S3A and the framework's
conditional-PUT log store, the listing through s3fs, the no-JVM control plane through
delta-rs; all three are pointed at the emulator by ``[lakehouse] s3_*`` alone, the
credentials by the AWS variables every client reads.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from framework.core.config import Config, load_config
from framework.core.errors import ConfigError
from framework.lake.locks import check_commits_arbitrated
from framework.lake.session import S3_LOG_STORE
from framework.lake.tables import Lakehouse
from framework.state.ledger import COMPLETE
from framework.testing import (
    assert_same_rows,
    child_env,
    crash_test,
    expect_exit,
    new_lake,
    start_run,
    without_audit,
    write_conf,
)
from jobs.landing import sample_dates
from jobs.orders_daily import JOB as ORDERS_DAILY
from tests.helpers import ledger_of, run
from tests.s3_emulator import ACCESS_KEY, REGION, SECRET_KEY, S3Emulator

D1, D2 = DATES = sample_dates(2)


@pytest.fixture(autouse=True)
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """As a user's environment gives them, to S3A, s3fs, delta-rs and child runs alike
    (the endpoint comes from the lakehouse config, not from here)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_REGION", REGION)


@pytest.fixture
def settings(s3: S3Emulator) -> dict[str, str | bool]:
    """The ``[lakehouse]`` keys of a lakehouse on the emulator."""
    return {"s3_endpoint": s3.endpoint, "s3_path_style": True, "s3_region": REGION}


@pytest.fixture
def s3_landing(s3: S3Emulator, sample_landing: Path) -> str:
    """The sample landing files (three days of orders), in a bucket of their own."""
    url = s3.bucket("landing-orders")
    if not s3.keys("landing-orders"):
        for file in sorted(p for p in sample_landing.rglob("*") if p.is_file()):
            key = file.relative_to(sample_landing).as_posix()
            s3.client.upload_file(str(file), "landing-orders", key)
    return url


def ninelives_status(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``ninelives status`` of orders_daily as a child process (the no-JVM path first)."""
    command = [sys.executable, "-m", "framework.cli", "status", ORDERS_DAILY.name, *args]
    return subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=180, check=False
    )


def test_the_orders_job_on_s3_end_to_end_and_a_kill_9_then_rerun_equals_an_uninterrupted_run(
    s3_spark: SparkSession, s3: S3Emulator, s3_landing: str, settings, sample_config, tmp_path
) -> None:
    """crash_test on S3: an uninterrupted run (the reference), and a run killed after the
    target's commit and before the ledger says so, whose rerun finds that commit by its
    tag in the S3 log and completes the dates without writing them twice. The reference
    holds what a run of the same files on a local disk holds; a rerun of it does
    nothing; ``status`` reads its ledger on S3 without a JVM (delta-rs)."""
    spark = s3_spark
    root = f"{s3.bucket('lake-crash')}/crash"
    report = crash_test(
        spark,
        ORDERS_DAILY,
        s3_landing,
        DATES,
        tmp_path,
        points=[f"after_target_commit@{D1}"],
        random_kills=0,
        root=root,
        lakehouse=settings,
    )
    assert [(c.killed, c.recovered) for c in report.cases] == [(True, True)], report.cases
    assert str(report.cases[0].lake.root).startswith(f"{root}/01-after_target_commit")

    local = run(spark, sample_config, ORDERS_DAILY, DATES)
    for result in local.results:
        counts = report.reference.counts[result.partition]
        assert counts == {name: getattr(result, name) for name in counts}, result.partition
    local_target = Lakehouse(sample_config.lakehouse).table(ORDERS_DAILY.sink.table)
    assert_same_rows(
        without_audit(report.reference.silver), without_audit(local_target.read(spark))
    )

    conf = tmp_path / "reference" / "ninelives.toml"
    on_s3 = load_config(conf, lakehouse=f"{root}/reference")
    assert run(spark, on_s3, ORDERS_DAILY, DATES).results == []  # nothing left to do
    status = ninelives_status(
        "--json", "--from", str(D1), "--to", str(D2),
        "--lakehouse", on_s3.lakehouse.root, "--conf", str(conf),
    )  # fmt: skip
    assert status.returncode == 0, status.stderr
    assert "with Spark" not in status.stderr, status.stderr
    assert json.loads(status.stdout)["summary"] == {COMPLETE: 2}, status.stdout


def test_two_runners_on_a_fresh_s3_lakehouse_both_finish_and_no_commit_is_lost(
    s3_spark: SparkSession, s3: S3Emulator, s3_landing: str, settings, tmp_path
) -> None:
    """Two runners on other dates race to create the ledger, the quarantine and the
    target on S3 and to commit to them: S3 itself refuses a second writer of a version
    (the log store), Delta retries, and every commit is there."""
    root = f"{s3.bucket('lake-two')}/lake"
    lake = new_lake(tmp_path, s3_landing, ORDERS_DAILY, root=root, lakehouse=settings)
    first, second = start_run(lake, [D1]), start_run(lake, [D2])
    for child in (first, second):
        child.wait()
    expect_exit(first, 0)
    expect_exit(second, 0)

    for table in (
        "silver/orders",
        "_ninelives/ledger",
        f"_ninelives/quarantine_{ORDERS_DAILY.name}",
    ):
        versions = sorted(
            int(Path(k).stem)
            for k in s3.keys("lake-two", f"lake/{table}/_delta_log/")
            if k.endswith(".json") and "/_staged_commits/" not in k
        )
        assert versions == list(range(len(versions))), (table, versions)
    spark = s3_spark
    states = defaultdict(set)
    for row in ledger_of(spark, lake.config).frame().collect():
        states[row.partition].add(row.state)
    assert all(COMPLETE in states[d] for d in DATES), states
    target = lake.lakehouse.table(ORDERS_DAILY.sink.table).read(spark)
    written = sum(
        ledger_of(spark, lake.config).states(ORDERS_DAILY.name)[ORDERS_DAILY.name][d].rows_written
        for d in DATES
    )
    assert target.count() == written > 0
    assert target.select("_key").distinct().count() == written


def test_a_run_refuses_an_s3_lakehouse_whose_log_store_can_lose_a_commit(
    s3_spark: SparkSession,
) -> None:
    spark = s3_spark
    lake = Lakehouse(Config().with_lakehouse_root("s3a://lake-any/lake").lakehouse)
    assert spark.conf.get("spark.delta.logStore.s3a.impl") == S3_LOG_STORE
    check_commits_arbitrated(spark, lake)  # the framework's own: accepted
    key = "spark.delta.logStore.s3a.impl"
    spark.conf.set(key, "org.apache.spark.sql.delta.storage.S3SingleDriverLogStore")
    try:
        with pytest.raises(ConfigError, match=rf"set {key} = {S3_LOG_STORE}$"):
            check_commits_arbitrated(spark, lake)
    finally:
        spark.conf.set(key, S3_LOG_STORE)
    check_commits_arbitrated(spark, Lakehouse(Config().lakehouse))  # local: not S3's concern


def test_an_s3_lakehouse_without_credentials_is_one_line_naming_the_cause(
    s3: S3Emulator, settings, tmp_path
) -> None:
    """Neither delta-rs nor S3A finds credentials: the notice that the no-JVM read fell
    back to Spark, then one line that says the storage refused, and exit 1, not an
    "internal error" and not a traceback."""
    conf = write_conf(tmp_path / "s3.toml", f"{s3.bucket('lake-nocreds')}/landing", settings)
    env = {k: v for k, v in child_env().items() if not k.startswith("AWS_")}
    status = ninelives_status(
        "--date", str(D1), "--lakehouse", "s3a://lake-nocreds/lake", "--conf", str(conf),
        env=env,
    )  # fmt: skip
    assert status.returncode == 1, status.stderr
    last = status.stderr.strip().splitlines()[-1]
    assert last.startswith("ninelives: cannot reach the storage: AccessDeniedException"), last
    assert "Credentials" in last and "Traceback" not in status.stderr, status.stderr
