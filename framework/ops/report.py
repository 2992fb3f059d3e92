"""Human-readable output: the run summary, the status table and the runbook.

Both end with what to do next, as a command that can be copied as is. The runbook
(:func:`plan_recovery`) says, for the partitions shown, what failed and why, and what
that command will do: which partitions it processes, which complete ones it leaves
untouched, whose leases it takes over. ``ninelives status --json`` prints the same
content as one JSON document (:func:`status_document`).

Example::

    recovery = plan_recovery("orders_daily", dates, states, cli_options=" --lakehouse /lh")
    recovery.commands[-1]   # 'ninelives run orders_daily --from 2024-01-02 --to 2024-01-03 ...'
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

from framework.core.dates import date_range, iso
from framework.engine.runner import RunReport
from framework.state.leases import is_held, this_host
from framework.state.ledger import COMPLETE, FAILED, PENDING, RUNNING, PartitionState, utcnow

MISSING = "missing"
STATUS_STATES = (COMPLETE, FAILED, RUNNING, PENDING, MISSING)
"""What ``status --state`` accepts: the ledger states plus ``missing`` (never run)."""
_STYLE = {COMPLETE: "green", FAILED: "bold red", RUNNING: "yellow", MISSING: "dim"}

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


def _n(value: int | None) -> str:
    return "" if value is None else f"{value:,}"


def _first_line(text: str | None, width: int = 160) -> str:
    return (text or "").strip().splitlines()[0][:width] if (text or "").strip() else ""


def _error(state: PartitionState | None) -> str:
    if state is None or not state.error_message:
        return ""
    return f"{state.error_class}: {_first_line(state.error_message)}"


def _table(title: str, extra: Sequence[str] = ()) -> Table:
    table = Table(title=title, title_justify="left")
    for name in (
        "partition",
        "state",
        "attempt",
        "read",
        "written",
        "inserted",
        "updated",
        "deleted",
        "duplicates",
        "rejected",
        *extra,
    ):
        table.add_column(name, justify="right" if name not in ("partition", "state") else "left")
    table.add_column("last error", overflow="fold")
    return table


def _cells(partition: dt.date, state: PartitionState | None, note: str = "") -> list[str]:
    name = state_name(state)
    style = _STYLE.get(name, "")
    shown = f"[{style}]{name}[/]" + (f" ({note})" if note else "")
    if state is None:
        return [partition.isoformat(), shown, "0", *[""] * 7]
    return [
        partition.isoformat(),
        shown,
        str(state.attempt),
        _n(state.rows_read),
        _n(state.rows_written),
        _n(state.rows_inserted),
        _n(state.rows_updated),
        _n(state.rows_deleted),
        _n(state.rows_duplicate),
        _n(state.rows_rejected),
    ]


def _escape(text: str) -> str:
    return text.replace("[", r"\[")


def recovery_command(
    job: str, bad: Sequence[dt.date], cli_options: str = "", *, wait: bool = False
) -> str:
    """One command that reruns exactly the partitions that are not complete.

    A plain rerun skips complete partitions, so a range covering the bad ones is exact.
    """
    first, last = min(bad), max(bad)
    dates = f"--date {first}" if first == last else f"--from {first} --to {last}"
    return f"ninelives run {job} {dates}{' --wait' if wait else ''}{cli_options}"


def print_run_summary(report: RunReport, console: Console, cli_options: str = "") -> None:
    table = _table(f"{report.job} run {report.run_id}", extra=("seconds",))
    for state in report.healed:
        note = f"healed: target commit v{state.target_version} existed, nothing recomputed"
        table.add_row(*_cells(state.partition, state), "0.0", note)
    for state in report.results:
        seconds = report.seconds.get(state.partition, 0.0)
        table.add_row(*_cells(state.partition, state), f"{seconds:.1f}", _escape(_error(state)))
    if report.results or report.healed:
        console.print(table)
    skipped = len(report.plan.skipped)
    failed = report.failed
    console.print(
        f"{report.job}: {len(report.plan.to_run)} partition(s) planned, "
        f"{len(report.results) - len(failed)} complete, {len(failed)} failed, "
        f"{skipped} skipped as already complete"
        + (f", {len(report.healed)} healed from their Delta commits" if report.healed else "")
        + (f", {len(report.held)} held by another runner" if report.held else "")
    )
    if report.incomplete:
        command = recovery_command(report.job, report.incomplete, cli_options)
        console.print(f"To recover: {command}", markup=False, soft_wrap=True)


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
            f"{' at ' + when if when else ''}: {_first_line(example.error_message, 300)}"
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
    other = [p for p in bad if state_name(states.get(p)) == PENDING]
    if other:
        lines.append(f"  {len(other)} pending: {dates_text(other)}")

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


def _lease_note(state: PartitionState | None, now: dt.datetime, host: str) -> str:
    if state is None or state.state != RUNNING:
        return ""
    return "live runner" if is_held(state, now, host) else "runner gone"


def _note(state: PartitionState | None, now: dt.datetime, host: str) -> str:
    """The status table's note: the lease of a running partition, and the chunks of one
    processed in chunks that is not complete."""
    notes = [_lease_note(state, now, host)]
    if state is not None and state.state != COMPLETE:
        notes.append(_chunk_progress(state))
    return ", ".join(n for n in notes if n)


def _chunk_progress(state: PartitionState) -> str:
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


def status_document(
    job: str,
    shown: Sequence[dt.date],
    states: Mapping[dt.date, PartitionState],
    recovery: Recovery,
    *,
    now: dt.datetime | None = None,
    host: str | None = None,
    stale: Collection[dt.date] = (),
) -> dict[str, object]:
    """``status --json``: one entry per shown partition, the summary and the runbook.

    A ``stale`` partition (complete, its input changed since) has the state ``stale``,
    as in the table, and ``"stale": true``."""
    now = now or utcnow()
    host = host or this_host()
    rows = []
    for p in shown:
        state = states.get(p)
        row: dict[str, object] = {
            "partition": p.isoformat(),
            "state": _shown_state(p, states, stale),
            "stale": p in stale,
            "attempt": state.attempt if state else 0,
        }
        if state is not None:
            row.update(state.counts())
            row.update(
                run_id=state.run_id,
                host=state.host,
                pid=state.pid,
                target_version=state.target_version,
                error_class=state.error_class,
                error_message=state.error_message,
                started_at=iso(state.started_at),
                finished_at=iso(state.finished_at),
                lease_expires_at=iso(state.lease_expires_at),
                lease=_lease_note(state, now, host) or None,
                chunks=state.chunks,
                chunks_committed=state.chunks_committed,
            )
        rows.append(row)
    return {
        "job": job,
        "generated_at": iso(now),
        "partitions": rows,
        "summary": _summary(shown, states, stale),
        "runbook": list(recovery.lines),
        "recovery_commands": list(recovery.commands),
        "will_process": [p.isoformat() for p in recovery.to_process],
        "untouched": [p.isoformat() for p in recovery.untouched],
    }


def _shown_state(
    partition: dt.date, states: Mapping[dt.date, PartitionState], stale: Collection[dt.date]
) -> str:
    return "stale" if partition in stale else state_name(states.get(partition))


def _summary(
    shown: Sequence[dt.date],
    states: Mapping[dt.date, PartitionState],
    stale: Collection[dt.date],
) -> dict[str, int]:
    """How many shown partitions are in each state, by name."""
    return dict(sorted(Counter(_shown_state(p, states, stale) for p in shown).items()))


def _with_stale(
    job: str,
    recovery: Recovery,
    stale: Sequence[dt.date],
    bad: Sequence[dt.date],
    cli_options: str,
) -> Recovery:
    """The recovery extended to stale partitions: the same range, ``--include-stale``."""
    lines = (
        f"{len(stale)} complete partition(s) are stale, their input changed since they "
        f"completed (late or corrected files): {', '.join(map(str, stale))}",
        "  --include-stale reprocesses exactly those (idempotent: unchanged rows stay as "
        "they are); other complete partitions are skipped",
    )
    command = recovery_command(job, [*bad, *stale], cli_options) + " --include-stale"
    earlier = recovery.commands[:-1]
    kept = recovery.lines if recovery.commands else ()
    return dataclasses.replace(recovery, lines=(*kept, *lines), commands=(*earlier, command))


def print_status(
    job: str,
    partitions: Sequence[dt.date],
    states: dict[dt.date, PartitionState],
    console: Console,
    cli_options: str = "",
    *,
    only: Iterable[str] = (),
    as_json: bool = False,
    upstream: Mapping[str, Mapping[dt.date, PartitionState]] | None = None,
    now: dt.datetime | None = None,
    stale: Collection[dt.date] = (),
) -> list[dt.date]:
    """Print one row per partition, the runbook and the recovery command.

    ``stale`` are complete partitions whose input changed since: shown as ``stale``,
    and recovered by a rerun with ``--include-stale``.

    Returns the shown partitions that are not complete. ``only`` keeps the partitions
    in those states (``missing`` included); ``as_json`` prints one JSON document instead.
    The last line is always ``To recover: <command>`` or ``Nothing to recover: ...``.
    """
    now = now or utcnow()
    host = this_host()
    shown = filter_partitions(partitions, states, only)
    recovery = plan_recovery(
        job, shown, states, cli_options=cli_options, upstream=upstream, now=now, host=host
    )
    bad = [p for p in shown if state_name(states.get(p)) != COMPLETE]
    stale_shown = [p for p in shown if p in set(stale)]
    if stale_shown:
        recovery = _with_stale(job, recovery, stale_shown, bad, cli_options)
    if as_json:
        document = status_document(
            job, shown, states, recovery, now=now, host=host, stale=stale_shown
        )
        console.out(json.dumps(document, indent=2), highlight=False)
        return bad

    table = _table(f"{job} status")
    for partition in shown:
        state = states.get(partition)
        note = _note(state, now, host)
        if partition in stale_shown:
            note = "stale: its input changed since it completed"
        table.add_row(*_cells(partition, state, note), _escape(_error(state)))
    console.print(table)
    by_state = _summary(shown, states, stale_shown)
    console.print(", ".join(f"{n} {name}" for name, n in by_state.items()) or "no partitions")
    if not recovery.commands:
        console.print(recovery.lines[0])
        return bad
    for line in recovery.lines:
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    for command in recovery.commands[:-1]:
        console.print(f"First: {command}", markup=False, highlight=False, soft_wrap=True)
    console.print(
        f"To recover: {recovery.commands[-1]}", markup=False, highlight=False, soft_wrap=True
    )
    return bad
