"""Human-readable output: the run summary, the status table and the runbook
(:mod:`framework.ops.runbook`), each ending with what to do next, as a command that can be
copied as is. ``ninelives status --json`` prints the same content as one JSON document
(:func:`status_document`).

Example::

    print_status("orders_daily", dates, states, Console())
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence

from rich.console import Console
from rich.table import Table

from framework.core.dates import iso
from framework.engine.runner import RunReport
from framework.ops.runbook import (
    MISSING,
    Recovery,
    chunk_progress,
    filter_partitions,
    first_line,
    plan_recovery,
    recovery_command,
    state_name,
)
from framework.state.leases import is_held, this_host
from framework.state.ledger import COMPLETE, FAILED, RUNNING, PartitionState, utcnow

_STYLE = {COMPLETE: "green", FAILED: "bold red", RUNNING: "yellow", MISSING: "dim"}


def _n(value: int | None) -> str:
    return "" if value is None else f"{value:,}"


def _error(state: PartitionState | None) -> str:
    if state is None or not state.error_message:
        return ""
    return f"{state.error_class}: {first_line(state.error_message)}"


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


def print_run_summary(
    report: RunReport, console: Console, cli_options: str = "", *, command_job: str = ""
) -> None:
    """The run's table, its one-line summary and, if a partition is not complete, the
    command that recovers it (``command_job``: the job as the person named it, such as
    ``mypackage.clicks:JOB``; its name by default)."""
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
        command = recovery_command(command_job or report.job, report.incomplete, cli_options)
        console.print(f"To recover: {command}", markup=False, soft_wrap=True)


def _lease_note(state: PartitionState | None, now: dt.datetime, host: str) -> str:
    if state is None or state.state != RUNNING:
        return ""
    return "live runner" if is_held(state, now, host) else "runner gone"


def _note(state: PartitionState | None, now: dt.datetime, host: str) -> str:
    """The status table's note: the lease of a running partition, and the chunks of one
    processed in chunks that is not complete."""
    notes = [_lease_note(state, now, host)]
    if state is not None and state.state != COMPLETE:
        notes.append(chunk_progress(state))
    return ", ".join(n for n in notes if n)


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
    command_job: str = "",
) -> list[dt.date]:
    """Print one row per partition, the runbook and the recovery command (which names
    the job as ``command_job``, if given: how the person named it).

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
        command_job or job,
        shown,
        states,
        cli_options=cli_options,
        upstream=upstream,
        now=now,
        host=host,
    )
    bad = [p for p in shown if state_name(states.get(p)) != COMPLETE]
    stale_shown = [p for p in shown if p in set(stale)]
    if stale_shown:
        recovery = _with_stale(command_job or job, recovery, stale_shown, bad, cli_options)
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
