"""The sweep plot: records/s (ours and the reference) and latency (avg, p99) per configuration, as a PNG."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence


@dataclass(frozen=True)
class PlotPoint:
    """One bar group: a configuration's label, records/s (ours and the reference, 0 = none) and latency in ms."""

    label: str
    records_per_s: float
    reference_records_per_s: float
    avg_ms: float
    p99_ms: float


def plot_sweep(ok: Sequence[PlotPoint], best: int | None, path: Path, title: str = "") -> Path:
    """Draw two panels (throughput above, latency below, one group per point) and save ``path``.

    ``best`` is the index in ``ok`` of the recommended point (highlighted), or None.
    """
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    labels = [r.label for r in ok]
    xs = list(range(len(ok)))
    width = 0.4
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(max(8.0, 0.7 * len(ok) + 3), 8), sharex=True)
    ours = [r.records_per_s for r in ok]
    refs = [r.reference_records_per_s for r in ok]
    bars = top.bar([x - width / 2 for x in xs], ours, width, label="ours (ProducerABC, kafka-python)",
                   color="#1f77b4")
    if any(refs):
        top.bar([x + width / 2 for x in xs], refs, width, label="kafka-producer-perf-test", color="#bbbbbb")
    top.set_ylabel("records/s")
    top.legend(loc="upper left", fontsize=8)
    top.grid(axis="y", alpha=0.3)
    bottom.bar([x - width / 2 for x in xs], [r.avg_ms for r in ok], width, label="avg", color="#2ca02c")
    bottom.bar([x + width / 2 for x in xs], [r.p99_ms for r in ok], width, label="p99", color="#d62728")
    bottom.set_ylabel("send-to-ack latency (ms)")
    bottom.legend(loc="upper left", fontsize=8)
    bottom.grid(axis="y", alpha=0.3)
    bottom.set_xticks(xs)
    bottom.set_xticklabels(labels, rotation=45, ha="right", fontsize=8)
    if best is not None:
        i = best
        bars[i].set_edgecolor("black")
        bars[i].set_linewidth(2)
        bottom.get_xticklabels()[i].set_fontweight("bold")
        top.annotate("recommended", (i - width / 2, ok[i].records_per_s), textcoords="offset points",
                     xytext=(0, 4), ha="center", fontsize=8, color="black", weight="bold")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
