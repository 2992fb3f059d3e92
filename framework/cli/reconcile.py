"""``ninelives reconcile JOB``: settle the partitions whose runner died, from what reached
Delta (complete from its commit, or failed so that a rerun processes it)."""

from __future__ import annotations

import argparse

from rich.console import Console

from framework.cli import reads
from framework.cli.args import Commands
from framework.core.config import Config
from framework.engine.registry import get_job
from framework.engine.runner import reconcile
from framework.lake.tables import Lakehouse


def register(commands: Commands, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "reconcile", parents=[common], help="settle partitions whose runner died"
    )
    parser.add_argument("job")
    parser.set_defaults(handler=cmd_reconcile)


def cmd_reconcile(args: argparse.Namespace, config: Config, console: Console) -> int:
    job = get_job(args.job)
    fixed = reconcile(reads.session(config), Lakehouse(config.lakehouse), job)
    for before, after in fixed:
        how = (
            f"complete from target commit v{after.target_version} (nothing recomputed)"
            if after.state == "complete"
            else "failed: its writes did not all reach Delta; a rerun processes it"
        )
        console.print(
            f"{job.name} {before.partition}: attempt {before.attempt} of run {before.run_id} "
            f"was abandoned by pid {before.pid} on {before.host} -> {how}"
        )
    console.print(f"{job.name}: reconciled {len(fixed)} partition(s)")
    return 0
