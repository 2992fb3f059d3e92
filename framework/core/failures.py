"""The root cause of a failure, in the one line a person reads at 3 AM.

Spark and Delta errors reach Python either as a converted exception with an error
condition (``AnalysisException: [DELTA_TABLE_NOT_FOUND] ...``) or as a bare
``Py4JJavaError: An error occurred while calling o916.collectToPython.``, whose text
is a JVM stack trace with the cause buried in its ``Caused by:`` lines. Both carry the
same three facts, and :func:`root_cause` keeps just those: the error condition (or
the exception's class), its message, and the innermost cause, which names the file,
table or column where Spark names one. Stack frames are dropped; they stay in the
exception for ``NINELIVES_DEBUG`` and log files.

It reads the exception's text and its public ``getCondition()`` only, never the JVM
through py4j, so it works the same for Spark Connect errors, which have no JVM side.

Example::

    >>> print(describe(error))
    FAILED_READ_FILE.NO_HINT: Encountered error while reading file
    file:/lake/landing/orders/order_date=2024-01-01/part-00000.json.
    SQLSTATE: KD001; cause: ChecksumException: Checksum error:
    file:/lake/landing/orders/order_date=2024-01-01/part-00000.json at 0 exp: 1 got: 2
"""

from __future__ import annotations

import re
import traceback
from dataclasses import dataclass

from framework.core.errors import NinelivesError, delta_conflicts

# One line of a failure is shown in tables; the ledger keeps this much of it.
LIMIT = 1000

_CONDITION = re.compile(r"\[([A-Z][A-Z0-9_]*(?:\.[A-Z0-9_]+)*)\]\s*")
_CAUSED_BY = re.compile(r"^Caused by: ([\w.$]+)(?::\s*(.*))?$")
_FRAME = re.compile(r"^\s*(at |\.\.\. \d+ more|JVM stacktrace:|Traceback )")
_JAVA_HEADLINE = re.compile(r"^((?:[a-z]\w*\.)+[A-Z][\w$]*):\s*(.*)$")
_PY_FRAME = re.compile(r'^\s*File "(.+)", line (\d+), in (.+)$')
# Frames of these are the machinery, not the place a job's own code failed.
_LIBRARY_PATHS = ("/pyspark/", "/py4j/", "/delta/")
_PY4J_CALL = re.compile(r"^An error occurred while calling [\w.$]+\.?$")


@dataclass(frozen=True)
class RootCause:
    """What failed (``condition`` or the exception's class), why, and the innermost cause."""

    kind: str
    message: str
    cause: str | None = None
    condition: str | None = None
    where: str | None = None
    """``file:line, in function``: where a Python error was raised (``locate=True``)."""

    def __str__(self) -> str:
        return self.line()

    def line(self, *, kind: bool = True) -> str:
        """The one line; ``kind=False`` leaves out the kind (shown beside it already)."""
        text = self.message or self.kind
        if kind and self.message:
            text = f"{self.kind}: {text}"
        if self.cause and self.cause not in text:
            text += f"; cause: {self.cause}"
        if self.where:
            text += f" (at {self.where})"
        return text if len(text) <= LIMIT else text[: LIMIT - 3] + "..."


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _short(java_class: str) -> str:
    """``org.apache.hadoop.fs.ChecksumException`` -> ``ChecksumException``."""
    return java_class.rsplit(".", 1)[-1]


def _condition(error: BaseException, text: str) -> str | None:
    get = getattr(error, "getCondition", None) or getattr(error, "getErrorClass", None)
    if callable(get):
        try:
            found = get()
        except Exception:  # a half-converted error: fall back to the text
            found = None
        if found:
            return str(found)
    match = _CONDITION.search(text)
    return match.group(1) if match else None


def _headline(lines: list[str]) -> str:
    """The first line that says what happened: not py4j's "while calling", not a frame."""
    for line in lines:
        stripped = line.strip().removeprefix(": ").strip()
        if stripped and not _PY4J_CALL.match(stripped) and not _FRAME.match(line):
            return stripped
    return ""


def _innermost(lines: list[str]) -> str | None:
    """The last ``Caused by:`` of a JVM stack trace, as ``Class: message``."""
    for line in reversed(lines):
        match = _CAUSED_BY.match(line.strip())
        if match:
            name, message = _short(match.group(1)), (match.group(2) or "").strip()
            return f"{name}: {message}" if message else name
    return None


