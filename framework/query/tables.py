"""What every query engine shares: finding the Parquet tables of an output directory, and printing rows."""
from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

WAREHOUSE_DIR = "warehouse"


def table_dirs(output_dir: Path) -> dict[str, Path]:
    """``{view name: directory}`` for each table directory holding Parquet files under ``output_dir``."""
    tables = {}
    if output_dir.is_dir():
        for d in sorted(output_dir.iterdir()):
            if d.name == WAREHOUSE_DIR and not (d / "_pipeline_table.json").is_file():
                continue  # the default Iceberg warehouse: its tables are read through the catalog
            if d.is_dir() and not d.name.startswith(("_", ".")) and any(d.rglob("*.parquet")):
                tables[d.name.replace("-", "_").replace(".", "_")] = d
    return tables


def format_table(columns: list[str], rows: list[tuple[Any, ...]]) -> str:
    """A plain text table, numbers right-aligned and shown exactly (a double as its ``repr``, a decimal as its text)."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    numeric = [all(isinstance(row[i], (int, float, Decimal)) or row[i] is None for row in rows) and rows
               for i in range(len(columns))]

    def line(values: list[str]) -> str:
        cells = zip(values, widths, numeric, strict=True)
        return " | ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in cells).rstrip()

    sep = "-+-".join("-" * w for w in widths)
    return "\n".join([line(columns), sep] + [line(r) for r in cells])


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, float):
        return repr(value)  # the shortest text that reads back as the same double: nothing rounded away
    return str(value)  # Decimal's str is exact too
