"""The ``ninelives`` command: its parser, built from one ``register`` per command
module, and :func:`main`, which turns every error into one line and an exit code.

Commands come from this package and from the ``ninelives.commands`` entry point group
(the example jobs add ``seed`` there: the library never imports its demo).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points

from rich.console import Console

from framework.cli import history, quarantine, reconcile, report, run, status
from framework.cli.args import Handler, Parser, common_options, config_of
from framework.core import logs
from framework.core.errors import NinelivesError
from framework.core.failures import describe, storage_unreachable

COMMANDS = (run, status, history, report, quarantine, reconcile)

EXIT_CODES = (
    "Exit codes: 0 every requested partition is complete; 1 a partition failed; "
    "2 a usage or configuration error; 3 another runner holds the job."
)


def build_parser() -> argparse.ArgumentParser:
    common = common_options()
    parser = Parser(
        prog="ninelives",
        parents=[common],
        description="Run nightly Delta Lake jobs that survive kill -9, and see their state.",
        epilog=f"{EXIT_CODES} NINELIVES_DEBUG=1 adds the traceback to an error.",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for module in COMMANDS:
        module.register(commands, common)
    for plugin in entry_points(group="ninelives.commands"):
        plugin.load()(commands, common)
    return parser


_PY4J_SINK = logging.NullHandler()


def quiet_py4j() -> None:
    """Keep py4j's tracebacks off stderr: it logs one for every call that meets a dead
    JVM, to its own logger and, for a failed send, to the root logger (which makes
    :mod:`logging` print it). The error that follows says what happened in one line."""
    py4j = logging.getLogger("py4j")
    py4j.addHandler(_PY4J_SINK)  # once, however often main() runs in one process
    py4j.propagate = False
    logging.getLogger().addFilter(_not_from_py4j)


def _not_from_py4j(record: logging.LogRecord) -> bool:
    return f"{os.sep}py4j{os.sep}" not in record.pathname


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ninelives`` script and of ``jobs/*.py`` under spark-submit."""
    args = build_parser().parse_args(argv)
    logs.to_stderr()
    if not os.environ.get("NINELIVES_DEBUG"):
        quiet_py4j()
    console = Console(
        highlight=False, soft_wrap=False, width=200 if not sys.stdout.isatty() else None
    )
    handler: Handler = args.handler
    try:
        config = config_of(args)
        return handler(args, config, console)
    except NinelivesError as error:
        print(f"ninelives: {error}", file=sys.stderr)
        return error.exit_code
    except Exception as error:
        if os.environ.get("NINELIVES_DEBUG"):
            raise
        if storage_unreachable(error):
            print(f"ninelives: cannot reach the storage: {describe(error)}", file=sys.stderr)
            return 1
        print(
            f"ninelives: internal error: {describe(error)} "
            "(set NINELIVES_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return 1
