"""Named exceptions. Each message names the job, the partition and the fix.

``exit_code`` is what the CLI returns when the error reaches it: 2 for a usage or
configuration error, 1 for a failed partition. (Exit code 3, another runner holds the
job, is no exception: the run reports the partitions it left to that runner.)
"""

from __future__ import annotations


class NinelivesError(Exception):
    """Base of every error the framework raises on purpose."""

    exit_code = 1


class ConfigError(NinelivesError, ValueError):
    """A configuration file or value is wrong."""

    exit_code = 2


class UsageError(NinelivesError, ValueError):
    """A command-line argument or API argument is wrong (bad date, unknown job...)."""

    exit_code = 2


class InvalidNameError(UsageError):
    """A table or column name contains characters that are not allowed."""


class ServerUnreachableError(NinelivesError):
    """The Spark Connect server a run is to go through (``[spark] remote``,
    ``SPARK_REMOTE``) does not answer."""


class PartitionError(NinelivesError):
    """Processing one partition failed; the ledger records it as ``failed``."""


class SourceMissingError(PartitionError):
    """The source has no data at all for the partition."""


class SchemaMismatchError(PartitionError):
    """The source or the transform output does not match what the job declares."""


class ExpectationFailedError(PartitionError):
    """Rows break an expectation whose action is ``fail``."""


class RejectRatioError(PartitionError):
    """More of the partition's rows were rejected than the job's max_reject_ratio allows."""


class KeyColumnTypeError(UsageError):
    """A key column has a type that has no canonical encoding."""


class TargetMissingError(PartitionError):
    """The target table is gone although the ledger records partitions written to it."""


class DriverDiedError(NinelivesError):
    """Spark's driver JVM died under the run (out of memory, killed): nothing more can be
    written through it. ``states`` are the failed states the run could not record."""

    def __init__(self, message: str, states: list) -> None:
        super().__init__(message)
        self.states = states


class FencedError(PartitionError):
    """Delta skipped our commit: a unit of the job with a number at least as high
    committed first. ``newest_unit`` is the highest the table's log holds; a unit whose
    partitions no newer attempt holds is claimed again above it."""

    def __init__(self, message: str, newest_unit: int = 0) -> None:
        super().__init__(message)
        self.newest_unit = newest_unit


class AccountingError(PartitionError):
    """read != written + rejected + duplicates: a record would be lost."""


def delta_conflicts() -> tuple[type[Exception], ...]:
    """Delta's optimistic-concurrency exceptions: siblings in Python, so caught as a tuple."""
    from delta import exceptions as d

    return (
        d.ConcurrentAppendException,
        d.ConcurrentDeleteDeleteException,
        d.ConcurrentDeleteReadException,
        d.ConcurrentTransactionException,
        d.ConcurrentWriteException,
        d.DeltaConcurrentModificationException,
        d.MetadataChangedException,
        d.ProtocolChangedException,
    )
