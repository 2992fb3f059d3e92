"""Declarative expectations on a job's transformed rows, as in Databricks pipelines.

Each rule is a predicate a good row satisfies (NULL counts as a violation) and an
action for the rows that do not:

* ``quarantine`` (default): the row goes to the quarantine with the rule's name;
* ``drop``: the row is dropped and counted in ``rows_dropped``;
* ``fail``: one violating row fails the whole partition (``ExpectationFailedError``).

A row that breaks a quarantine rule and a drop rule is quarantined: it stays visible.
Rules are built lazily (a job is declared at import time, before any SparkSession).

Example::

    expectations=(
        not_null("source_id"),
        accepted_values("currency", ["EUR", "USD", "GBP"]),
        in_range("amount", minimum=0),
        matches("source_id", r"^ORD-\\d{10}$"),
        sql_rule("paid_has_amount", "event_type <> 'paid' OR amount > 0", action="fail"),
    )
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pyspark.sql import Column
from pyspark.sql import functions as F

from framework.core.errors import UsageError
from framework.core.names import checked_identifier

ACTIONS = ("quarantine", "drop", "fail")


@dataclass(frozen=True)
class Expectation:
    """A named rule: ``condition()`` is true for good rows."""

    name: str
    condition: Callable[[], Column]
    action: str = "quarantine"

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise UsageError(
                f"expectation {self.name!r}: action {self.action!r} is not one of: "
                f"{', '.join(ACTIONS)}"
            )

    def violated(self) -> Column:
        """True for rows that break the rule; a NULL result breaks it too."""
        return ~F.coalesce(self.condition(), F.lit(False))


def not_null(column: str, action: str = "quarantine") -> Expectation:
    checked_identifier(column, "column name")
    return Expectation(f"{column} is not null", lambda: F.col(column).isNotNull(), action)


def accepted_values(column: str, values: Sequence[Any], action: str = "quarantine") -> Expectation:
    checked_identifier(column, "column name")
    allowed = list(values)
    shown = ", ".join(map(str, allowed))
    return Expectation(f"{column} in ({shown})", lambda: F.col(column).isin(allowed), action)


def in_range(
    column: str,
    minimum: Any = None,
    maximum: Any = None,
    action: str = "quarantine",
) -> Expectation:
    """``minimum <= column <= maximum``; either bound may be left open."""
    checked_identifier(column, "column name")
    if minimum is None and maximum is None:
        raise UsageError(f"in_range({column!r}) needs a minimum, a maximum or both")

    def condition() -> Column:
        c = F.col(column)
        low = c >= F.lit(minimum) if minimum is not None else F.lit(True)
        high = c <= F.lit(maximum) if maximum is not None else F.lit(True)
        return c.isNotNull() & low & high

    lo = "" if minimum is None else f"{minimum} <= "
    hi = "" if maximum is None else f" <= {maximum}"
    return Expectation(f"{lo}{column}{hi}", condition, action)


def matches(column: str, regex: str, action: str = "quarantine") -> Expectation:
    checked_identifier(column, "column name")
    return Expectation(f"{column} matches {regex}", lambda: F.col(column).rlike(regex), action)


def sql_rule(name: str, predicate: str, action: str = "quarantine") -> Expectation:
    """A custom SQL predicate over the transformed row, e.g. ``"qty > 0 OR refund"``."""
    return Expectation(name, lambda: F.expr(predicate), action)


def reasons(expectations: Sequence[Expectation], action: str) -> Column:
    """``"rule a; rule b"`` for the rules of ``action`` a row breaks, or NULL."""
    names = [F.when(e.violated(), F.lit(e.name)) for e in expectations if e.action == action]
    if not names:
        return F.lit(None).cast("string")
    joined = F.concat_ws("; ", *names)
    return F.when(joined != "", joined)
