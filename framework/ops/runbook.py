"""The runbook: for the partitions shown, what failed and why, and what the recovery
command will do: which partitions it processes, which complete ones it leaves untouched,
whose leases it takes over, which dates in chunks it resumes. Pure logic over ledger
states; :mod:`framework.ops.report` renders it.

Example::

    recovery = plan_recovery("orders_daily", dates, states, cli_options=" --lakehouse /lh")
    recovery.commands[-1]   # 'ninelives run orders_daily --from 2024-01-02 --to 2024-01-03 ...'
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from framework.core.dates import date_range, iso
from framework.state.leases import is_held, this_host
from framework.state.ledger import COMPLETE, FAILED, RUNNING, PartitionState, utcnow

MISSING = "missing"


STATUS_STATES = (COMPLETE, FAILED, RUNNING, MISSING)
"""What ``status --state`` accepts: the ledger states plus ``missing`` (never run)."""


# Why a partition failed, by error class, and what to do before rerunning.
_HINTS = {
    "SourceMissingError": (
        "the source has no data for the date. Check that its delivery arrived (the path is "
        "in the message); a rerun reads it again"
    ),
    "SchemaMismatchError": (
        "the source or the transform output lacks a column the job declares. Fix the data "
        "or the job first; a rerun with the same input fails the same way"
    ),
    "AccountingError": (
        "read != written + rejected + duplicates, so nothing was marked complete. A rerun "
        "recomputes the partition; if it fails again, report it as a bug with this message"
    ),
    "FencedError": (
        "a newer unit of the job committed first and this attempt's result was discarded; "
        "the run claims the partition again unless a newer attempt holds it, and a rerun "
        "skips it if that attempt completed"
    ),
    "AbandonedAttempt": (
        "the runner died (kill, out of memory, lost node) before its writes all reached "
        "Delta; a rerun processes the partition again from its source"
    ),
    "KeyColumnTypeError": "a key column has a type without a canonical encoding: fix the job",
    "TargetMissingError": (
        "the target table was deleted or moved while the ledger still counts partitions in "
        "it: put it back, or rebuild it with the --force command the message gives"
    ),
    "OutOfMemoryError": (
        "Spark's driver ran out of memory and died. The same command with the same settings "
        "dies the same way: raise [spark] driver_memory in the config (spark-submit: "
        "--driver-memory), or run smaller units (--unit-size) or give the job fewer rows per "
        "partition, then rerun"
    ),
    "DriverDied": (
        "Spark's driver JVM exited mid-attempt, most often killed by the system for memory: "
        "check the machine's memory and [spark] driver_memory, then rerun"
    ),
}


# By Spark's error condition, for errors whose class is Spark's or Delta's.
_CONDITION_HINTS = {
    "FAILED_READ_FILE.FILE_NOT_EXIST": (
        "input files were removed or replaced while the run read them; a rerun lists the "
        "folder again"
    ),
    "DELTA_UNSUPPORTED_FEATURES_FOR_READ": (
        "a newer Delta wrote this table with a feature this version cannot read: upgrade "
        "delta-spark, or ask whoever changed the table; a rerun fails the same way"
    ),
    "DELTA_METADATA_CHANGED": (
        "another writer changed the table's schema or properties at the same moment: "
        "transient, a rerun retries"
    ),
}


_DISK_FULL_HINT = (
    "the disk under the table is full: free space (or VACUUM old versions), then rerun"
)


_CONCURRENCY_HINT = (
    "another writer committed to the same table at the same moment: transient, a rerun retries"
)


_UPSTREAM_HINT = "an upstream job is not complete for the date: complete it first (command below)"


_DEFAULT_HINT = (
    "unexpected error: read the message; set NINELIVES_DEBUG=1 on the rerun for the traceback"
)


def state_name(state: PartitionState | None) -> str:
    return state.state if state is not None else MISSING


def error_hint(error_class: str | None, error_message: str | None = None) -> str:
    """One sentence: why a partition with this error failed and what a rerun does about it."""
    name, _, condition = (error_class or "").partition(":")
    if name in _HINTS:
        return _HINTS[name]
    if "No space left on device" in (error_message or ""):
        return _DISK_FULL_HINT
    if condition in _CONDITION_HINTS:
        return _CONDITION_HINTS[condition]
    if "upstream job" in (error_message or ""):
        return _UPSTREAM_HINT
    if name.startswith("Concurrent") or "ConcurrentModification" in name:
        return _CONCURRENCY_HINT
    return _DEFAULT_HINT


def dates_text(dates: Iterable[dt.date], limit: int = 8) -> str:
    """``2024-01-01..2024-01-03, 2024-01-07``: consecutive dates folded into ranges."""
    runs: list[list[dt.date]] = []
    for d in sorted(set(dates)):
        if runs and d - runs[-1][-1] == dt.timedelta(days=1):
            runs[-1].append(d)
        else:
            runs.append([d])
    parts = [f"{r[0]}..{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs]
    if len(parts) > limit:
        return ", ".join(parts[:limit]) + f" and {len(parts) - limit} more"
    return ", ".join(parts)


def first_line(text: str | None, width: int = 160) -> str:
    return (text or "").strip().splitlines()[0][:width] if (text or "").strip() else ""


def recovery_command(
    job: str, bad: Sequence[dt.date], cli_options: str = "", *, wait: bool = False
) -> str:
    """One command that reruns exactly the partitions that are not complete.

    A plain rerun skips complete partitions, so a range covering the bad ones is exact.
    """
    first, last = min(bad), max(bad)
    dates = f"--date {first}" if first == last else f"--from {first} --to {last}"
    return f"ninelives run {job} {dates}{' --wait' if wait else ''}{cli_options}"


@dataclass(frozen=True)
class Recovery:
    """The runbook for a set of partitions, and the commands that recover them.

    ``commands`` are to be run in order; the last one reruns the job itself. Empty when
    every partition shown is complete.
    """

    lines: tuple[str, ...]
    commands: tuple[str, ...]
    to_process: tuple[dt.date, ...] = ()
    untouched: tuple[dt.date, ...] = ()
    taken_over: tuple[dt.date, ...] = ()
    waited_for: tuple[dt.date, ...] = ()


def _owner(state: PartitionState) -> str:
    return f"run {state.run_id}, pid {state.pid} on {state.host}"


def plan_recovery(
    job: str,
    shown: Sequence[dt.date],
    states: Mapping[dt.date, PartitionState],
    *,
    cli_options: str = "",
    upstream: Mapping[str, Mapping[dt.date, PartitionState]] | None = None,
    now: dt.datetime | None = None,
    host: str | None = None,
) -> Recovery:
    """What went wrong with the ``shown`` partitions, and what the recovery command does.

    :param states: the newest ledger state of every partition of ``job`` (not only the
        shown ones: the command covers a date range, and complete dates inside it are
        reported as untouched).
    :param upstream: newest states of the jobs ``job`` depends on; partitions missing
        there get a command of their own, to run first.
    :param now: and ``host`` decide whether a ``running`` lease is still held
        (defaults: the current time and this host).

    Example::

        recovery = plan_recovery("orders_daily", dates, states)
        print("\\n".join(recovery.lines))
    """
    now = now or utcnow()
    host = host or this_host()
    bad = [p for p in shown if state_name(states.get(p)) != COMPLETE]
    if not bad:
        return Recovery(("Nothing to recover: every partition shown is complete.",), ())

    span = date_range(min(bad), max(bad))
    pending = [p for p in span if state_name(states.get(p)) != COMPLETE]
    untouched = [p for p in span if state_name(states.get(p)) == COMPLETE]
    live = [p for p in pending if is_held(states.get(p), now, host)]
    dead = [p for p in pending if state_name(states.get(p)) == RUNNING and p not in live]
    processed = [p for p in pending if p not in live]

    lines = ["What happened:"]
    failed = [states[p] for p in bad if state_name(states.get(p)) == FAILED]
    by_class: dict[str, list[PartitionState]] = {}
    for state in failed:
        by_class.setdefault(state.error_class or "unknown error", []).append(state)
    for error_class, group in sorted(by_class.items(), key=lambda kv: -len(kv[1])):
        example = group[0]
        lines.append(
            f"  {len(group)} failed with {error_class}: {dates_text(s.partition for s in group)}"
        )
        when = iso(example.finished_at or example.recorded_at)
        lines.append(
            f"    e.g. {example.partition}, attempt {example.attempt} of run {example.run_id}"
            f"{' at ' + when if when else ''}: {first_line(example.error_message, 300)}"
        )
        lines.append(f"    why: {error_hint(error_class, example.error_message)}")
    dead_shown = [p for p in bad if p in dead]
    for p in dead_shown:
        lines.append(
            f"  {p} is running but its runner is gone ({_owner(states[p])}): "
            "the lease is expired or its process is dead"
        )
    for p in (p for p in bad if p in live):
        state = states[p]
        lines.append(
            f"  {p} is being processed by a live runner ({_owner(state)}, "
            f"lease until {iso(state.lease_expires_at)})"
        )
    missing = [p for p in bad if p not in states]
    if missing:
        lines.append(f"  {len(missing)} never run: {dates_text(missing)}")

    commands: list[str] = []
    first_steps: list[str] = []
    for name, upstream_states in sorted((upstream or {}).items()):
        needed = [p for p in processed if state_name(upstream_states.get(p)) != COMPLETE]
        if needed:
            commands.append(recovery_command(name, needed, cli_options))
            first_steps.append(
                f"  first, the upstream job {name} must complete {dates_text(needed)}: "
                f"{commands[-1]}"
            )
    final = recovery_command(job, bad, cli_options, wait=bool(live))
    commands.append(final)

    lines.append(f"What `{final}` does:")
    lines.extend(first_steps)
    if processed:
        lines.append(
            f"  processes {len(processed)} partition(s), each as a new attempt: "
            f"{dates_text(processed)}"
        )
        lines.extend(_resumes(processed, states))
    if untouched:
        lines.append(
            f"  skips {len(untouched)} complete partition(s) in {span[0]}..{span[-1]} "
            f"({dates_text(untouched)}): they are neither read nor written"
        )
    outside = [p for p in shown if p not in span and state_name(states.get(p)) == COMPLETE]
    if outside:
        lines.append(
            f"  does not touch the {len(outside)} complete partition(s) outside that range "
            f"({dates_text(outside)})"
        )
    if not untouched and not outside:
        lines.append("  rewrites no complete partition: a rerun only does the missing work")
    if dead:
        whole = [p for p in dead if states[p].chunks is None]  # a date in chunks resumes
        lines.append(
            f"  takes over the lease(s) of {dates_text(dead)} from the dead runner"
            + (
                f"; where the target commit of {dates_text(whole)} already reached Delta, "
                "the partition is marked complete from that commit without recomputing"
                if whole
                else ""
            )
        )
    if live:
        lines.append(
            f"  waits (--wait) for {dates_text(live)}, held by a live runner, then skips "
            "them if that runner completed them; without --wait it exits 3 naming the runner"
        )
    lines.append(
        "  each partition is one idempotent Delta commit: if the rerun is killed too, "
        "run the same command again"
    )
    return Recovery(
        tuple(lines),
        tuple(commands),
        to_process=tuple(processed),
        untouched=tuple(untouched),
        taken_over=tuple(dead),
        waited_for=tuple(live),
    )


def filter_partitions(
    partitions: Sequence[dt.date],
    states: Mapping[dt.date, PartitionState],
    only: Iterable[str] = (),
) -> list[dt.date]:
    """The partitions whose state (``missing`` for never run) is one of ``only``, or all."""
    wanted = set(only)
    return [p for p in partitions if not wanted or state_name(states.get(p)) in wanted]


def chunk_progress(state: PartitionState) -> str:
    """``17/20 chunks committed`` for a partition processed in chunks, else empty."""
    if state.chunks is None:
        return ""
    return f"{state.chunks_committed or 0}/{state.chunks} chunks committed"


def _resumes(partitions: Iterable[dt.date], states: Mapping[dt.date, PartitionState]) -> list[str]:
    """The runbook's lines for partitions whose attempt in chunks the rerun resumes."""
    lines = []
    for p in partitions:
        state = states.get(p)
        if state is None or state.chunks is None or state.state == COMPLETE:
            continue
        done = state.chunks_committed or 0
        if done >= state.chunks:
            lines.append(
                f"  finishes {p}: its {state.chunks} chunks are in the target's log; it "
                "checks that no key is held twice and that the counts add up"
            )
            continue
        lines.append(
            f"  resumes {p} at chunk {done + 1} of {state.chunks}: the {done} chunk(s) "
            "in the target's log are not read again (if one of the manifest's files "
            "changed or vanished, the partition starts over)"
        )
    return lines