def _python_cause(lines: list[str]) -> str | None:
    """The exception line of a Python traceback (a worker's, inside a Spark error),
    with the innermost frame: ``ZeroDivisionError: ... at jobs/x.py:8, in clean``."""
    # At a line's start in a classic error; after the headline through Spark Connect.
    if not any("Traceback (most recent call last)" in line for line in lines):
        return None
    frames = [m for line in lines if (m := _PY_FRAME.match(line))]
    last = next((line for line in reversed(lines) if line and not line[0].isspace()), "")
    if not frames:
        return last or None
    file, number, function = frames[-1].groups()
    return f"{last} at {file}:{number}, in {function}"


def _own_frame(error: BaseException) -> str | None:
    """Where a Python error was raised, outside Spark's and py4j's own code."""
    frames = [
        f
        for f in traceback.extract_tb(error.__traceback__)
        if not any(part in f.filename for part in _LIBRARY_PATHS)
    ]
    return f"{frames[-1].filename}:{frames[-1].lineno}, in {frames[-1].name}" if frames else None


def root_cause(error: BaseException, *, locate: bool = False) -> RootCause:
    """Distil ``error`` into its condition, message and innermost cause; with
    ``locate``, a Python error also gets the line that raised it (a job's own code).

    The framework's own errors (:class:`~framework.core.errors.NinelivesError`) already say
    what happened and what to do, and are kept whole, on one line.
    """
    text = str(error).strip() or repr(error)
    if isinstance(error, NinelivesError):
        return RootCause(type(error).__name__, _one_line(text))
    lines = text.splitlines()
    condition = _condition(error, text)
    headline = _headline(lines)
    java = _JAVA_HEADLINE.match(headline)
    if java:  # "org.apache.spark.SparkException: [COND] Job aborted" -> "[COND] Job aborted"
        headline = java.group(2)
    if condition:
        headline = headline.replace(f"[{condition}]", "", 1).strip()
    kind = condition or (_short(java.group(1)) if java else type(error).__name__)
    cause = _python_cause(lines) or _innermost(lines)
    python_error = cause is None and not java and not condition
    return RootCause(
        kind=kind,
        message=_one_line(headline).rstrip(":"),
        cause=cause,
        condition=condition if condition and condition.isupper() else None,
        where=_own_frame(error) if locate and python_error else None,
    )


def describe(error: BaseException) -> str:
    """:func:`root_cause` as one line."""
    return str(root_cause(error))


# What a file system client says when the storage cannot be reached or refuses who is
# asking (S3A, the AWS SDK, boto, the JDK): the set-up's doing, not the framework's.
_UNREACHABLE = re.compile(
    r"\b(AccessDeniedException|NoAuthWithAWSException|NoCredentialsError|"
    r"UnknownHostException|ConnectException|EndpointConnectionError|"
    r"Unable to load credentials|Unable to locate credentials)\b"
)


def storage_unreachable(error: BaseException) -> bool:
    """Whether ``error`` is storage that cannot be reached, or refuses these
    credentials."""
    cause = root_cause(error)
    return bool(_UNREACHABLE.search(f"{cause.kind} {cause.message} {cause.cause or ''}"))


# The error conditions of Delta's concurrency exceptions: what a Spark Connect client
# receives, which has no py4j to convert a JVM exception into Delta's Python classes.
DELTA_CONFLICT_CONDITIONS = (
    "DELTA_CONCURRENT_APPEND",
    "DELTA_CONCURRENT_DELETE_DELETE",
    "DELTA_CONCURRENT_DELETE_READ",
    "DELTA_CONCURRENT_TRANSACTION",
    "DELTA_CONCURRENT_WRITE",
    "DELTA_METADATA_CHANGED",
    "DELTA_PROTOCOL_CHANGED",
)


def is_delta_conflict(error: BaseException) -> bool:
    """Whether ``error`` is Delta's optimistic-concurrency failure, on a classic session
    (one of :func:`~framework.core.errors.delta_conflicts`) or through Spark Connect or
    an unconverted ``Py4JJavaError`` (by its condition)."""
    if isinstance(error, delta_conflicts()):
        return True
    condition = root_cause(error).condition or ""
    return condition.split(".")[0] in DELTA_CONFLICT_CONDITIONS
