"""Cross-process write locks for Delta tables on a local filesystem.

Delta commits by creating ``_delta_log/<version>.json`` only if it does not exist; on
a local filesystem that check is guarded only inside one JVM, so two processes can both
write version N and one commit is silently lost. Every write to a local table therefore
holds an OS file lock (``flock``) beside the table, ``<schema dir>/.<table>.lock``, for
the whole operation: snapshot read, write and commit. The kernel drops the lock when its
process dies, so a ``kill -9`` never leaves a stale lock behind.

Storage that arbitrates commits itself needs no lock and gets none: Unity Catalog tables
(Databricks), and paths with a scheme (``abfss://``, ``gs://``, ``hdfs://``; ``s3://``
only with Delta's DynamoDB log store, ``spark.delta.logStore.s3.impl =
io.delta.storage.S3DynamoDBLogStore``, without which S3 has the same lost-commit problem).
"""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

from filelock import FileLock

from framework.lake.tables import TableRef

_LOCKS: dict[str, FileLock] = {}
_GUARD = threading.Lock()


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
