"""One Delta-enabled Spark session for the whole test run; a fresh lakehouse per test;
a webhook receiver for the tests that send alerts."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from framework.core.config import Config, SparkConfig
from framework.lake.session import DRIVER_JAVA_OPTIONS, local_session_builder
from framework.testing import TINY_DATA_CONFS
from tests.helpers import TEST_JAVA_OPTIONS, Webhook
from tests.s3_emulator import S3Emulator

# Tests talk to nothing but this machine.
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")

TEST_SPARK = SparkConfig(
    master="local[2]",
    app_name="ninelives-tests",
    shuffle_partitions=1,
    extra={**TINY_DATA_CONFS, DRIVER_JAVA_OPTIONS: TEST_JAVA_OPTIONS},
)


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    session = local_session_builder(TEST_SPARK).getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture
def lakehouse(tmp_path: Path) -> Path:
    root = tmp_path / "lakehouse"
    root.mkdir()
    return root


@pytest.fixture
def config(lakehouse: Path) -> Config:
    return Config(spark=TEST_SPARK).with_lakehouse_root(str(lakehouse))


SAMPLE_DAYS = 3
SAMPLE_ROWS_PER_DAY = 100


@pytest.fixture(scope="session")
def sample_landing(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Seeded landing files for three days, shared read-only by the tests."""
    from jobs.landing import seed_orders

    root = tmp_path_factory.mktemp("sample") / "landing"
    seed_orders(spark, str(root), days=SAMPLE_DAYS, rows_per_day=SAMPLE_ROWS_PER_DAY)
    return root


@pytest.fixture
def sample_config(config: Config, sample_landing: Path, tmp_path: Path) -> Config:
    """A lakehouse whose landing folder is a private copy of the sample landing data."""
    import dataclasses
    import shutil

    landing = tmp_path / "landing"
    shutil.copytree(sample_landing, landing)
    return dataclasses.replace(
        config, lakehouse=dataclasses.replace(config.lakehouse, landing=str(landing))
    )


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    """A chat webhook receiver on 127.0.0.1, serving for the length of the test."""
    hook = Webhook()
    hook.thread.start()
    yield hook
    hook.server.shutdown()
    hook.server.server_close()


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Emulator]:
    """An S3 emulator on 127.0.0.1 for the whole run: ``.bucket(name)`` makes a bucket
    and gives its ``s3a://`` URL; ``.hadoop_confs`` and ``.env`` point a child process's
    session or a Python client at it."""
    emulator = S3Emulator()
    yield emulator
    emulator.stop()


@pytest.fixture
def s3_spark(spark: SparkSession, s3: S3Emulator) -> SparkSession:
    """The test session, its S3A pointed at the emulator (the Delta log store for
    s3a:// is already the session's, from framework.lake.session). Set on the running
    session's Hadoop configuration, which Delta copies for every table it opens."""
    hadoop = spark.sparkContext._jsc.hadoopConfiguration()
    for key, value in s3.s3a_settings.items():
        hadoop.set(key, value)
    return spark
