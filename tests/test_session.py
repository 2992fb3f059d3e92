from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from framework.core.config import Config
from framework.lake.session import get_or_create_session
from framework.testing import child_env
from tests.helpers import TEST_JAVA_OPTIONS


def test_session_writes_and_reads_delta(spark, config: Config, lakehouse: Path) -> None:
    assert get_or_create_session(config) is spark
    path = str(lakehouse / "t")
    spark.range(3).write.format("delta").save(path)
    assert sorted(r.id for r in spark.read.format("delta").load(path).collect()) == [0, 1, 2]


def test_the_configs_driver_java_options_are_kept_beside_the_quiet_log_switch(spark) -> None:
    """The test session's config gives the driver Java options of its own (``extra``);
    the quiet log switch is added to them, and the running JVM has both."""
    runtime = spark.sparkContext._jvm.java.lang.management.ManagementFactory.getRuntimeMXBean()
    arguments = list(runtime.getInputArguments())
    for option in TEST_JAVA_OPTIONS.split():
        assert option in arguments, arguments
    assert any(a.startswith("-Dlog4j2.configurationFile=") for a in arguments), arguments


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
