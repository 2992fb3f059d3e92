"""One Delta-enabled Spark session for the whole test run; a fresh lakehouse per test;
a webhook receiver for the tests that send alerts.

A classic test session also serves Spark Connect once a test asks for it (Spark's own
server, in its JVM, on 127.0.0.1 and a free port). ``pytest --remote sc://...`` runs
the tests marked ``connect`` as a client of such a server, in a process with no JVM, as
on Databricks standard access mode;
``tests/test_connect.py`` does that in ``make test``. ``pytest --connect`` runs them as
a client of the server in its own JVM. PySpark picks the flavour of its functions per
process, so a test process is all classic or all Connect.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest
from pyspark.sql import SparkSession

from framework.core.config import Config, SparkConfig
from framework.lake.session import DRIVER_JAVA_OPTIONS, local_session_builder
from framework.testing import TINY_DATA_CONFS
from tests.helpers import TEST_JAVA_OPTIONS, Webhook, free_port
from tests.s3_emulator import S3Emulator

# Tests talk to nothing but this machine.
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")

TEST_SPARK = SparkConfig(
    master="local[2]",
    app_name="ninelives-tests",
    shuffle_partitions=1,
    extra={**TINY_DATA_CONFS, DRIVER_JAVA_OPTIONS: TEST_JAVA_OPTIONS},
)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--connect",
        action="store_true",
        help="run the tests marked 'connect' through Spark Connect, as a client of the "
        "server in this process's JVM",
    )
    parser.addoption(
        "--remote",
        metavar="URL",
        help="run the tests marked 'connect' as a client of this Spark Connect server "
        "(sc://host:port), with no JVM in this process",
    )


def through_connect(config: pytest.Config) -> bool:
    return bool(config.getoption("--connect") or config.getoption("--remote"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not through_connect(config):
        return
    kept = [item for item in items if item.get_closest_marker("connect")]
    config.hook.pytest_deselected(items=[item for item in items if item not in kept])
    items[:] = kept
    for item in kept:
        classic = item.get_closest_marker("classic")
        if classic is not None:
            item.add_marker(pytest.mark.skip(reason=f"classic only: {classic.args[0]}"))


def connect_server_confs(port: int) -> dict[str, str]:
    """Where a session's Spark Connect server listens, once started: 127.0.0.1:``port``."""
    return {
        "spark.connect.grpc.binding.address": "127.0.0.1",
        "spark.connect.grpc.binding.port": str(port),
    }


# This process's: every pytest-xdist worker has a JVM, and a port, of its own.
_SERVER_PORT = free_port()


def start_connect_server(classic: SparkSession) -> str:
    """Start Spark Connect's server in ``classic``'s JVM, as Spark's Connect plugin does
    at a session's start, but only once a test needs it (a server that no test uses
    would cost the other tests its event listener); its ``sc://`` URL."""
    jvm = classic.sparkContext._jvm
    service = jvm.org.apache.spark.sql.connect.service.SparkConnectService
    service.start(classic.sparkContext._jsc.sc())
    return f"sc://127.0.0.1:{_SERVER_PORT}"  # set at the session's start


@pytest.fixture(scope="session")
def connect_server(spark: SparkSession) -> str:
    """The Spark Connect server in the classic test session's JVM: its ``sc://`` URL."""
    return start_connect_server(spark)


def _connect_client(remote: str) -> SparkSession:
    """A Spark Connect session on ``remote``. Set as pyspark's own builder sets them: from
    now on this process's functions build Connect columns, and the crash tests' children
    (``SPARK_REMOTE``) connect there too."""
    from pyspark.sql.connect.session import SparkSession as ConnectSession

    os.environ["SPARK_CONNECT_MODE_ENABLED"] = "1"
    os.environ["SPARK_REMOTE"] = remote
    return cast(SparkSession, ConnectSession.builder.remote(remote).getOrCreate())


@pytest.fixture(scope="session")
def spark(pytestconfig: pytest.Config) -> Iterator[SparkSession]:
    remote = pytestconfig.getoption("--remote")
    if remote:
        session = _connect_client(remote)
        yield session
        session.stop()
        return
    builder = local_session_builder(TEST_SPARK)
    for key, value in connect_server_confs(_SERVER_PORT).items():
        builder = builder.config(key, value)
    classic = builder.getOrCreate()
    classic.sparkContext.setLogLevel("ERROR")
    if not pytestconfig.getoption("--connect"):
        yield classic
        classic.stop()
        return
    session = _connect_client(start_connect_server(classic))
    yield session
    session.stop()
    classic.stop()


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
