"""Named crash points for crash tests: ``NINELIVES_CRASH_AT=<point>[@<YYYY-MM-DD>]``.

At the named point (optionally only for one partition) the process kills its whole
process group with SIGKILL: driver, JVM and Python workers die at once, as in a real
``kill -9``. The variable is read once at import, so an unset variable costs one
``is None`` check per point.

:data:`POINTS` lie on a work unit's way through one attempt; a date names any of its
partitions (the whole unit dies). :data:`RENEWAL_POINT` is
in the lease renewer's background thread, as it is about to commit a renewal, whatever
the run's main thread is doing then. Points inside Delta's own commits, where no Python
code runs, are the crash kit's (``tests/crashkit.py``, ``JVM_POINTS``).
"""

from __future__ import annotations

import datetime as dt
import os
import signal
from collections.abc import Iterable

POINTS = (
    "after_claim",
    "after_read",
    "after_rejects_commit",
    "after_target_commit",
    "before_complete",
)
CHUNK_POINTS = ("after_chunk_commit", "after_last_chunk")
"""A partition in chunks (:mod:`framework.engine.chunks`): ``after_chunk_commit@<date>#<n>``
dies once n of its chunks are committed (any n without ``#``)."""
RENEWAL_POINT = "lease_renewal"

_SPEC = os.environ.get("NINELIVES_CRASH_AT") or None


def crash_points(name: str, partitions: Iterable[dt.date]) -> None:
    """:func:`crash_point` for each partition of a work unit: a spec naming any of them
    kills the whole unit there."""
    for partition in partitions:
        crash_point(name, partition)


def crash_point(name: str, partition: dt.date | None = None, count: int | None = None) -> None:
    """Die here with SIGKILL if ``NINELIVES_CRASH_AT`` names this point (and this
    partition, and this ``count`` when the spec ends in ``#<count>``)."""
    if _SPEC is None:
        return
    point, _, only = _SPEC.partition("@")
    only, _, times = only.partition("#")
    if point != name or (times and str(count) != times):
        return
    if not only or (partition is not None and only == partition.isoformat()):
        os.killpg(os.getpgid(0), signal.SIGKILL)
