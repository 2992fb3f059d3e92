"""A static HTML page: a calendar of a job's partitions coloured by state, and the runbook.

``ninelives report JOB -o report.html`` writes it. One month per block, one cell per
day, Monday first; a day inside the shown range is a partition cell
(``<div class="cell" data-state="failed" data-date="2024-01-02" title="...">``) whose
tooltip gives its state, attempts, counts and last error; days of the month outside the
range are blank. Below: the failed partitions with their full errors, the runbook and
the recovery commands, and the job's recent runs. The page is self-contained (inline
CSS, no script, no network), so it can be attached to a ticket or served from anywhere.

(Named ``partition_calendar`` so that it never shadows the standard ``calendar`` module.)

Example::

    recovery = plan_recovery("orders_daily", dates, states)
    html = render_calendar("orders_daily", dates, states, recovery)
    Path("report.html").write_text(html)
"""

from __future__ import annotations

import calendar as std_calendar
import datetime as dt
from collections.abc import Mapping, Sequence
from html import escape

from framework.core.dates import iso
from framework.ops.history import RunRecord
from framework.ops.runbook import MISSING, Recovery, state_name
from framework.state.ledger import COMPLETE, FAILED, RUNNING, PartitionState, utcnow

STATE_COLOURS = {
    COMPLETE: "#2e7d32",
    FAILED: "#c62828",
    RUNNING: "#f9a825",
    MISSING: "#bdbdbd",
}
"""Background colour of a partition cell, by state."""

_TEXT_COLOURS = {COMPLETE: "#fff", FAILED: "#fff"}

_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px;
       color: #212121; background: #fafafa; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; }
