"""``ninelives report JOB -o report.html [--date D | --from D --to D]``: a static HTML
calendar of the partitions coloured by state, with the runbook."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from framework.cli import reads
from framework.cli.args import Commands, add_dates, repeated_options, requested_dates
from framework.core.config import Config
from framework.core.dates import date_range
from framework.core.errors import UsageError
from framework.engine.registry import get_job
from framework.lake.tables import Lakehouse
from framework.ops.partition_calendar import render_calendar
from framework.ops.runbook import filter_partitions, plan_recovery, state_name


def register(commands: Commands, common: argparse.ArgumentParser) -> None:
    report = commands.add_parser(
        "report", parents=[common], help="write an HTML calendar of partition states"
    )
    report.add_argument("job")
    report.add_argument("-o", "--output", default="report.html", help="default report.html")
    add_dates(report)
    report.set_defaults(handler=cmd_report)


def cmd_report(args: argparse.Namespace, config: Config, console: Console) -> int:
    job = get_job(args.job)
    dates = requested_dates(args, required=False)
    lakehouse = Lakehouse(config.lakehouse)
    states, upstream = reads.states(config, lakehouse, job.name, job.depends_on)
    if dates is None:
        dates = date_range(min(states), max(states)) if states else []
    recovery = plan_recovery(
        args.job,  # the recovery command names the job as the person did
        filter_partitions(dates, states),
        states,
        cli_options=repeated_options(args),
        upstream=upstream,
    )
    history = reads.recent_runs(config, job.name, 10)
    html = render_calendar(job.name, dates, states, recovery, history=history)
    output = Path(args.output)
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(html, encoding="utf-8")
    except OSError as error:
        raise UsageError(f"cannot write {output}: {error.strerror or error}") from None
    counts: dict[str, int] = {}
    for p in dates:
        counts[state_name(states.get(p))] = counts.get(state_name(states.get(p)), 0) + 1
    summary = ", ".join(f"{n} {name}" for name, n in sorted(counts.items())) or "no partitions"
    console.print(f"wrote {output.resolve()}: {summary}", markup=False, soft_wrap=True)
    return 0
