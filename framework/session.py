"""Build or reuse the SparkSession. Nothing here runs at import time.

Where a session is active (Databricks, a notebook, a test fixture) it is reused as is:
Delta is already there. Otherwise a local Delta-enabled session is built from
:class:`~framework.config.SparkConfig`.

Example::

    spark = get_or_create_session(load_config())
"""

from __future__ import annotations

import os
from pathlib import Path

from pyspark.sql import SparkSession

from framework.config import Config, SparkConfig

DELTA_CONFS = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}

# Local defaults that matter on a small machine: the Spark UI costs a port and a
# thread pool per session; Delta's snapshot state uses 50 partitions by default,
# which on two cores makes every small log read slower than the data it describes.
LOCAL_CONFS = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.databricks.delta.snapshotPartitions": "2",
    "spark.sql.session.timeZone": "UTC",
}


def delta_jars(spark_config: SparkConfig) -> list[str]:
    """Jars in the project's Delta jar folder (``NINELIVES_JARS_DIR`` wins over config)."""
    folder = Path(os.environ.get("NINELIVES_JARS_DIR") or spark_config.delta_jars_dir)
    return sorted(str(p.resolve()) for p in folder.glob("*.jar")) if folder.is_dir() else []


def local_session_builder(spark_config: SparkConfig) -> SparkSession.Builder:
    """A builder for a local Delta session; the caller calls ``getOrCreate()``."""
    builder = (
        SparkSession.builder.master(spark_config.master)
        .appName(spark_config.app_name)
        .config("spark.sql.shuffle.partitions", str(spark_config.shuffle_partitions))
        .config("spark.driver.memory", spark_config.driver_memory)
    )
    for key, value in {**DELTA_CONFS, **LOCAL_CONFS, **spark_config.extra}.items():
        builder = builder.config(key, value)
    log_config = Path(__file__).with_name("log4j2.properties")
    builder = builder.config(
        "spark.driver.extraJavaOptions", f"-Dlog4j2.configurationFile={log_config.as_uri()}"
    )
    jars = delta_jars(spark_config)
    if jars:
        return builder.config("spark.jars", ",".join(jars))
    from delta import configure_spark_with_delta_pip

    return configure_spark_with_delta_pip(builder)


def under_spark_submit() -> bool:
    """True when spark-submit launched this driver: it has already chosen the master,
    the jars and the driver's memory, which a local builder must not override."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def submitted_session_builder(spark_config: SparkConfig) -> SparkSession.Builder:
    """A builder for a driver launched by spark-submit: only the SQL settings, and only
    those the command line did not give (``--conf`` and ``--name`` win).

    Delta itself comes from the cluster (Databricks) or from ``--packages`` /
    ``--jars`` on the spark-submit command line.
    """
    from pyspark import SparkConf

    submitted = dict(SparkConf().getAll())
    wanted = {
        **DELTA_CONFS,
        "spark.sql.shuffle.partitions": str(spark_config.shuffle_partitions),
        "spark.sql.session.timeZone": "UTC",
        **spark_config.extra,
    }
    builder = SparkSession.builder
    for key, value in wanted.items():
        if key not in submitted:
            builder = builder.config(key, value)
    return builder


def get_or_create_session(config: Config) -> SparkSession:
    """The active session if there is one (Databricks, notebooks, tests); under
    spark-submit a session on the submitted master; else a new local Delta session."""
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    if under_spark_submit():
        return submitted_session_builder(config.spark).getOrCreate()
    return local_session_builder(config.spark).getOrCreate()
