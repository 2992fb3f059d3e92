"""The nightly benchmark: what a 30-date night costs with ninelives, and what recovery costs.

Run from the repository root (``make bench ROWS=1000000``)::

    python bench/bench.py --rows 1000000 [--cases abcdefgij] [--parallel-sweep] [--bare-nmbs]

The flags: :mod:`bench.cli` (``--help``); the cases and how they are measured:
:mod:`bench.cases`; what it writes: :mod:`bench.figures` (``bench/results/latest.json``),
:mod:`bench.report` (``bench/RESULTS.md``) and :mod:`bench.chart` (``ratios.png``).
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:
    # Run as a script, Python puts bench/ first on the path, where this file would stand
    # for the package of the same name: the repository root takes its place.
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
