"""A small local stand-in for Databricks' ``dbutils.widgets``, to run notebooks in tests.

Only the widget calls the project's notebooks use are provided, with Databricks'
semantics: a widget is declared once with a default, and ``get`` returns the value
given for the run (``values``) or else the default, always as a string.

Example::

    dbutils = LocalDBUtils({"job": "orders_daily", "date": "2024-01-15"})
    exec(notebook_source, {"spark": spark, "dbutils": dbutils, "display": print})
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


class LocalWidgets:
    def __init__(self, values: Mapping[str, str] | None = None) -> None:
        self._values = dict(values or {})
        self._defaults: dict[str, str] = {}
        self._choices: dict[str, tuple[str, ...]] = {}

    def text(self, name: str, defaultValue: str, label: str | None = None) -> None:
        self._defaults[name] = defaultValue

    def dropdown(
        self,
        name: str,
        defaultValue: str,
        choices: Sequence[str],
        label: str | None = None,
    ) -> None:
        if defaultValue not in choices:
            raise ValueError(f"widget {name}: default {defaultValue!r} is not among its choices")
        self._defaults[name] = defaultValue
        self._choices[name] = tuple(choices)

    def get(self, name: str) -> str:
        if name not in self._defaults:
            raise ValueError(f"no widget named {name!r} was declared")
        value = self._values.get(name, self._defaults[name])
        if name in self._choices and value not in self._choices[name]:
            raise ValueError(f"widget {name}: {value!r} is not one of {self._choices[name]}")
        return value

    def removeAll(self) -> None:
        self._defaults.clear()
        self._choices.clear()


class LocalDBUtils:
    """``dbutils`` with just ``widgets``."""

    def __init__(self, values: Mapping[str, str] | None = None) -> None:
        self.widgets = LocalWidgets(values)
