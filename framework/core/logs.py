"""Logging: the framework's named loggers, the run events logger and its JSON lines.

Every module logs to ``logging.getLogger(__name__)`` (``framework.engine.runner``, ...),
so an application that embeds ninelives routes the ``framework`` logger as it routes
any other. What a run does, event by event (``run_started``, ``transition``,
``run_finished``, ``run_aborted``), is logged at INFO to the :data:`EVENTS` logger by
:class:`framework.ops.observers.LogObserver`: the record's message is the event's name,
its fields are in ``record.fields``. :class:`JsonFormatter` writes such a record as one
JSON object per line, which is what ``ninelives run --log-format json`` and
``--log-file`` write.

Example (an application's own JSON log of every run event)::

    handler = logging.FileHandler("runs.jsonl")
    handler.setFormatter(JsonFormatter())
    logging.getLogger(EVENTS).addHandler(handler)
    logging.getLogger(EVENTS).setLevel(logging.INFO)
    run_job(spark, lakehouse, job, request, observers=[LogObserver()])
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from typing import IO

EVENTS = "framework.events"
"""The logger of run events."""


def _json_default(value: object) -> str:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts`` (UTC) and ``event``, then the record's
    ``fields``. A record without fields (a plain log line) is written as the event
    ``log`` with its ``level``, ``logger`` and ``message``."""

    def format(self, record: logging.LogRecord) -> str:
        ts = dt.datetime.fromtimestamp(record.created, dt.timezone.utc)
        fields = getattr(record, "fields", None)
        line: dict[str, object]
        if isinstance(fields, dict):
            line = {"ts": ts, "event": record.getMessage(), **fields}
        else:
            line = {
                "ts": ts,
                "event": "log",
                "level": record.levelname,
                "logger": record.name,
                "message": record.getMessage(),
            }
        return json.dumps(line, default=_json_default)


class JsonLinesHandler(logging.StreamHandler):
    """JSON lines (:class:`JsonFormatter`) on a stream, flushed line by line, so a
    ``kill -9`` loses no line already written. A write that fails raises to the caller
    (the run's observer reports it in one line) instead of printing logging's traceback."""

    def __init__(self, stream: IO[str], *, close: bool = False) -> None:
        super().__init__(stream)
        self.setFormatter(JsonFormatter())
        self._close = close

    @classmethod
    def to_file(cls, path: str) -> JsonLinesHandler:
        """Append to ``path`` (created if missing), line-buffered."""
        return cls(open(path, "a", buffering=1, encoding="utf-8"), close=True)

    def handleError(self, record: logging.LogRecord) -> None:
        error = sys.exc_info()[1]
        if error is not None:
            raise error

    def close(self) -> None:
        super().close()
        if self._close and not self.stream.closed:
            self.stream.close()


class _Stderr(logging.StreamHandler):
    """Whatever ``sys.stderr`` is when a record comes (tests and notebooks swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def to_stderr(level: int = logging.WARNING) -> None:
    """What the ``ninelives`` command does with the ``framework`` logger: each record
    of ``level`` and above is one line on stderr, ``ninelives: <message>``. Idempotent,
    however often the command runs in one process."""
    logger = logging.getLogger("framework")
    handler = next((h for h in logger.handlers if isinstance(h, _Stderr)), None)
    if handler is None:
        handler = _Stderr()
        handler.setFormatter(logging.Formatter("ninelives: %(message)s"))
        logger.addHandler(handler)
    handler.setLevel(level)  # run events (INFO) pass by on their way to their own handlers
    logger.setLevel(level)
    logger.propagate = False
