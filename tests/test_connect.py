"""The core suite again, through Spark Connect, as Databricks standard access mode,
serverless and Databricks Connect run it: each module is a child pytest with no JVM of
its own (``pytest --remote``), a Connect client of this session's JVM, where Spark's
Connect server is started on 127.0.0.1 (tests/conftest.py). Its crash test's children are Connect
clients too, killed with SIGKILL while the server lives on.

Each module is a case of its own, so that pytest-xdist spreads them over the workers;
a failure shows the child's summary and its failures.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# The modules marked ``connect``: runner, sinks, ledger, bad input, incremental runs,
# work units, and the crash kit on a user's job (kill -9 at every crash point).
CORE = (
    "test_runner",
    "test_sinks",
    "test_ledger",
    "test_bad_input",
    "test_incremental",
    "test_units",
    "test_crash_your_own_job",
)


def test_the_core_modules_are_the_ones_marked_connect() -> None:
    marked = {
        path.stem
        for path in (REPO / "tests").glob("test_*.py")
        if re.search(r"^pytestmark = pytest\.mark\.connect$", path.read_text(), re.M)
    }
    assert marked == set(CORE)


@pytest.mark.timeout(1500)
@pytest.mark.parametrize("module", CORE)
def test_the_core_suite_passes_through_spark_connect(
    connect_server: str, module: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    child = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            f"tests/{module}.py",
            "--remote",
            connect_server,
            "-m",
            "not soak",
            "-p",
            "no:xdist",
            "-p",
            "no:cacheprovider",
            "-q",
            "-rfE",
            "--basetemp",
            str(tmp_path / "connect"),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    tail = "\n".join(child.stdout.splitlines()[-80:]) + child.stderr[-3000:]
    assert child.returncode == 0, f"pytest --remote {module}: exit {child.returncode}\n{tail}"
    summary = child.stdout.strip().splitlines()[-1]
    assert re.search(r"\d+ passed", summary) and "failed" not in summary, summary
