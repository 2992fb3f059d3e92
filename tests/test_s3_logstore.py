"""Delta tables on S3 through S3A, against a real S3 emulator (tests/s3_emulator.py):
the session writes, merges and reads them, and the project's log store
(framework/lake/jvm: ninelives.storage.S3ConditionalLogStore) lets S3 itself refuse a
second writer of a commit version. That two runners then lose no commit, end to end,
is tests/test_s3_lakehouse.py's."""

from __future__ import annotations

from chispa import assert_df_equality
from delta.tables import DeltaTable
from py4j.protocol import Py4JJavaError
from pyspark.sql import SparkSession

from framework.lake.session import S3_LOG_STORE
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
