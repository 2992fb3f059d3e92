"""``ninelives quarantine JOB [--date D] [--limit N]``: the records a job rejected, and
why."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table

from framework.cli import reads
from framework.cli.args import Commands, date, positive
from framework.core.config import Config
from framework.engine.registry import get_job
from framework.lake.quarantine import quarantine_table
from framework.lake.tables import Lakehouse


def register(commands: Commands, common: argparse.ArgumentParser) -> None:
    quarantine = commands.add_parser(
        "quarantine", parents=[common], help="show quarantined records and their reasons"
    )
    quarantine.add_argument("job")
    quarantine.add_argument("--date", type=date, help="one partition, YYYY-MM-DD")
    quarantine.add_argument("--limit", type=positive, default=50, help="rows shown (default 50)")
    quarantine.set_defaults(handler=cmd_quarantine)


def cmd_quarantine(args: argparse.Namespace, config: Config, console: Console) -> int:
    job = get_job(args.job)
    ref = quarantine_table(Lakehouse(config.lakehouse), job.name)
    found = reads.quarantined(config, job.name, args.date, args.limit)
    if found is None:
        console.print(f"{job.name}: no quarantined records ({ref} does not exist)")
        return 0
    total, rows = found
    table = Table(title=f"{job.name} quarantine", title_justify="left")
    for name in ("partition", "reason", "raw", "run_id", "attempt"):
        table.add_column(name, overflow="fold")
    for row in rows:
        raw = row["raw"]
        raw = raw if raw is None or len(raw) <= 120 else raw[:117] + "..."
        table.add_row(str(row["partition"]), row["reason"], raw, row["run_id"], str(row["attempt"]))
    console.print(table)
    console.print(
        f"{total} quarantined record(s)" + (f", {args.limit} shown" if total > args.limit else "")
    )
    return 0
