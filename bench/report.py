"""The benchmark's results: figures next to their references, Markdown tables, the saved files.

A :class:`Figure` is one measured number with the reference it is compared
to (measured in the same run), their ratio and the target it is held against.
:class:`BenchReport` collects the figures of every section plus the sweep and
profile tables; :meth:`BenchReport.save` writes ``results.json`` and
``results.md`` into the output directory.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from bench.stats import ratio


@dataclass
class Figure:
    """One measured figure and its reference; ``met`` is None when there is no target."""

    section: str
    name: str
    unit: str
    ours: float | None
    reference: float | None = None
    reference_name: str = ""
    target: str = ""
    met: bool | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        return ratio(self.ours, self.reference)

    def to_dict(self) -> dict:
        return {**asdict(self), "ratio": self.ratio}


def ratio_at_least(ours: float | None, reference: float | None, factor: float) -> bool | None:
    """True when ``ours >= factor * reference``; None when either is missing."""
    r = ratio(ours, reference)
    return None if r is None else r >= factor


def value_below(value: float | None, limit: float) -> bool | None:
    """True when ``value < limit``; None when it is missing."""
    return None if value is None or not math.isfinite(value) else value < limit


def value_at_least(value: float | None, limit: float) -> bool | None:
    return None if value is None or not math.isfinite(value) else value >= limit


# ----------------------------------------------------------------------------- formatting
def fmt(value: float | None, unit: str = "") -> str:
    """A number for a table: thousands separators for rates, one decimal for milliseconds."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if unit in ("MB/s",) or abs(value) < 10 and unit not in ("records", "rows"):
        text = f"{value:,.2f}"
    elif unit == "ms" and abs(value) < 1000:
        text = f"{value:,.1f}"
    else:
        text = f"{value:,.0f}"
    return text


def fmt_ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def fmt_met(met: bool | None) -> str:
    return {True: "yes", False: "**no**", None: ""}[met]


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]], align: str = "") -> str:
    """A GitHub Markdown table; ``align`` holds ``l`` or ``r`` per column (default: left)."""
    align = align.ljust(len(headers), "l")
    sep = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def figures_table(figures: Sequence[Figure]) -> str:
    """The main table: one row per figure."""
    rows = []
    for f in figures:
        ref = fmt(f.reference, f.unit)
        if f.reference is not None and f.reference_name:
            ref = f"{ref} ({f.reference_name})"
        elif f.reference is None and f.reference_name:
            ref = f.reference_name
        rows.append([f.section, f"{f.name} [{f.unit}]", fmt(f.ours, f.unit), ref, fmt_ratio(f.ratio), f.target,
                     fmt_met(f.met)])
    return markdown_table(["Section", "Figure", "Ours", "Reference (same run)", "Ours/ref", "Target", "Met"],
                          rows, "llrrrll")


@dataclass
class Table:
    """A titled free-form table (sweep points, profile measurements) with notes below it."""

    title: str
    headers: list[str]
    rows: list[list[str]]
    align: str = ""
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        parts = [f"### {self.title}", "", markdown_table(self.headers, self.rows, self.align)]
        if self.notes:
            parts += [""] + [f"- {n}" for n in self.notes]
        return "\n".join(parts)


@dataclass
class BenchReport:
    """Everything one ``bench_cmd.py`` run measured."""

    started: str
    command: str
    environment: dict[str, Any] = field(default_factory=dict)
    figures: list[Figure] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    plots: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    elapsed_s: float = 0.0

    def markdown(self) -> str:
        env = self.environment
        lines = [f"## Benchmark results ({self.started})", "",
                 f"Command: `{self.command}`  ",
                 "Machine: " + ", ".join(f"{k} {v}" for k, v in env.items()) + f"; {self.elapsed_s:.0f} s in all.",
                 "", figures_table(self.figures) if self.figures else "(no figures)"]
        for table in self.tables:
            lines += ["", table.markdown()]
        for plot in self.plots:
            lines += ["", f"![sweep]({plot})"]
        for section, error in self.errors.items():
            lines += ["", f"**{section} failed:** {error}"]
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict:
        return {"started": self.started, "command": self.command, "environment": self.environment,
                "elapsed_s": self.elapsed_s, "figures": [f.to_dict() for f in self.figures],
                "tables": [asdict(t) for t in self.tables], "details": self.details, "plots": self.plots,
                "errors": self.errors}

    def save(self, out_dir: Path) -> tuple[Path, Path]:
        """Write ``results.json`` and ``results.md`` into ``out_dir``; return both paths."""
        out_dir.mkdir(parents=True, exist_ok=True)
        json_path, md_path = out_dir / "results.json", out_dir / "results.md"
        json_path.write_text(json.dumps(_finite(self.to_dict()), indent=2, default=_jsonable) + "\n")
        md_path.write_text(self.markdown())
        return json_path, md_path


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities replaced by None (JSON has neither)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return str(value)


Progress = Callable[[str], None]
