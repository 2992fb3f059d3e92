"""Delta tables on S3 through S3A, against a real S3 emulator (tests/s3_emulator.py):
the session writes, merges and reads them, and the project's log store
(framework/lake/jvm: ninelives.storage.S3ConditionalLogStore) lets S3 itself refuse a
second writer of a commit version, so that two drivers committing to one table at the
same time lose no commit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from chispa import assert_df_equality
from delta.tables import DeltaTable
from py4j.protocol import Py4JJavaError
from pyspark.sql import SparkSession

from framework.lake.session import S3_LOG_STORE
from framework.testing import TINY_DATA_CONFS, child_env
from tests.s3_emulator import S3Emulator

SCHEMA = "id long, name string"


def test_the_session_writes_merges_and_reads_a_delta_table_on_s3(
    s3_spark: SparkSession, s3: S3Emulator
) -> None:
    spark = s3_spark
    assert spark.conf.get("spark.delta.logStore.s3a.impl") == S3_LOG_STORE
    path = f"{s3.bucket('lake-merge')}/t"
    spark.createDataFrame([(1, "a"), (2, "b")], SCHEMA).write.format("delta").save(path)
    updates = spark.createDataFrame([(2, "B"), (3, "c")], SCHEMA)
    (
        DeltaTable.forPath(spark, path)
        .alias("t")
        .merge(updates.alias("u"), "t.id = u.id")
        .whenMatchedUpdateAll()
        .whenNotMatchedInsertAll()
        .execute()
    )
    expected = spark.createDataFrame([(1, "a"), (2, "B"), (3, "c")], SCHEMA)
    actual = spark.read.format("delta").load(path)
    assert_df_equality(actual, expected, ignore_row_order=True)
    log = s3.keys("lake-merge", "t/_delta_log/")
    assert "t/_delta_log/00000000000000000000.json" in log, log
    assert "t/_delta_log/00000000000000000001.json" in log, log


def _log_store_write(spark: SparkSession, url: str, line: str, overwrite: bool) -> None:
    jvm = spark._jvm
    hadoop = spark.sparkContext._jsc.hadoopConfiguration()
    store = getattr(jvm, S3_LOG_STORE)(hadoop)
    actions = jvm.java.util.ArrayList([line]).iterator()
    store.write(jvm.org.apache.hadoop.fs.Path(url), actions, overwrite, hadoop)


def test_the_log_store_refuses_a_second_write_of_a_version(
    s3_spark: SparkSession, s3: S3Emulator
) -> None:
    """S3 decides (a conditional PUT): the second writer of version 5 gets
    FileAlreadyExistsException, the object keeps the first writer's content; writing
    the very same bytes again (an SDK retry of a PUT that had landed) is no conflict;
    an overwrite (Delta's _last_checkpoint) is a plain PUT."""
    key = "t/_delta_log/00000000000000000005.json"
    url = f"{s3.bucket('lake-refuse')}/{key}"
    _log_store_write(s3_spark, url, '{"first":1}', overwrite=False)
    try:
        _log_store_write(s3_spark, url, '{"second":2}', overwrite=False)
    except Py4JJavaError as e:
        error = e.java_exception
        assert error.getClass().getName() == "java.nio.file.FileAlreadyExistsException"
        cause = error.getCause().getClass().getName()
        assert cause == "org.apache.hadoop.fs.s3a.RemoteFileChangedException", cause
    else:
        raise AssertionError("a second write of version 5 was accepted")
    assert s3.get("lake-refuse", key) == b'{"first":1}\n'
    _log_store_write(s3_spark, url, '{"first":1}', overwrite=False)
    _log_store_write(s3_spark, url, '{"third":3}', overwrite=True)
    assert s3.get("lake-refuse", key) == b'{"third":3}\n'


WRITERS = 2
COMMITS = 8


def test_two_drivers_committing_to_one_table_at_once_lose_no_commit(
    s3_spark: SparkSession, s3: S3Emulator, tmp_path: Path
) -> None:
    """Two child processes, each its own JVM and driver, append COMMITS single-row
    commits each to one table at the same time: every row is there, in a commit of its
    own. With an exists-then-put log store both drivers can take the same version and
    one commit vanishes."""
    path = f"{s3.bucket('lake-race')}/t"
    spark = s3_spark
    spark.createDataFrame([], "writer string, i int").write.format("delta").save(path)
    barrier = tmp_path / "ready"
    barrier.mkdir()
    confs = json.dumps({**TINY_DATA_CONFS, **s3.hadoop_confs})
    # Each child's output to a file of its own: a pipe that nobody reads while the test
    # waits for the other child could fill up and stall it.
    logs = [tmp_path / f"w{n}.log" for n in range(WRITERS)]
    children = []
    for n, log in enumerate(logs):
        argv = ["tests.s3_committer", path, f"w{n}", str(COMMITS), str(barrier), str(WRITERS)]
        with log.open("w") as out:
            children.append(
                subprocess.Popen(
                    [sys.executable, "-m", *argv, confs],
                    env=child_env(),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )
    for child, log in zip(children, logs, strict=True):
        assert child.wait(timeout=240) == 0, log.read_text()[-3000:]
    rows = spark.read.format("delta").load(path).collect()
    expected = {(f"w{n}", i) for n in range(WRITERS) for i in range(COMMITS)}
    assert sorted((r.writer, r.i) for r in rows) == sorted(expected)
    history = DeltaTable.forPath(spark, path).history().collect()
    assert len(history) == 1 + WRITERS * COMMITS
    commits = [k for k in s3.keys("lake-race", "t/_delta_log/") if k.endswith(".json")]
    assert len(commits) == 1 + WRITERS * COMMITS, commits
