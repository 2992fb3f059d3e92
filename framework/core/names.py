"""Plain identifiers for tables and columns, checked before they reach Spark.

Names are validated here and back-quoted wherever SQL text is unavoidable, so no name
is ever interpolated into SQL unquoted.
"""

from __future__ import annotations

import re

from framework.core.errors import InvalidNameError

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


def checked_identifier(name: str, what: str = "name") -> str:
    """Return ``name`` if it is a plain identifier, else raise :class:`InvalidNameError`."""
    if not isinstance(name, str) or not IDENTIFIER.match(name):
        raise InvalidNameError(
            f"invalid {what} {name!r}: use letters, digits and underscores, "
            "starting with a letter or underscore"
        )
    return name


def checked_table_name(logical_name: str) -> tuple[str, str]:
    """``"schema.table"`` -> (schema, table), both plain identifiers."""
    parts = logical_name.split(".") if isinstance(logical_name, str) else []
    if len(parts) != 2:
        raise InvalidNameError(f"invalid table name {logical_name!r}: expected 'schema.table'")
    schema, name = (checked_identifier(p, "table name part") for p in parts)
    return schema, name


def quoted(name: str) -> str:
    """Back-quote a checked identifier for SQL: ``order_date`` -> ```order_date```."""
    return f"`{checked_identifier(name, 'column name')}`"


def sql_string(value: str) -> str:
    """A Spark SQL string literal of ``value``: ``it's`` -> ``'it\\'s'`` (backslashes and
    quotes escaped, as Spark's parser reads them)."""
    return "'{}'".format(str(value).replace("\\", "\\\\").replace("'", "\\'"))


__all__ = ["IDENTIFIER", "checked_identifier", "checked_table_name", "quoted", "sql_string"]
