"""One Delta-enabled Spark session for the whole test run; a fresh lakehouse per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from framework.config import Config, SparkConfig
from framework.session import local_session_builder

TEST_SPARK = SparkConfig(master="local[2]", app_name="ninelives-tests", shuffle_partitions=2)


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
