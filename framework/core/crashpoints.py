"""Named crash points for crash tests: ``NINELIVES_CRASH_AT=<point>[@<YYYY-MM-DD>]``.

At the named point (optionally only for one partition) the process kills its whole
process group with SIGKILL: driver, JVM and Python workers die at once, as in a real
``kill -9``. The variable is read once at import, so an unset variable costs one
``is None`` check per point.

:data:`POINTS` lie on a work unit's way through one attempt; a date names any of its
partitions (the whole unit dies). :data:`RENEWAL_POINT` is
in the lease renewer's background thread, as it is about to commit a renewal, whatever
the run's main thread is doing then. Points inside Delta's own commits, where no Python
code runs, are the crash kit's (:mod:`framework.testing.children`, ``JVM_POINTS``).

:func:`recording` lists the points a run in this process passes, each with the spec
that kills there: the crash kit runs a job once uninterrupted under it, then kills a
child run at each point it recorded.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

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


@dataclass(frozen=True)
class PassedPoint:
    """A crash point a run passed: its name, the partitions of the unit (or the one
    partition) it passed it for, and the chunk count of a chunk point."""

    point: str
    partitions: tuple[dt.date, ...] = ()
    count: int | None = None

    @property
    def spec(self) -> str:
        """The ``NINELIVES_CRASH_AT`` value that kills a run here: the unit's first
        partition names the whole unit."""
        spec = self.point
        if self.partitions:
            spec += f"@{self.partitions[0].isoformat()}"
        if self.count is not None:
            spec += f"#{self.count}"
        return spec


# Lists that :func:`recording` fills; empty (one falsy check per point) unless a test
# records. Appends from the lease renewer's thread are safe: list.append is atomic.
_recorders: list[list[PassedPoint]] = []


@contextmanager
def recording() -> Iterator[list[PassedPoint]]:
    """Record the crash points this process passes while the block runs, in order.

    Example::

        with recording() as passed:
            run_job(spark, lakehouse, job, RunRequest.for_dates(dates))
        specs = [p.spec for p in passed]   # "after_claim@2024-01-01", ...
    """
    passed: list[PassedPoint] = []
    _recorders.append(passed)
    try:
        yield passed
    finally:
        _recorders.remove(passed)


def _record(point: PassedPoint) -> None:
    for passed in _recorders:
        passed.append(point)


def crash_points(name: str, partitions: Iterable[dt.date]) -> None:
    """:func:`crash_point` for each partition of a work unit: a spec naming any of them
    kills the whole unit there."""
    unit = tuple(partitions)
    if _recorders and unit:
        _record(PassedPoint(name, unit))
    for partition in unit:
        _die_if_named(name, partition)


def crash_point(name: str, partition: dt.date | None = None, count: int | None = None) -> None:
    """Die here with SIGKILL if ``NINELIVES_CRASH_AT`` names this point (and this
    partition, and this ``count`` when the spec ends in ``#<count>``)."""
    if _recorders:
        _record(PassedPoint(name, () if partition is None else (partition,), count))
    _die_if_named(name, partition, count)


def _die_if_named(name: str, partition: dt.date | None = None, count: int | None = None) -> None:
    if _SPEC is None:
        return
    point, _, only = _SPEC.partition("@")
    only, _, times = only.partition("#")
    if point != name or (times and str(count) != times):
        return
    if not only or (partition is not None and only == partition.isoformat()):
        os.killpg(os.getpgid(0), signal.SIGKILL)
