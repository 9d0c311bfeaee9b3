"""The sweep plot: records/s (ours and the reference) and latency (avg, p99) per configuration, as a PNG."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from bench.sweep import Recommendation, SweepResult


def plot_sweep(results: Sequence["SweepResult"], best: "Recommendation | None", path: Path, title: str = "") -> Path:
    """Draw two panels (throughput above, latency below, one group per point) and save ``path``."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    ok = [r for r in results if r.ok]
    labels = [r.point.label for r in ok]
    xs = list(range(len(ok)))
    width = 0.4
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(max(8.0, 0.7 * len(ok) + 3), 8), sharex=True)
    ours = [r.records_per_s for r in ok]
    refs = [r.reference.records_per_s if r.reference else 0.0 for r in ok]
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
    if best is not None and best.result in ok:
        i = ok.index(best.result)
        bars[i].set_edgecolor("black")
        bars[i].set_linewidth(2)
        bottom.get_xticklabels()[i].set_fontweight("bold")
        top.annotate("recommended", (i - width / 2, best.result.records_per_s), textcoords="offset points",
                     xytext=(0, 4), ha="center", fontsize=8, color="black", weight="bold")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
