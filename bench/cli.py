"""The nightly benchmark's command line: its flags, and the cases in the order they run.

``python bench/bench.py --rows N`` (``make bench``) calls :func:`main`; what each case
measures is in :mod:`bench.cases`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.cases import BENCH, EVENTLOG_RUNS, SCALING_DAYS, Bench
from bench.chart import write_chart
from bench.figures import RESULTS, TARGETS, latest, with_aliases, write_latest
from bench.report import fmt_load, write_markdown
from bench.timeline import profile


def _numbers(text: str) -> list[int]:
    """``"90,365"`` -> ``[90, 365]``."""
    return [int(x) for x in text.split(",") if x]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="ninelives benchmark: the 30-date night and its baselines"
    )

    def switch(flag: str, text: str) -> None:
        parser.add_argument(flag, action="store_true", help=text)

    parser.add_argument("--rows", type=int, default=10_000_000, help="good events in all")
    parser.add_argument("--days", type=int, default=30, help="date partitions")
    parser.add_argument(
        "--workdir",
        default=None,
        help="scratch folder (default /tmp/ninelives-bench/rows-<ROWS>: each size keeps its "
        "seeded landing data, so a 1M run does not reseed the 10M data)",
    )
    switch("--seed-only", "seed the landing data for --rows and stop")
    switch(
        "--report-only",
        "rewrite RESULTS.md and the chart from --results/latest.json, adding the "
        "per-unit profile from the workdir's Delta logs; runs nothing",
    )
    parser.add_argument(
        "--cases",
        default="abcdefgij",
        help="subset of a-j (b, c, d, e, g, i and j also run a; h reports peak RSS, of "
        "every run anyway)",
    )
    parser.add_argument(
        "--scaling-days",
        type=_numbers,
        default=list(SCALING_DAYS),
        help="case j: the same rows over these many dates (default 90,365)",
    )
    parser.add_argument(
        "--max-parallel",
        type=_numbers,
        default=[1, 2, 4],
        help="--max-parallel values for --parallel-sweep (default 1,2,4)",
    )
    switch("--parallel-sweep", "also time full runs at each --max-parallel")
    switch(
        "--bare-nmbs",
        "also time the bare loop with a WHEN NOT MATCHED BY SOURCE MERGE (scans the "
        "whole target per date: quadratic in the number of dates)",
    )
    switch(
        "--serial",
        "run the untimed runs (f, g) one at a time too; by default "
        "they run side by side to keep the benchmark short",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run a and d this many times, alternating; ratios use the fastest of each "
        "(other processes' load only ever slows a run down)",
    )
    parser.add_argument(
        "--kill-clock",
        choices=("dates", "wall", "cpu"),
        default="dates",
        help="case b: kill once the target's log holds 90%% of the dates (default), or at "
        "90%% of a's wall time or of its CPU seconds",
    )
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--timeout", type=float, default=3600, help="per child process, s")
    parser.add_argument(
        "--eventlog",
        choices=sorted(EVENTLOG_RUNS),
        default="noop",
        help="runs that write a Spark event log: noop (only c, to count its Spark jobs; "
        "default), all (every run, for profiling: it slows runs down) or none",
    )
    parser.add_argument("--results", default=str(RESULTS), help="folder for latest.json, png")
    parser.add_argument("--markdown", default=str(BENCH / "RESULTS.md"))
    args = parser.parse_args(argv)
    if args.days < 2 or args.rows < args.days:
        parser.error("need --days >= 2 and --rows >= --days")
    if set(args.cases) - set("abcdefghij"):
        parser.error("--cases takes letters a-j")
    if args.workdir is None:
        args.workdir = f"/tmp/ninelives-bench/rows-{args.rows}"
    return args


def report_only(args: argparse.Namespace, argv: list[str]) -> int:
    out = Path(args.results)
    res = with_aliases(json.loads((out / "latest.json").read_text()))
    if res.get("rows") != Bench(args).rows:
        raise SystemExit(f"[bench] {out / 'latest.json'} is for {res.get('rows')} rows")
    res["profile"] = profile(Path(args.workdir), res.get("runs"))
    write_latest(out, res, args.rows)
    write_chart(res, out / "ratios.png")
    write_markdown(res, Path(args.markdown), res.get("argv", argv))
    print(f"[bench] rewrote {args.markdown} and {out}/ from {out / 'latest.json'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.report_only:
        return report_only(args, [a for a in argv if a != "--report-only"])
    load_start = os.getloadavg()
    bench = Bench(args)
    bench.work.mkdir(parents=True, exist_ok=True)
    cases = set(args.cases)
    if cases & set("bcdeghij"):
        # Their ratios are against the full run (b's kill is timed by it too); c and g run
        # on its lakehouse.
        cases.add("a")
    if "h" in cases:
        cases.add("b")
    print(
        f"[bench] {bench.rows:,} rows over {bench.days} dates, cases {''.join(sorted(cases))}, "
        f"workdir {bench.work}, load {fmt_load(load_start)}",
        flush=True,
    )
    started = time.monotonic()
    bench.seed()
    if "j" in cases:
        for days in bench.scaling:
            bench.seed(days)
    if args.seed_only:
        return 0
    # Timed runs one at a time; a, d and i back to back, so that the ratios against the
    # baselines compare runs under similar load.
    for repeat in range(args.repeat):
        suffix = f"_{repeat + 1}" if repeat else ""
        if "a" in cases:
            bench.case_a(suffix)
        if "d" in cases:
            bench.case_d(suffix)
        if "i" in cases:
            bench.case_i(suffix)
    if args.bare_nmbs:
        bench.case_d_nmbs()
    if args.parallel_sweep:  # right after a and d: the same load, comparable ratios
        bench.parallel_sweep()
    for letter, case in (("e", bench.case_e), ("c", bench.case_c), ("j", bench.case_j)):
        if letter in cases:
            case()
    # b's killed run alone too: it is killed at 90 % of a's wall time, which is 90 % of
    # a's work only without other runs beside it. Then its rerun, timed.
    if "b" in cases:
        bench.case_b_crash()
        bench.case_b_rerun()
    # Runs whose duration is no metric (the naive loop of f, the forced rerun of g, which
    # reports Delta metrics) run side by side unless --serial.
    untimed = [
        case for letter, case in (("f", bench.case_f), ("g", bench.case_g)) if letter in cases
    ]
    if args.serial or len(untimed) < 2:
        for case in untimed:
            case()
    else:
        bench.details["overlapped"] = True
        with ThreadPoolExecutor(max_workers=len(untimed)) as pool:
            for future in [pool.submit(case) for case in untimed]:
                future.result()
    inspected = bench.inspect() if cases & set("abdfij") else {}
    res = latest(bench, inspected, load_start)
    res["bench_seconds"] = round(time.monotonic() - started, 1)
    res["argv"] = argv
    out = Path(args.results)
    write_latest(out, res, bench.rows_requested)
    write_chart(res, out / "ratios.png")
    write_markdown(res, Path(args.markdown), argv)
    keys = ("rows", "full_s", *TARGETS, *(k for k in res if re.fullmatch(r"dates_\d+_vs_\d+", k)))
    summary = {k: res.get(k) for k in (*dict.fromkeys(keys), "naive_duplicates", "peak_rss_mb")}
    print("[bench] " + json.dumps(summary), flush=True)
    print(f"[bench] done in {res['bench_seconds']} s; wrote {out / 'latest.json'}, {args.markdown}")
    return 0
