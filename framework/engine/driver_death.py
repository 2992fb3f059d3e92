"""When Spark's driver dies under a run, the ledger still learns why.

Spark exits its JVM on a fatal error (``OutOfMemoryError``), or the system kills it.
The run's Python process lives on, but everything it would write goes through that
JVM. Left alone, the partition stays ``running`` under a dead runner, and ``status``
advises the same command, which dies the same way. So the dying ``ninelives run``
starts this module as a child with a JVM of its own: it appends the ``failed`` states
with the JVM's last words (``OutOfMemoryError: Java heap space``), and ``status`` shows
the cause and what to change.

Example::

    record_in_new_process(config, error.states)   # error: DriverDiedError
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import subprocess
import sys

from framework.core.config import Config, load_config
from framework.lake.tables import Lakehouse
from framework.state.ledger import Ledger, PartitionState


def _encode(state: PartitionState) -> dict[str, object]:
    return {
        name: value.isoformat() if isinstance(value, (dt.date, dt.datetime)) else value
        for name, value in dataclasses.asdict(state).items()
    }


def _decode(values: dict[str, object]) -> PartitionState:
    for field in dataclasses.fields(PartitionState):
        value = values.get(field.name)
        if isinstance(value, str) and field.name == "partition":
            values[field.name] = dt.date.fromisoformat(value)
        elif isinstance(value, str) and field.name.endswith("_at"):
            values[field.name] = dt.datetime.fromisoformat(value)
    return PartitionState(**values)  # type: ignore[arg-type]


def record_in_new_process(config: Config, states: list[PartitionState]) -> str | None:
    """Record ``states`` through a new process's Spark; ``None`` when done, else why not."""
    payload = {
        "conf": None if config.source == "<defaults>" else config.source,
        "lakehouse": config.lakehouse.root,
        "states": [_encode(s) for s in states],
    }
    try:
        done = subprocess.run(
            [sys.executable, "-m", "framework.engine.driver_death"],
            input=json.dumps(payload),
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return str(error)
    lines = done.stderr.strip().splitlines()
    return None if done.returncode == 0 else (lines[-1] if lines else f"exit {done.returncode}")


def main() -> None:
    from framework.lake.session import get_or_create_session

    payload = json.load(sys.stdin)
    config = load_config(payload["conf"], lakehouse=payload["lakehouse"])
    ledger = Ledger(
        get_or_create_session(config), Lakehouse(config.lakehouse).framework_table("ledger")
    )
    ledger.record([_decode(values) for values in payload["states"]])


if __name__ == "__main__":
    main()
