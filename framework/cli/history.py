"""``ninelives history JOB [--limit N] [--json]``: the job's runs, newest first."""

from __future__ import annotations

import argparse
import json

from rich.console import Console
from rich.table import Table

from framework.cli import reads
from framework.cli.args import Commands, positive, repeated_options
from framework.core.config import Config
from framework.core.dates import iso
from framework.core.names import checked_identifier
from framework.engine.registry import get_job
from framework.ops.history import RunRecord

_OUTCOME_STYLE = {"succeeded": "green", "nothing_to_do": "dim", "failed": "bold red"}


def register(commands: Commands, common: argparse.ArgumentParser) -> None:
    history = commands.add_parser("history", parents=[common], help="show a job's recent runs")
    history.add_argument("job")
    history.add_argument("--limit", type=positive, default=20, help="runs shown (default 20)")
    history.add_argument("--json", action="store_true", help="JSON lines on stdout")
    history.set_defaults(handler=cmd_history)


def history_table(job: str, records: list[RunRecord]) -> Table:
    table = Table(title=f"{job} runs, newest first", title_justify="left")
    for name in (
        "started (UTC)",
        "run_id",
        "outcome",
        "planned",
        "complete",
        "failed",
        "healed",
        "held",
        "skipped",
        "rows in",
        "rows out",
        "quarantined",
        "seconds",
        "host",
        "arguments",
    ):
        numeric = name in ("planned", "complete", "failed", "healed", "held", "skipped")
        numeric = numeric or name.startswith("rows") or name in ("quarantined", "seconds")
        table.add_column(name, justify="right" if numeric else "left", overflow="fold")
    for r in records:
        style = _OUTCOME_STYLE.get(r.outcome, "yellow")
        table.add_row(
            (iso(r.started_at) or "").replace("T", " ").rstrip("Z"),
            r.run_id,
            f"[{style}]{r.outcome}[/]",
            str(r.partitions_planned),
            str(r.partitions_complete),
            str(r.partitions_failed),
            str(r.partitions_healed),
            str(r.partitions_held),
            str(r.partitions_skipped),
            f"{r.rows_in:,}",
            f"{r.rows_out:,}",
            f"{r.rows_quarantined:,}",
            f"{r.duration_s:.1f}",
            r.host or "",
            r.arguments.replace("[", r"\["),
        )
    return table


def cmd_history(args: argparse.Namespace, config: Config, console: Console) -> int:
    # A removed job keeps its history, so a plain name need not be registered; an
    # import path names the job it holds.
    job = get_job(args.job).name if ":" in args.job else checked_identifier(args.job, "job name")
    records = reads.recent_runs(config, job, args.limit)
    if args.json:
        for record in records:
            console.out(json.dumps(record.as_json()), highlight=False)
        return 0
    if not records:
        console.print(f"no runs of {job} recorded in this lakehouse")
        return 0
    console.print(history_table(job, records))
    failed = [r for r in records if r.outcome != "succeeded" and r.outcome != "nothing_to_do"]
    console.print(
        f"{len(records)} run(s) shown, {len(failed)} not successful; "
        f"partition details: ninelives status {args.job}{repeated_options(args)}",
        markup=False,
        soft_wrap=True,
    )
    return 0
