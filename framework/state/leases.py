"""Leases: which runner may work on a partition, and for how long.

A ``running`` ledger row is a lease held by its ``run_id`` on ``host``/``pid`` until
``lease_expires_at``. A live runner renews its leases (:class:`LeaseRenewer`). A lease
can be taken over once it has expired, or at once when its owner is provably dead: same
host, and no live process with that pid started before the lease (pid reuse cannot fool
it). A live lease is never taken.

Example::

    held = {p: s for p, s in states.items() if is_held(s, now, host)}
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import threading
from collections.abc import Callable, Iterable
from types import TracebackType

import psutil

from framework.state.ledger import RUNNING, PartitionState, utcnow

# Runs in progress in this process: a lease owned by this pid but by none of these runs
# belongs to a run that ended without releasing it (an exception, a notebook cell).
_ACTIVE_RUNS: set[str] = set()


def this_host() -> str:
    return socket.gethostname()


def owner_is_dead(state: PartitionState, host: str) -> bool:
    """True only when the owner certainly no longer runs: same host, process gone."""
    if state.host != host or state.pid is None:
        return False
    if state.pid == os.getpid():
        return state.run_id not in _ACTIVE_RUNS
    try:
        process = psutil.Process(state.pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return True
        started = dt.datetime.fromtimestamp(process.create_time(), dt.timezone.utc)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return isinstance(state.pid, int) and not psutil.pid_exists(state.pid)
    lease_start = state.started_at or state.recorded_at
    if lease_start is None:
        return False
    if lease_start.tzinfo is None:
        lease_start = lease_start.astimezone(dt.timezone.utc)
    # A process that started after the lease was taken reuses the pid of a dead owner.
    return started > lease_start + dt.timedelta(seconds=1)


def is_expired(state: PartitionState, now: dt.datetime) -> bool:
    expires = state.lease_expires_at
    if expires is None:
        return True
    if expires.tzinfo is None:
        expires = expires.astimezone(dt.timezone.utc)
    return expires <= now


def is_held(state: PartitionState | None, now: dt.datetime, host: str) -> bool:
    """A live lease of another runner: the partition must not be touched."""
    return (
        state is not None
        and state.state == RUNNING
        and not is_expired(state, now)
        and not owner_is_dead(state, host)
    )


def held_message(job: str, state: PartitionState) -> str:
    since = (state.started_at or state.recorded_at or utcnow()).isoformat(timespec="seconds")
    expires = state.lease_expires_at
    until = expires.isoformat(timespec="seconds") if expires else "?"
    return (
        f"job {job} partition {state.partition} is held by run {state.run_id} "
        f"(host {state.host}, pid {state.pid}) since {since}; rerun with --wait to wait "
        f"for it; its lease expires at {until} unless renewed"
    )


class LeaseRenewer:
    """Renews leases in a background thread while partitions are processed.

    ``renew`` is called with the states still held every ``interval`` seconds; it must
    use a SparkSession of its own (:func:`~framework.lake.session.own_sessions`) because
    the main session carries a MERGE's transaction settings while it writes.
    """

    def __init__(
        self,
        run_id: str,
        interval: float,
        renew: Callable[[Iterable[PartitionState]], None],
    ) -> None:
        self.run_id = run_id
        self.interval = interval
        self._renew = renew
        self._held: dict[dt.date, PartitionState] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="ninelives-lease", daemon=True)

    def hold(self, states: Iterable[PartitionState]) -> None:
        with self._lock:
            self._held.update({s.partition: s for s in states})

    def release(self, partition: dt.date) -> None:
        with self._lock:
            self._held.pop(partition, None)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                held = list(self._held.values())
            if held:
                try:
                    self._renew(held)
                except Exception:  # a missed renewal is retried; the lease has slack
                    continue

    def __enter__(self) -> LeaseRenewer:
        _ACTIVE_RUNS.add(self.run_id)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        _ACTIVE_RUNS.discard(self.run_id)
