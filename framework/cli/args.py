"""What every ``ninelives`` command shares: the parser class, typed options, the dates a
command was asked for, the configuration it runs with, and how a command registers.

A command module defines ``register(commands, common)``, which adds its subparser with
``parents=[common]`` and sets its handler with ``set_defaults(handler=...)``. This module
imports nothing of the other command modules, so they all import it and not each other.

Example (a command module)::

    def register(commands: Commands, common: argparse.ArgumentParser) -> None:
        history = commands.add_parser("history", parents=[common], help="...")
        history.add_argument("--limit", type=positive, default=20)
        history.set_defaults(handler=cmd_history)
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shlex
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from rich.console import Console

from framework.core import dates
from framework.core.config import Config, load_config, parse_size
from framework.core.errors import UsageError
from framework.lake.storage import is_url

Handler = Callable[[argparse.Namespace, Config, Console], int]
"""What a command runs: the parsed options, the configuration, the console; its exit code."""

Commands = argparse._SubParsersAction  # what add_subparsers returns


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, not the whole usage block: the message says what is wrong.
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def common_options() -> Parser:
    """``--lakehouse``, ``--conf`` and ``--verbose``, accepted before and after a command's
    own arguments; SUPPRESS keeps a value given in one place from being reset by the other."""
    common = Parser(add_help=False)
    common.add_argument(
        "--lakehouse",
        default=argparse.SUPPRESS,
        help="lakehouse root (env NINELIVES_LAKEHOUSE, default ./lakehouse)",
    )
    common.add_argument(
        "--conf",
        default=argparse.SUPPRESS,
        help="TOML config file (env NINELIVES_CONF; default: built-in, as conf/local.toml)",
    )
    common.add_argument(
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="also show the JVM's start-up notices and Spark's warnings",
    )
    return common


def date(text: str) -> dt.date:
    """An option's date: see :func:`framework.core.dates.parse_date`."""
    try:
        return dates.parse_date(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def positive(text: str) -> int:
    """An option's count: a whole number of at least 1, as ``int`` reads it."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def ratio(text: str) -> float:
    """An option's ratio, between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a ratio between 0 and 1, got {text!r}")
    return value


def size(text: str) -> int:
    """An option's byte size: ``512MB``, ``2GB``."""
    try:
        return parse_size(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_dates(parser: argparse.ArgumentParser) -> None:
    """``--date D`` or ``--from D --to D``; read them with :func:`requested_dates`."""
    parser.add_argument("--date", type=date, help="one partition, YYYY-MM-DD")
    parser.add_argument("--from", dest="start", type=date, help="first partition")
    parser.add_argument("--to", dest="end", type=date, help="last partition")


def requested_dates(args: argparse.Namespace, *, required: bool) -> list[dt.date] | None:
    """The dates of :func:`add_dates`' options, checked; None when none were given."""
    return dates.requested_dates(args.date, args.start, args.end, required=required)


def config_of(args: argparse.Namespace) -> Config:
    """The configuration a command runs with: ``--conf`` or NINELIVES_CONF, with
    ``--lakehouse`` or NINELIVES_LAKEHOUSE over its root."""
    conf = getattr(args, "conf", None) or os.environ.get("NINELIVES_CONF") or None
    lakehouse = getattr(args, "lakehouse", None) or os.environ.get("NINELIVES_LAKEHOUSE")
    config = load_config(conf, lakehouse=lakehouse)
    if getattr(args, "verbose", False):
        config = config.with_spark(quiet=False)
    if not config.lakehouse.catalog and not is_url(config.lakehouse.root):
        check_lakehouse_root(config.lakehouse.root)
    return config


def check_lakehouse_root(root: str) -> None:
    """A local lakehouse root must be a readable, writable folder, or creatable."""
    path = Path(root)
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is None or not existing.is_dir():
        raise UsageError(f"lakehouse path {root} is unusable: {existing} is not a directory")
    # Try it: permission bits say nothing to root, and pseudo file systems (/proc)
    # refuse what their bits allow.
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".ninelives-probe-", dir=existing))
    except OSError as error:
        raise UsageError(
            f"lakehouse path {root} is unusable: cannot create a folder in {existing} "
            f"({error.strerror or error})"
        ) from None


def repeated_options(args: argparse.Namespace) -> str:
    """``--lakehouse``/``--conf`` to repeat in a printed command, so that it acts on the
    same lakehouse."""
    parts = []
    for name in ("lakehouse", "conf"):
        value = getattr(args, name, None)
        if value:
            parts.append(f" --{name} {shlex.quote(value)}")
    return "".join(parts)
