"""``ninelives status JOB [--state S ...] [--date D | --from D --to D] [--json]``: the
partition table, then the runbook (what failed, why, what a rerun does) and the recovery
command(s); its last line is ``To recover: ninelives run ...``."""

from __future__ import annotations

import argparse

from rich.console import Console

from framework.cli import reads
from framework.cli.args import Commands, add_dates, repeated_options, requested_dates
from framework.core.config import Config
from framework.engine.registry import get_job
from framework.lake.tables import Lakehouse
from framework.ops import native
from framework.ops.runbook import STATUS_STATES
from framework.ops.status import print_job_status, read_by_spark, read_without_jvm


def register(commands: Commands, common: argparse.ArgumentParser) -> None:
    status = commands.add_parser("status", parents=[common], help="show partition states")
    status.add_argument("job")
    add_dates(status)
    status.add_argument(
        "--state",
        action="append",
        choices=STATUS_STATES,
        help="show only partitions in this state (repeatable)",
    )
    status.add_argument("--json", action="store_true", help="one JSON document on stdout")
    status.set_defaults(handler=cmd_status)


def cmd_status(args: argparse.Namespace, config: Config, console: Console) -> int:
    job = get_job(args.job)
    dates = requested_dates(args, required=False)
    lakehouse = Lakehouse(config.lakehouse)
    status = native.or_spark(
        lambda: read_without_jvm(lakehouse, job, dates),
        lambda: read_by_spark(reads.session(config), lakehouse, job, dates),
    )
    print_job_status(
        console,
        job,
        status,
        repeated_options(args),
        only=args.state or (),
        as_json=args.json,
        command_job=args.job,
    )
    return 0
