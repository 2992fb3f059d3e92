"""The figures of a benchmark run: latest.json's ratios against their targets, computed
from the measured runs, and the file itself.

``bench/results/latest.json`` holds the nightly benchmark's keys (:func:`latest`), and
the big night and the control plane add theirs to it (:func:`merge_into_latest`).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.job import TARGET
from bench.measure import REPO, machine
from bench.timeline import profile

if TYPE_CHECKING:
    from bench.cases import Bench

RESULTS = REPO / "bench" / "results"
TARGETS: dict[str, tuple[str, float, str]] = {
    # metric: (comparison, target, case)
    "full_vs_bulk": ("<=", 1.25, "i"),
    "full_vs_plain": ("<=", 2.5, "e"),
    "full_vs_bare": ("<=", 1.0, "d"),
    "recovery_ratio": ("<=", 0.20, "b"),
    "noop_ratio": ("<=", 0.02, "c"),
    "dates_365_vs_30": ("<=", 1.5, "j"),
    "ninelives_duplicates": ("==", 0, "f"),
    "unchanged_rows_updated": ("==", 0, "g"),
    "unchanged_files_added": ("==", 0, "g"),
}
# Keys of latest.json before work units: kept as aliases of their new names, and read
# from old files by --report-only.
ALIASES = {"overhead_vs_bare": "full_vs_bare", "overhead_vs_plain": "full_vs_plain"}
# The same ratios in CPU seconds (results' cpu_ratios) under their own names.
CPU_KEYS = {
    "recovery_ratio": "recovery",
    "noop_ratio": "noop",
    "full_vs_bare": "vs_bare",
    "full_vs_plain": "vs_plain",
    "full_vs_bulk": "vs_bulk",
    "dates_90_vs_30": "dates_90_vs_30",
    "dates_365_vs_30": "dates_365_vs_30",
}


def latest(
    bench: Bench, inspected: dict[str, Any], load_start: tuple[float, ...]
) -> dict[str, Any]:
    """latest.json from what ``bench`` measured and ``inspected`` counted (the tables' rows
    and keys, the ledgers' states), with the load average of the start."""
    r = bench.runs
    # With --repeat, the fastest of the repeated runs: load from other processes only
    # ever slows a run down.
    best = {base: bench.best(base) for base in ("a_full", "d_bare", "i_bulk")}
    full = best["a_full"].seconds if best["a_full"] else None
    tables = inspected.get("tables", {})

    def seconds(name: str) -> float | None:
        m = best.get(name) or r.get(name)
        return round(m.seconds, 2) if m else None

    def ratio(name: str) -> float | None:
        s = seconds(name)
        return round(s / full, 4) if full and s else None

    def inverse(name: str) -> float | None:
        s = seconds(name)
        return round(full / s, 4) if full and s else None

    def dups(case: str) -> int | None:
        t = tables.get(str(bench.lakehouse(case) / TARGET))
        return t["rows"] - t["distinct_keys"] if t else None

    def rss(*patterns: str) -> dict[str, float] | None:
        found = [m for n, m in r.items() if any(re.fullmatch(p, n) for p in patterns)]
        if not found:
            return None
        return {
            "java": round(max(m.java_rss_mb for m in found), 1),
            "tree": round(max(m.tree_rss_mb for m in found), 1),
        }

    cpu = {n: round(m.cpu_s, 1) for n, m in r.items()}

    def best_cpu(base: str) -> float | None:
        found = [v for n, v in cpu.items() if re.fullmatch(rf"{base}(_\d+)?", n)]
        return min(found, default=None)

    cpu_a, cpu_d, cpu_i = best_cpu("a_full"), best_cpu("d_bare"), best_cpu("i_bulk")
    scaling: dict[str, Any] = {}
    if full:
        scaling[str(bench.days)] = {
            "run": best["a_full"].name,  # type: ignore[union-attr]
            "rows": bench.rows,
            "rows_per_day": bench.rows_per_day,
        }
    for days in bench.scaling:
        if f"j_dates{days}" in r:
            scaling[str(days)] = {
                "run": f"j_dates{days}",
                "rows": (bench.rows_requested // days) * days,
                "rows_per_day": bench.rows_requested // days,
            }
    prof = profile(bench.work, {n: asdict(m) for n, m in r.items()})
    for days, entry in scaling.items():
        m = r[entry["run"]]
        units = prof.get("ninelives" if days == str(bench.days) else f"dates_{days}") or {}
        entry.update(
            seconds=round(m.seconds, 2),
            cpu_s=round(m.cpu_s, 1),
            units=len(units.get("units") or []),
            peak_rss_mb={"java": round(m.java_rss_mb, 1), "tree": round(m.tree_rss_mb, 1)},
            vs_full=_div(m.seconds, full),
            cpu_vs_full=_div(m.cpu_s, cpu_a),
        )
    full_vs_bare, full_vs_plain = inverse("d_bare"), inverse("e_plain")
    out: dict[str, Any] = {
        "rows": bench.rows,
        "full_s": round(full, 2) if full else None,
        "bare_s": seconds("d_bare"),
        "bare_nmbs_s": seconds("d_bare_nmbs"),
        "plain_s": seconds("e_plain"),
        "bulk_s": seconds("i_bulk"),
        "full_vs_bulk": inverse("i_bulk"),
        "full_vs_plain": full_vs_plain,
        "full_vs_bare": full_vs_bare,
        "recovery_ratio": ratio("b_rerun"),
        "noop_ratio": ratio("c_noop"),
        "noop_spark_ratio": ratio("c_noop_spark"),
        **{
            f"dates_{days}_vs_{bench.days}": ratio(f"j_dates{days}")
            for days in sorted(bench.scaling)
        },
        "overhead_vs_bare": full_vs_bare,  # the old names of full_vs_bare and _plain
        "overhead_vs_plain": full_vs_plain,
        "naive_duplicates": dups("f"),
        "ninelives_duplicates": dups("b"),
        "bulk_duplicates": dups("i"),
        "unchanged_rows_updated": bench.details.get("unchanged_rows_updated"),
        "unchanged_files_added": bench.details.get("unchanged_files_added"),
        "peak_rss_mb": {
            key: value
            for key, value in {
                "a": rss(r"a_full(_\d+)?"),
                "b": rss("b_crash", "b_rerun"),
                "c": rss("c_noop"),
                "d": rss(r"d_bare(_\d+)?"),
                "e": rss("e_plain"),
                "i": rss(r"i_bulk(_\d+)?"),
                **{f"dates_{days}": rss(f"j_dates{days}") for days in bench.scaling},
            }.items()
            if value is not None or key in ("a", "b")
        },
        # details
        "days": bench.days,
        "rows_per_day": bench.rows_per_day,
        "seed": bench.details.get("seed"),
        "seeds": {k: v for k, v in bench.details.items() if k.startswith("seed_")},
        "scaling": scaling,
        "seconds": {n: round(m.seconds, 2) for n, m in r.items()},
        "cpu_seconds": cpu,
        "cpu_ratios": {
            "recovery": _div(cpu.get("b_rerun"), cpu_a),
            "noop": _div(cpu.get("c_noop"), cpu_a),
            "vs_bare": _div(cpu_a, cpu_d),
            "vs_plain": _div(cpu_a, cpu.get("e_plain")),
            "vs_bulk": _div(cpu_a, cpu_i),
            **{
                f"dates_{days}_vs_{bench.days}": _div(cpu.get(f"j_dates{days}"), cpu_a)
                for days in sorted(bench.scaling)
            },
        },
        "parallel": {
            "1": round(full, 2) if full else None,
            **{
                n.removeprefix("a_parallel"): round(m.seconds, 2)
                for n, m in r.items()
                if n.startswith("a_parallel")
            },
        },
        # full run at --max-parallel N / the (serial) bare loop: the bare loop does one
        # date at a time by definition, so N > 1 is not like for like.
        "overhead_vs_bare_parallel": {
            n.removeprefix("a_parallel"): _div(m.seconds, seconds("d_bare"))
            for n, m in r.items()
            if n.startswith("a_parallel")
        },
        "noop_exit_code_without_landing": r["c_noop"].rc if "c_noop" in r else None,
        # Of the Spark-planned rerun: the delta-rs one starts no JVM and has no log.
        "noop_sql_touching": r["c_noop_spark"].eventlog.get("sql_touching")
        if "c_noop_spark" in r
        else None,
        "noop_spark_jobs": r["c_noop_spark"].eventlog.get("spark_jobs")
        if "c_noop_spark" in r
        else None,
        "crash": bench.details.get("b_crash"),
        "untimed_runs_overlapped": bool(bench.details.get("overlapped")),
        "unchanged_rerun": bench.details.get("g"),
        "inspected": inspected,
        "profile": prof,
        "runs": {n: asdict(m) for n, m in r.items()},
        "load_average": {"start": load_start, "end": os.getloadavg()},
        "machine": machine(),
        "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    return out


def _div(a: float | None, b: float | None) -> float | None:
    return round(a / b, 4) if a is not None and b else None


def verdict(metric: str, value: Any) -> str:
    if value is None:
        return "not measured"
    op, target, _ = TARGETS[metric]
    ok = value <= target if op == "<=" else value == target
    return "met" if ok else "**missed**"


def with_aliases(res: dict[str, Any]) -> dict[str, Any]:
    """An older latest.json read with today's names (``--report-only``)."""
    for old, new in ALIASES.items():
        if res.get(new) is None and res.get(old) is not None:
            res[new] = res[old]
    return res


def write_latest(folder: Path, res: dict[str, Any], rows: int) -> None:
    """latest.json in ``folder``, and the same as ``rows-<rows>.json`` (kept per size)."""
    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps(res, indent=2, default=str) + "\n"
    (folder / "latest.json").write_text(text)
    (folder / f"rows-{rows}.json").write_text(text)


def merge_into_latest(folder: Path, keys: dict[str, Any]) -> None:
    """Add ``keys`` to ``folder``'s latest.json (another benchmark's figures), the rest kept."""
    latest = folder / "latest.json"
    merged = json.loads(latest.read_text()) if latest.is_file() else {}
    merged.update(keys)
    latest.write_text(json.dumps(merged, indent=2) + "\n")
