"""What a Delta table's log says, read from its ``_delta_log`` files without Spark.

A crash test asks which commits exist after a kill, and which partitions a ninelives
unit tagged in each (its ``userMetadata``); reading the JSON commit files directly
answers while a child run may still be writing, and costs no query. The benchmark
reads its timings from the same :func:`log_commits`: ``deltalake``'s ``history()`` has
each commit's ``commitInfo`` but not the statistics of the files it added.

Example::

    committed_partitions(lake.target_path)   # ["2024-01-01", "2024-01-02"]
    commit_operations(lake.ledger_path)      # [(0, "WRITE"), (1, "WRITE"), ...]
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any


def files_under(folder: Path) -> set[str]:
    """Relative paths of every file under ``folder`` (empty if it does not exist)."""
    found: set[str] = set()
    for top, _, names in os.walk(folder):
        found.update(os.path.relpath(os.path.join(top, n), folder) for n in names)
    return found


def log_versions(table: Path) -> list[int]:
    """Versions of the commit files in a Delta table's ``_delta_log``."""
    return sorted(int(p.stem) for p in (table / "_delta_log").glob("*.json") if p.stem.isdigit())


def log_commits(table: Path, after: int | None = None) -> list[dict[str, Any]]:
    """Every commit of the Delta table at ``table`` (only those above version ``after``,
    if given), oldest first: its ``commitInfo`` (``timestamp`` in epoch ms,
    ``operation``, ``operationMetrics``, ``userMetadata``, ...) plus ``version``,
    ``added`` (the parsed statistics of each added file that has them), ``txn`` (its
    transaction-id actions: ``appId``, ``version``, ``lastUpdated``), ``add_actions``
    and ``remove_actions`` (how many files it added and removed)."""
    out = []
    for version in log_versions(table):
        if after is not None and version <= after:
            continue
        commit: dict[str, Any] = {"version": version, "added": [], "txn": []}
        adds = removes = 0
        with (table / "_delta_log" / f"{version:020d}.json").open() as lines:
            for line in lines:
                action = json.loads(line)
                if "commitInfo" in action:
                    commit.update(action["commitInfo"])
                elif "txn" in action:
                    commit["txn"].append(action["txn"])
                elif "add" in action:
                    adds += 1
                    if action["add"].get("stats"):
                        commit["added"].append(json.loads(action["add"]["stats"]))
                removes += "remove" in action
        commit.update(add_actions=adds, remove_actions=removes)
        out.append(commit)
    return out


def commits(table: Path) -> list[tuple[int, str, dict | None]]:
    """(version, operation, ninelives commit metadata or None) of each commit in a
    Delta log."""
    found = []
    for commit in log_commits(table):
        meta = None
        with contextlib.suppress(TypeError, ValueError):
            meta = json.loads(commit.get("userMetadata"))  # type: ignore[arg-type]
        found.append(
            (
                commit["version"],
                commit.get("operation", "?"),
                meta if isinstance(meta, dict) else None,
            )
        )
    return found


def commit_operations(table: Path) -> list[tuple[int, str]]:
    """(version, operation) of each commit in a Delta log."""
    return [(version, operation) for version, operation, _ in commits(table)]


def tagged_commits(table: Path) -> list[tuple[int, str, dict]]:
    """(version, operation, metadata) of the commits a ninelives unit tagged."""
    return [(v, op, meta) for v, op, meta in commits(table) if meta and "partitions" in meta]


def committed_partitions(table: Path) -> list[str]:
    """The partitions of each tagged commit, in log order (a unit's in date order)."""
    return [p for _, _, meta in tagged_commits(table) for p in sorted(meta["partitions"])]


def assert_log_has_no_gap(table: Path) -> None:
    """The log's versions run from 0 without a hole (no commit lost between writers)."""
    versions = log_versions(table)
    assert versions, f"{table} has no Delta log"
    assert versions == list(range(versions[0], versions[-1] + 1)) and versions[0] == 0, (
        f"Delta log of {table} has a gap: versions {versions}"
    )
