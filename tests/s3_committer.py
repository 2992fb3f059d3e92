"""A child process of tests/test_s3_logstore.py: one more driver committing to a Delta
table on S3, as a second nightly job on another machine would.

``python -m tests.s3_committer TABLE WRITER COMMITS BARRIER WRITERS CONFS_JSON``: builds
its own local session (its own JVM) with the given Spark settings, waits until
``WRITERS`` children are ready (a file each in the folder ``BARRIER``), so that their
commits overlap, then appends ``COMMITS`` single-row commits of ``(WRITER, i)``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    table, writer, commits, barrier, writers, confs = argv
    from framework.core.config import SparkConfig
    from framework.lake.session import local_session_builder

    spark_config = SparkConfig(
        master="local[1]",
        app_name=f"s3-committer-{writer}",
        shuffle_partitions=1,
        extra=json.loads(confs),
    )
    spark = local_session_builder(spark_config).getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    rows = [
        spark.createDataFrame([(writer, i)], "writer string, i int") for i in range(int(commits))
    ]
    # Warm up (S3A, the AWS SDK and Delta's read path load their classes) before the
    # barrier, so that the commits of the children overlap as much as possible.
    spark.read.format("delta").load(table).count()
    ready = Path(barrier)
    (ready / writer).touch()
    deadline = time.monotonic() + 120
    while len(list(ready.iterdir())) < int(writers) and time.monotonic() < deadline:
        time.sleep(0.02)
    for row in rows:
        row.write.format("delta").mode("append").save(table)
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
