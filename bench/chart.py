"""ratios.png: each ratio of latest.json against its target, one bar each.

It needs matplotlib, the ``bench`` extra (``pip install -e '.[bench]'``); without it the
benchmark says so and writes everything else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.figures import TARGETS


def write_chart(res: dict[str, Any], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("[bench] matplotlib not installed: no chart (pip install matplotlib)", flush=True)
        return
    metrics = [m for m, (op, _, _) in TARGETS.items() if op == "<="]
    fig, axes = plt.subplots(1, len(metrics), figsize=(3 * len(metrics), 3.6))
    for ax, metric in zip(axes, metrics, strict=True):
        value = res.get(metric)
        target = TARGETS[metric][1]
        ok = value is not None and value <= target
        ax.bar([0], [value or 0], color="tab:green" if ok else "tab:red", width=0.6)
        ax.axhline(target, color="black", linestyle="--", label=f"target ≤ {target}")
        ax.set_title(metric, fontsize=10)
        ax.set_xticks([])
        top = max(value or 0, target) * 1.3
        ax.set_ylim(0, top)
        if value is not None:
            ax.text(0, value, f"{value:.3f}", ha="center", va="bottom")
        ax.legend(fontsize=8, loc="upper left")
    fig.suptitle(
        f"ninelives bench, {res['rows']:,} rows, {res['days']} dates ({res['finished_at']})"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