.sub { color: #616161; margin-bottom: 16px; }
.legend span { display: inline-block; margin-right: 14px; }
.legend i { display: inline-block; width: 12px; height: 12px; border-radius: 2px;
            margin-right: 5px; vertical-align: -1px; }
.months { display: flex; flex-wrap: wrap; gap: 22px; }
.month h3 { font-size: 14px; margin: 0 0 6px; }
.grid { display: grid; grid-template-columns: repeat(7, 40px); gap: 4px; }
.dow { font-size: 11px; color: #757575; text-align: center; }
.day { width: 40px; height: 40px; border-radius: 4px; box-sizing: border-box;
       font-size: 12px; padding: 3px 4px; position: relative; }
.out { background: #eeeeee; color: #bdbdbd; }
.cell { cursor: default; border: 1px solid rgba(0,0,0,.12); }
.cell .n { position: absolute; right: 3px; bottom: 2px; font-size: 10px; opacity: .9; }
pre { background: #fff; border: 1px solid #e0e0e0; padding: 12px; white-space: pre-wrap;
      overflow-wrap: anywhere; }
table { border-collapse: collapse; background: #fff; }
td, th { border: 1px solid #e0e0e0; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f5f5f5; }
td:first-child { white-space: nowrap; }
code.cmd { display: block; background: #263238; color: #eceff1; padding: 8px 12px;
           border-radius: 4px; margin: 4px 0; overflow-wrap: anywhere; }
"""


def _n(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def tooltip(partition: dt.date, state: PartitionState | None) -> str:
    """The text shown when hovering over a partition's cell."""
    if state is None:
        return f"{partition}: missing (never run)"
    lines = [
        f"{partition}: {state.state}",
        f"attempts: {state.attempt} (last run {state.run_id})",
        f"read {_n(state.rows_read)}, written {_n(state.rows_written)} "
        f"(inserted {_n(state.rows_inserted)}, updated {_n(state.rows_updated)}, "
        f"deleted {_n(state.rows_deleted)})",
        f"duplicates {_n(state.rows_duplicate)}, quarantined {_n(state.rows_rejected)}",
    ]
    if state.finished_at or state.started_at:
        lines.append(f"at {iso(state.finished_at or state.started_at)} on {state.host or '?'}")
    if state.error_message:
        first = state.error_message.strip().splitlines()[0][:300]
        lines.append(f"last error: {state.error_class}: {first}")
    return "\n".join(lines)


def _month_starts(first: dt.date, last: dt.date) -> list[dt.date]:
    months, current = [], first.replace(day=1)
    while current <= last:
        months.append(current)
        current = (current + dt.timedelta(days=32)).replace(day=1)
    return months


def _month_html(
    month: dt.date, shown: set[dt.date], states: Mapping[dt.date, PartitionState]
) -> str:
    parts = [f'<div class="month"><h3>{month:%B %Y}</h3><div class="grid">']
    parts += [f'<div class="dow">{d}</div>' for d in ("Mo", "Tu", "We", "Th", "Fr", "Sa", "Su")]
    parts += ['<div class="day pad"></div>'] * month.weekday()
    days = std_calendar.monthrange(month.year, month.month)[1]
    for number in range(1, days + 1):
        day = month.replace(day=number)
        if day not in shown:
            parts.append(f'<div class="day out">{number}</div>')
            continue
        state = states.get(day)
        name = state_name(state)
        attempts = (
            f'<span class="n">&times;{state.attempt}</span>' if state and state.attempt > 1 else ""
        )
        parts.append(
            f'<div class="day cell s-{name}" data-state="{name}" data-date="{day}" '
            f'title="{escape(tooltip(day, state))}">{number}{attempts}</div>'
        )
    parts.append("</div></div>")
    return "".join(parts)


def _history_html(history: Sequence[RunRecord]) -> str:
    if not history:
        return ""
    head = "".join(
        f"<th>{h}</th>"
        for h in (
            "started",
            "run",
            "outcome",
            "planned",
            "complete",
            "failed",
            "healed",
            "skipped",
            "rows in",
            "rows out",
            "quarantined",
            "seconds",
            "arguments",
        )
    )
    rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{escape(str(v))}</td>"
            for v in (
                iso(r.started_at),
                r.run_id,
                r.outcome,
                r.partitions_planned,
                r.partitions_complete,
                r.partitions_failed,
                r.partitions_healed,
                r.partitions_skipped,
                f"{r.rows_in:,}",
                f"{r.rows_out:,}",
                f"{r.rows_quarantined:,}",
                f"{r.duration_s:.1f}",
                r.arguments,
            )
        )
        + "</tr>"
        for r in history
    )
    return f"<h2>Recent runs</h2><table><tr>{head}</tr>{rows}</table>"


def render_calendar(
    job: str,
    partitions: Sequence[dt.date],
    states: Mapping[dt.date, PartitionState],
    recovery: Recovery,
    *,
    history: Sequence[RunRecord] = (),
    generated_at: dt.datetime | None = None,
) -> str:
    """The whole HTML page for ``partitions`` of ``job``.

    :param recovery: the runbook, from :func:`framework.ops.report.plan_recovery`.
    :param history: recent runs to list at the bottom, newest first.
    """
    shown = set(partitions)
    counts: dict[str, int] = {}
    for p in partitions:
        counts[state_name(states.get(p))] = counts.get(state_name(states.get(p)), 0) + 1
    colour_css = "".join(
        f".s-{name} {{ background: {colour}; color: {_TEXT_COLOURS.get(name, '#212121')}; }}\n"
        for name, colour in STATE_COLOURS.items()
    )
    legend = "".join(
        f'<span><i style="background:{STATE_COLOURS[name]}"></i>'
        f"{name}: {counts.get(name, 0)}</span>"
        for name in STATE_COLOURS
    )
    months = (
        "".join(_month_html(m, shown, states) for m in _month_starts(min(shown), max(shown)))
        if shown
        else "<p>No partitions in range.</p>"
    )
    failed_rows = "".join(
        f"<tr><td>{p}</td><td>{states[p].attempt}</td><td>{escape(states[p].error_class or '')}"
        f"</td><td><pre>{escape(states[p].error_message or '')}</pre></td></tr>"
        for p in sorted(shown)
        if state_name(states.get(p)) == FAILED
    )
    failed_html = (
        "<h2>Failed partitions</h2><table><tr><th>partition</th><th>attempt</th>"
        f"<th>error class</th><th>message</th></tr>{failed_rows}</table>"
        if failed_rows
        else ""
    )
    commands = (
        "".join(f'<code class="cmd">{escape(c)}</code>' for c in recovery.commands)
        or "<p>Nothing to recover.</p>"
    )
    span = f"{min(shown)} to {max(shown)}" if shown else "no partitions"
    generated = iso(generated_at or utcnow())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>ninelives {escape(job)}: partition calendar</title>
<style>{_CSS}{colour_css}</style></head>
<body>
<h1>{escape(job)}</h1>
<div class="sub">{len(shown)} partition(s), {span}; generated {generated}</div>
<div class="legend">{legend}</div>
<h2>Partitions</h2>
<div class="months">{months}</div>
{failed_html}
<h2>Runbook</h2>
<pre class="runbook">{escape(chr(10).join(recovery.lines))}</pre>
<h2>To recover</h2>
{commands}
{_history_html(history)}
</body></html>
"""
