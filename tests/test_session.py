from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from framework.core.config import Config, load_config
from framework.lake.session import (
    DRIVER_JAVA_OPTIONS,
    S3_LOG_STORE,
    delta_jars,
    get_or_create_session,
    local_session_builder,
)
from framework.testing import child_env
from tests.helpers import TEST_JAVA_OPTIONS


def test_session_writes_and_reads_delta(spark, config: Config, lakehouse: Path) -> None:
    assert get_or_create_session(config) is spark
    path = str(lakehouse / "t")
    spark.range(3).write.format("delta").save(path)
    assert sorted(r.id for r in spark.read.format("delta").load(path).collect()) == [0, 1, 2]


def test_the_session_writes_and_reads_avro(spark, tmp_path: Path) -> None:
    """Spark's Avro source comes from the project's jar folder (spark-avro)."""
    path = str(tmp_path / "avro")
    spark.range(3).write.format("avro").save(path)
    assert sorted(r.id for r in spark.read.format("avro").load(path).collect()) == [0, 1, 2]


def test_the_configs_driver_java_options_are_kept_beside_the_quiet_log_switch(spark) -> None:
    """The test session's config gives the driver Java options of its own (``extra``);
    the quiet log switch is added to them, and the running JVM has both."""
    runtime = spark.sparkContext._jvm.java.lang.management.ManagementFactory.getRuntimeMXBean()
    arguments = list(runtime.getInputArguments())
    for option in TEST_JAVA_OPTIONS.split():
        assert option in arguments, arguments
    assert any(a.startswith("-Dlog4j2.configurationFile=") for a in arguments), arguments


def test_a_users_driver_java_options_in_the_config_survive_into_the_builder(
    tmp_path: Path,
) -> None:
    """``[spark] extra`` with driver Java options of the user's own: the local builder
    keeps them, after the framework's quiet log switch (so that a log configuration of
    the user's wins). Read from the builder, no JVM started."""
    user_options = "-Dninelives.example=1 -Xss4m"
    conf = tmp_path / "ninelives.toml"
    conf.write_text(f'[spark]\nextra = {{ "{DRIVER_JAVA_OPTIONS}" = "{user_options}" }}\n')
    config = load_config(conf)
    assert config.spark.quiet
    options = local_session_builder(config.spark)._options[DRIVER_JAVA_OPTIONS]
    quiet_log, _, rest = options.partition(" ")
    assert quiet_log.startswith("-Dlog4j2.configurationFile=file:"), options
    assert quiet_log.endswith("/log4j2.properties"), options
    assert rest == user_options, options


def test_the_s3_log_store_is_a_local_default_that_the_config_can_replace(tmp_path: Path) -> None:
    """With the project's jar folder, s3a:// and s3:// tables get the project's
    conditional-PUT log store; a ``[spark] extra`` setting of the user's wins."""
    config = load_config()
    if not any(jar.endswith("ninelives-storage.jar") for jar in delta_jars(config.spark)):
        pytest.skip("no jar folder with the project's log store (make setup builds it)")
    options = local_session_builder(config.spark)._options
    assert options["spark.delta.logStore.s3a.impl"] == S3_LOG_STORE
    assert options["spark.delta.logStore.s3.impl"] == S3_LOG_STORE
    assert options["spark.hadoop.fs.s3.impl"] == "org.apache.hadoop.fs.s3a.S3AFileSystem"
    theirs = "io.delta.storage.S3SingleDriverLogStore"
    conf = tmp_path / "ninelives.toml"
    conf.write_text(f'[spark]\nextra = {{ "spark.delta.logStore.s3a.impl" = "{theirs}" }}\n')
    options = local_session_builder(load_config(conf).spark)._options
    assert options["spark.delta.logStore.s3a.impl"] == theirs


def seed_command(lakehouse: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    """``ninelives seed`` of one small date, as a separate process with its own (light,
    :func:`framework.testing.child_env`) JVM."""
    argv = [sys.executable, "-m", "framework.cli", "seed", "--days", "1", "--rows-per-day", "5"]
    argv += ["--lakehouse", str(lakehouse), *flags]
    return subprocess.run(
        argv, env=child_env(), capture_output=True, text=True, timeout=300, check=False
    )


def test_verbose_shows_the_jvms_start_up_notices(tmp_path: Path) -> None:
    """``--verbose`` shows Spark's log as Spark sets it; without it those notices are
    hidden (checked on the out-of-memory child in tests/test_failures.py, whose stderr
    is otherwise full of what a person must see)."""
    verbose = seed_command(tmp_path / "verbose", "--verbose")
    assert verbose.returncode == 0, verbose.stderr
    assert verbose.stdout.startswith("seeded 5 lines"), verbose.stdout
    assert "WARNING: Using incubator modules" in verbose.stderr, verbose.stderr
    assert 'Setting default log level to "WARN"' in verbose.stderr, verbose.stderr
