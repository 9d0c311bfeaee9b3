"""The production report: which machine parameters drive each product's output.

For each product, over the periods that product ran (a work-order record covers
``[time, next record's time)``), the mean of every machine parameter in the
period is correlated (Pearson) with the period's production. The three
parameters with the strongest positive correlation are reported, with a chart
per product (PNG) and a Markdown page::

    output/report/report.md
    output/report/product_<id>.png
    output/report/report.json      (the same figures, for programs)

All heavy lifting is Spark SQL over the Parquet tables (a range join and
``corr``), so it scales with the tables, not with the driver's memory.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from framework.log import get_logger

log = get_logger("report")

TOP = 3

# Work-order periods: each record lasts until the next record (any product).
PERIODS_SQL = """
SELECT product, production, time AS start,
       LEAD(time) OVER (ORDER BY time) AS end
FROM workorder
"""

CORRELATION_SQL = """
WITH periods AS ({periods}),
period_means AS (
  SELECT p.product, p.start, p.production, m.id, AVG(m.val) AS mean_val
  FROM periods p JOIN metrics m
    ON m.time >= p.start AND m.time < p.end
  WHERE p.end IS NOT NULL
  GROUP BY p.product, p.start, p.production, m.id
)
SELECT product, id, CORR(mean_val, production) AS r, COUNT(*) AS periods
FROM period_means
GROUP BY product, id
"""


@dataclass
class ProductFindings:
    product: int
    periods: int
    correlations: dict[int, float] = field(default_factory=dict)

    @property
    def top(self) -> list[tuple[int, float]]:
        ranked = sorted(((pid, r) for pid, r in self.correlations.items() if r == r),  # drop NaN
                        key=lambda item: item[1], reverse=True)
        return ranked[:TOP]


def analyse(spark: Any) -> list[ProductFindings]:
    """Correlations per product and parameter from the registered ``metrics`` and ``workorder`` views."""
    rows = spark.sql(CORRELATION_SQL.format(periods=PERIODS_SQL)).collect()
    findings: dict[int, ProductFindings] = {}
    for row in rows:
        f = findings.setdefault(int(row["product"]), ProductFindings(int(row["product"]), 0))
        f.periods = max(f.periods, int(row["periods"]))
        f.correlations[int(row["id"])] = float(row["r"]) if row["r"] is not None else float("nan")
    return [findings[k] for k in sorted(findings)]


def write_report(findings: list[ProductFindings], out_dir: Path) -> Path:
    """Write report.md, report.json and one PNG chart per product; return report.md's path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    lines = ["# Production report", "",
             "For each product: the machine parameters whose mean value over a work-order period "
             "correlates most with the production of that period (Pearson r, over the periods the "
             "product ran).", "",
             "| product | periods | top parameters (r) |", "|---:|---:|---|"]
    for f in findings:
        top = ", ".join(f"{pid} ({r:.2f})" for pid, r in f.top)
        lines.append(f"| {f.product} | {f.periods} | {top} |")
    lines.append("")
    for f in findings:
        chart = out_dir / f"product_{f.product}.png"
        ids = sorted(f.correlations)
        values = [f.correlations[i] for i in ids]
        top_ids = {pid for pid, _ in f.top}
        fig, ax = plt.subplots(figsize=(9, 3.2))
        ax.bar([str(i) for i in ids], values, color=["#d62728" if i in top_ids else "#9aa5b1" for i in ids])
        ax.axhline(0, color="black", linewidth=0.6)
        ax.set_ylim(-1, 1)
        ax.set_xlabel("machine parameter id")
        ax.set_ylabel("correlation with production")
        ax.set_title(f"Product {f.product}: drivers of production (top {TOP} in red, {f.periods} periods)")
        fig.tight_layout()
        fig.savefig(chart, dpi=90)
        plt.close(fig)
        lines += [f"## Product {f.product}", "",
                  f"Top parameters: {', '.join(str(pid) for pid, _ in f.top)}", "",
                  f"![product {f.product}]({chart.name})", ""]
    report = out_dir / "report.md"
    report.write_text("\n".join(lines))
    (out_dir / "report.json").write_text(json.dumps(
        {str(f.product): {"periods": f.periods, "top": [pid for pid, _ in f.top],
                          "correlations": {str(k): v for k, v in sorted(f.correlations.items())}}
         for f in findings}, indent=2))
    log.info("Wrote the production report {} ({} products)", report, len(findings))
    return report


def build_report(spark: Any, output_dir: Path) -> tuple[Path, list[ProductFindings]]:
    """Register the ``metrics`` and ``workorder`` tables of ``output_dir``, analyse, write the report."""
    from framework.commands.query import register_tables

    tables = register_tables(spark, output_dir)
    missing = {"metrics", "workorder"} - set(tables)
    if missing:
        from framework.errors import FrameworkError
        raise FrameworkError(f"The report needs the tables {', '.join(sorted(missing))} under {output_dir}; "
                             "run the producers and the parquet consumer first.")
    findings = analyse(spark)
    return write_report(findings, output_dir / "report"), findings
