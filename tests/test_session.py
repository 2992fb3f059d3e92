from __future__ import annotations

from pathlib import Path

from framework.config import Config
from framework.session import get_or_create_session


def test_session_writes_and_reads_delta(spark, config: Config, lakehouse: Path) -> None:
    assert get_or_create_session(config) is spark
    path = str(lakehouse / "t")
    spark.range(3).write.format("delta").save(path)
    assert sorted(r.id for r in spark.read.format("delta").load(path).collect()) == [0, 1, 2]
