"""Human-readable output: the per-partition run summary and the status table.

Both end with what to do next, as a command that can be copied as is.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from framework.ledger import COMPLETE, FAILED, RUNNING, PartitionState
from framework.runner import RunReport

MISSING = "missing"
_STYLE = {COMPLETE: "green", FAILED: "bold red", RUNNING: "yellow", MISSING: "dim"}


def date_range(start: dt.date, end: dt.date) -> list[dt.date]:
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


def _n(value: int | None) -> str:
    return "" if value is None else f"{value:,}"


def _error(state: PartitionState | None) -> str:
    if state is None or not state.error_message:
        return ""
    first = state.error_message.splitlines()[0]
    return f"{state.error_class}: {first[:160]}"


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


def _cells(partition: dt.date, state: PartitionState | None) -> list[str]:
    name = state.state if state else MISSING
    style = _STYLE.get(name, "")
    if state is None:
        return [partition.isoformat(), f"[{style}]{name}[/]", "0", *[""] * 7]
    return [
        partition.isoformat(),
        f"[{style}]{name}[/]",
        str(state.attempt),
        _n(state.rows_read),
        _n(state.rows_written),
        _n(state.rows_inserted),
        _n(state.rows_updated),
        _n(state.rows_deleted),
        _n(state.rows_duplicate),
        _n(state.rows_rejected),
    ]


def recovery_command(job: str, bad: Sequence[dt.date], cli_options: str = "") -> str:
    """One command that reruns exactly the partitions that are not complete.

    A plain rerun skips complete partitions, so a range covering the bad ones is exact.
    """
    first, last = min(bad), max(bad)
    dates = f"--date {first}" if first == last else f"--from {first} --to {last}"
    return f"ninelives run {job} {dates}{cli_options}"


def print_run_summary(report: RunReport, console: Console, cli_options: str = "") -> None:
    table = _table(f"{report.job} run {report.run_id}", extra=("seconds",))
    for state in report.healed:
        note = f"healed: target commit v{state.target_version} existed, nothing recomputed"
        table.add_row(*_cells(state.partition, state), "0.0", note)
    for state in report.results:
        seconds = report.seconds.get(state.partition, 0.0)
        table.add_row(*_cells(state.partition, state), f"{seconds:.1f}", _error(state))
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
        console.print(f"To recover: {recovery_command(report.job, report.incomplete, cli_options)}")


def print_status(
    job: str,
    partitions: Sequence[dt.date],
    states: dict[dt.date, PartitionState],
    console: Console,
    cli_options: str = "",
) -> list[dt.date]:
    """Print one row per partition; return the partitions that are not complete."""
    table = _table(f"{job} status")
    for partition in partitions:
        state = states.get(partition)
        table.add_row(*_cells(partition, state), _error(state))
    console.print(table)
    bad = [p for p in partitions if p not in states or states[p].state != COMPLETE]
    by_state: dict[str, int] = {}
    for p in partitions:
        name = states[p].state if p in states else MISSING
        by_state[name] = by_state.get(name, 0) + 1
    console.print(
        ", ".join(f"{n} {name}" for name, n in sorted(by_state.items())) or "no partitions"
    )
    if bad:
        console.print(f"To recover: {recovery_command(job, bad, cli_options)}")
    else:
        console.print("Nothing to recover: every partition shown is complete.")
    return bad
