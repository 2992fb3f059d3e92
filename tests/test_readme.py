"""The README's examples run as written: its Python blocks, in order, in one namespace,
from a new working directory (as a newcomer's would be): the job, its run from Python,
the crash test's definitions, and the ledger query. The README's own
``get_or_create_session`` returns the test session, so no second JVM starts. Data a
reader would have is the only thing added: a day of click lines where the README's job
reads them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", README.read_text(), re.M | re.S)


def test_the_readme_examples_run_as_written(
    spark: SparkSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    blocks = python_blocks()
    assert len(blocks) >= 3, "the README's examples moved: update this test"
    day = tmp_path / "lakehouse" / "landing" / "clicks" / "day=2024-01-15"
    day.mkdir(parents=True)
    clicks = [
        {"user_id": "u1", "day": "2024-01-15", "url": "/a", "ts": "2024-01-15T10:00:00"},
        {"user_id": "u1", "day": "2024-01-15", "url": "/a", "ts": "2024-01-15T11:00:00"},
        {"user_id": "u2", "day": "2024-01-15", "url": "/b", "ts": "2024-01-15T12:00:00"},
        {"user_id": "u3", "day": "2024-01-15", "url": None, "ts": "2024-01-15T13:00:00"},
    ]
    (day / "part-0.json").write_text("".join(json.dumps(c) + "\n" for c in clicks))
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "readme"}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)

    assert "0 ['complete']" in capsys.readouterr().out
    ledger = namespace["latest"].collect()  # type: ignore[attr-defined]
    assert [(r.job, str(r.partition), r.state) for r in ledger] == [
        ("clicks_daily", "2024-01-15", "complete")
    ]
    assert (ledger[0].rows_read, ledger[0].rows_written, ledger[0].rows_rejected) == (4, 2, 1)
    target = spark.read.format("delta").load(str(tmp_path / "lakehouse/silver/clicks"))
    assert sorted((r.user_id, r.url, str(r.ts)) for r in target.collect()) == [
        ("u1", "/a", "2024-01-15 11:00:00"),
        ("u2", "/b", "2024-01-15 12:00:00"),
    ]
