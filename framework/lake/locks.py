"""Cross-process write locks for Delta tables on a local filesystem.

Delta commits by creating ``_delta_log/<version>.json`` only if it does not exist; on
a local filesystem that check is guarded only inside one JVM, so two processes can both
write version N and one commit is silently lost. Every write to a local table therefore
holds an OS file lock (``flock``) beside the table, ``<schema dir>/.<table>.lock``, for
the whole operation: snapshot read, write and commit. The kernel drops the lock when its
process dies, so a ``kill -9`` never leaves a stale lock behind.

Storage that arbitrates commits itself needs no lock and gets none: Unity Catalog tables
(Databricks), and paths with a scheme (``abfss://``, ``gs://``, ``hdfs://``). S3 does so
only through a log store that writes a commit if absent: the framework's own
(:data:`S3_LOG_STORE`, S3's conditional PUT, the local sessions' default) or Delta's
DynamoDB one. Delta's default for S3 writes blindly, and two writers can both write
version N: :func:`check_commits_arbitrated` refuses to run on such a lakehouse.
"""

from __future__ import annotations

import os
import threading
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

from filelock import FileLock
from pyspark.sql import SparkSession

from framework.core.errors import ConfigError
from framework.lake.session import S3_LOG_STORE
from framework.lake.storage import scheme
from framework.lake.tables import Lakehouse, TableRef

_LOCKS: dict[str, FileLock] = {}
_GUARD = threading.Lock()


# Log stores that commit a version only if no other writer has: S3's conditional PUT,
# or Delta's DynamoDB table of commits.
_ARBITRATING = frozenset({S3_LOG_STORE, "io.delta.storage.S3DynamoDBLogStore"})


def check_commits_arbitrated(spark: SparkSession, lakehouse: Lakehouse) -> None:
    """Raise :class:`ConfigError` (one line naming the setting) for a path lakehouse on
    S3 whose Delta log store lets two writers lose a commit. On Databricks the platform
    arbitrates S3 commits itself."""
    if lakehouse.is_catalog or "DATABRICKS_RUNTIME_VERSION" in os.environ:
        return
    name = scheme(lakehouse.root)
    if name not in ("s3", "s3a", "s3n"):
        return
    key = f"spark.delta.logStore.{name}.impl"
    store = spark.conf.get(key, None) or "Delta's default"
    if store not in _ARBITRATING:
        raise ConfigError(
            f"lakehouse {lakehouse.root}: the log store for {name}:// ({store}) can lose a "
            f"commit when two runners write at once; set {key} = {S3_LOG_STORE}"
        )


def needs_lock(ref: TableRef) -> bool:
    return ref.path is not None and "://" not in ref.path


def write_lock(ref: TableRef) -> AbstractContextManager[object]:
    """Hold while writing ``ref``; re-entrant within a thread, exclusive across processes."""
    if not needs_lock(ref):
        return nullcontext()
    table = Path(str(ref.path))
    lock_path = str(table.parent / f".{table.name}.lock")
    with _GUARD:
        lock = _LOCKS.get(lock_path)
        if lock is None:
            table.parent.mkdir(parents=True, exist_ok=True)
            # flock only: a soft lock file would survive a kill -9 of its owner.
            lock = _LOCKS[lock_path] = FileLock(lock_path, fallback_to_soft=False)
    return lock
