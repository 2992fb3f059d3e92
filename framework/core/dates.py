"""Dates as the framework takes them in and prints them: partition dates from a person
(``YYYY-MM-DD``, ``today``, ``yesterday``), ranges of them, and timestamps in UTC.

Example::

    requested_dates(None, parse_date("2024-01-01"), parse_date("2024-01-03"))
    # [date(2024, 1, 1), date(2024, 1, 2), date(2024, 1, 3)]
"""

from __future__ import annotations

import datetime as dt

from framework.core.errors import UsageError

MAX_DATES = 3660
"""Ten years of daily partitions: the most one request may name."""

CLI_NAMES = ("--date", "--from", "--to")


def parse_date(text: str) -> dt.date:
    """``YYYY-MM-DD``, or ``today`` / ``yesterday`` (UTC), as schedulers like to pass.
    Raises ValueError with a readable message."""
    today = dt.datetime.now(dt.timezone.utc).date()
    relative = {"today": today, "yesterday": today - dt.timedelta(days=1)}
    if text in relative:
        return relative[text]
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"invalid date {text!r}: expected YYYY-MM-DD, today or yesterday"
        ) from None


def date_range(start: dt.date, end: dt.date) -> list[dt.date]:
    """Every date from ``start`` to ``end``, both included."""
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


def requested_dates(
    one: dt.date | None,
    start: dt.date | None,
    end: dt.date | None,
    *,
    required: bool = True,
    names: tuple[str, str, str] = CLI_NAMES,
) -> list[dt.date] | None:
    """The dates a person asked for: one date, or a range of at most :data:`MAX_DATES`;
    None when none was given and none is ``required``. ``names`` are what the person
    typed them into (options, widgets), for the error messages."""
    date, since, until = names
    if one and (start or end):
        raise UsageError(f"give either {date} or {since}/{until}, not both")
    if one:
        return [one]
    if bool(start) != bool(end):
        raise UsageError(f"{since} and {until} go together")
    if not start or not end:
        if required:
            raise UsageError(f"give {date} D or {since} D {until} D")
        return None
    if start > end:
        raise UsageError(f"{since} {start} is after {until} {end}")
    dates = date_range(start, end)
    if len(dates) > MAX_DATES:
        raise UsageError(f"{len(dates)} dates requested; at most {MAX_DATES} per run")
    return dates


def to_utc(value: dt.datetime | None) -> dt.datetime | None:
    """Spark returns naive local datetimes; the framework thinks in UTC."""
    if value is None:
        return None
    return value.astimezone(dt.timezone.utc)


def iso(value: dt.datetime | None) -> str | None:
    """``2024-01-02T03:04:05Z``, or None."""
    utc = to_utc(value)
    return utc.isoformat(timespec="seconds").replace("+00:00", "Z") if utc else None
