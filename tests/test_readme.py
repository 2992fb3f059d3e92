"""The README's examples run as written: its Python blocks, in order, in one fresh
process whose working directory is a new folder (as a newcomer's would be): the job,
its run from Python, and the ledger query. Data a reader would have is the only thing
added: a day of click lines where the README's job reads them."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", README.read_text(), re.M | re.S)


def test_the_readme_examples_run_as_written(tmp_path: Path) -> None:
    python = blocks("python")
    assert len(python) >= 3, "the README's examples moved: update this test"
    day = tmp_path / "lakehouse" / "landing" / "clicks" / "day=2024-01-15"
    day.mkdir(parents=True)
    clicks = [
        {"user_id": "u1", "day": "2024-01-15", "url": "/a", "ts": "2024-01-15T10:00:00"},
        {"user_id": "u1", "day": "2024-01-15", "url": "/a", "ts": "2024-01-15T11:00:00"},
        {"user_id": "u2", "day": "2024-01-15", "url": "/b", "ts": "2024-01-15T12:00:00"},
        {"user_id": "u3", "day": "2024-01-15", "url": None, "ts": "2024-01-15T13:00:00"},
    ]
    (day / "part-0.json").write_text("".join(json.dumps(c) + "\n" for c in clicks))
    checks = textwrap.dedent(
        """
        ledger = latest.collect()
        assert [(r.job, str(r.partition), r.state) for r in ledger] == [
            ("clicks_daily", "2024-01-15", "complete")
        ], ledger
        assert (ledger[0].rows_read, ledger[0].rows_written, ledger[0].rows_rejected) == (4, 2, 1)
        target = spark.read.format("delta").load("lakehouse/silver/clicks")
        latest = sorted((r.user_id, r.url, str(r.ts)) for r in target.collect())
        assert latest == [("u1", "/a", "2024-01-15 11:00:00"), ("u2", "/b", "2024-01-15 12:00:00")]
        """
    )
    script = tmp_path / "readme_examples.py"
    script.write_text("\n".join([*python, checks]))
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert "0 ['complete']" in done.stdout
