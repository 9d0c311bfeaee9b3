"""Streaming aggregates kept exact in a database table: :class:`Aggregation` and its measures.

A consumer declares what to keep, the JDBC sink keeps the table equal to that
aggregate over every record consumed so far::

    from framework.sinks.aggregates import Aggregation, count, max_, sum_

    units_per_zone = Aggregation("units_per_zone", group_by=["zone"], where="kind = 'unit'",
                                 measures={"units": count(), "last_seen": max_("time")})
    units_per_day = Aggregation("units_per_day", group_by={"day": "to_date(time)"},
                                where="kind = 'unit'", measures={"units": count()})

``group_by`` is a list of column names or a mapping ``{column: Spark SQL
expression}``; ``where`` (optional) a Spark SQL condition; each measure is
:func:`count` (rows, or non-null values of an expression), :func:`sum_`,
:func:`min_` or :func:`max_` of a Spark SQL expression.

How it stays exact: each micro-batch's *partial* aggregate (Spark ``groupBy``,
one row per group) is merged into the table by the group key in the same
database transaction as the batch's ledger row (see :mod:`framework.sinks.jdbc`)::

    count  c = t.c + excluded.c
    sum    s = COALESCE(t.s + excluded.s, t.s, excluded.s)      (NULL = no value yet)
    min    m = LEAST(t.m, excluded.m)                            (LEAST/GREATEST skip NULLs)
    max    m = GREATEST(t.m, excluded.m)

A replayed batch finds its ledger row and is skipped, so no partial aggregate
is merged twice. Only these four merge exactly by key; an average is kept as a
sum and a count (divide when reading), a distinct count cannot be kept this way.

The table's group columns carry ``UNIQUE NULLS NOT DISTINCT`` (PostgreSQL 15
or newer), so a NULL group (e.g. a record without a zone) is one group too.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from framework.errors import SinkSchemaError
from framework.sinks.jdbc_sql import Column, ident

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

FUNCTIONS = ("count", "sum", "min", "max")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Measure:
    """One aggregate column: ``function`` (count, sum, min, max) of a Spark SQL expression (None: rows)."""

    function: str
    expression: str | None = None

    def __post_init__(self) -> None:
        if self.function not in FUNCTIONS:
            raise SinkSchemaError(f"Aggregate function {self.function!r} cannot be merged by key; use one of "
                                  f"{', '.join(FUNCTIONS)} (an average is a sum and a count).")
        if self.expression is None and self.function != "count":
            raise SinkSchemaError(f"{self.function}() needs an expression, e.g. {self.function}_(\"price\").")

    def column(self, name: str) -> Any:
        """The Spark aggregate column of this measure, aliased ``name``."""
        from pyspark.sql import functions as F

        expression = self.expression
        if self.function == "count":
            return F.count(F.lit(1) if expression is None else F.expr(expression)).alias(name)
        assert expression is not None  # __post_init__ requires one for every function but count()
        return getattr(F, self.function)(F.expr(expression)).alias(name)

    def merge(self, name: str, table_alias: str = "t") -> str:
        """SQL of ``name = <merged value>`` for ``ON CONFLICT DO UPDATE``."""
        col, old, new = ident(name), f"{table_alias}.{ident(name)}", f"excluded.{ident(name)}"
        if self.function == "count":
            return f"{col} = {old} + {new}"
        if self.function == "sum":
            return f"{col} = COALESCE({old} + {new}, {old}, {new})"
        return f"{col} = {'LEAST' if self.function == 'min' else 'GREATEST'}({old}, {new})"


def count(expression: str | None = None) -> Measure:
    """Rows of the group (or non-null values of ``expression``); merged by addition."""
    return Measure("count", expression)


def sum_(expression: str) -> Measure:
    """Sum of ``expression``; merged by addition (NULL until a value is seen)."""
    return Measure("sum", expression)


def min_(expression: str) -> Measure:
    """Smallest value of ``expression``; merged with LEAST."""
    return Measure("min", expression)


def max_(expression: str) -> Measure:
    """Largest value of ``expression``; merged with GREATEST."""
    return Measure("max", expression)


@dataclass(frozen=True)
class Aggregation:
    """A table kept equal to ``SELECT group_by, measures FROM <all rows> [WHERE where] GROUP BY group_by``.

    Raises :class:`SinkSchemaError` (one sentence) when declared wrongly: no
    group column or measure, a name that is not a plain identifier, a name used
    twice, a measure that is not a :class:`Measure`.
    """

    table: str
    group_by: Sequence[str] | Mapping[str, str]
    measures: Mapping[str, Measure]
    where: str | None = None
    groups: dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        groups = dict(self.group_by) if isinstance(self.group_by, Mapping) else {c: c for c in self.group_by}
        if isinstance(self.group_by, str):
            raise SinkSchemaError(f"Aggregation {self.table!r}: group_by={self.group_by!r} is a string; give a list "
                                  f"of columns, e.g. group_by=[{self.group_by!r}].")
        if not groups:
            raise SinkSchemaError(f"Aggregation {self.table!r} has no group_by column; name at least one, "
                                  "e.g. group_by=['zone'].")
        if not self.measures:
            raise SinkSchemaError(f"Aggregation {self.table!r} has no measure; add one, "
                                  "e.g. measures={'rows': count()}.")
        for name in [self.table, *groups, *self.measures]:
            if not isinstance(name, str) or not _NAME.match(name):
                raise SinkSchemaError(f"Aggregation {self.table!r}: {name!r} is not a plain name; use letters, "
                                      "digits and underscores, not starting with a digit.")
        clash = set(groups) & set(self.measures)
        if clash:
            raise SinkSchemaError(f"Aggregation {self.table!r} uses {sorted(clash)[0]!r} both as a group column "
                                  "and as a measure; rename one.")
        for name, measure in self.measures.items():
            if not isinstance(measure, Measure):
                raise SinkSchemaError(f"Aggregation {self.table!r}: measure {name!r} is {measure!r}; use count(), "
                                      "sum_(expr), min_(expr) or max_(expr) from framework.sinks.aggregates.")
        object.__setattr__(self, "groups", groups)

    @property
    def key(self) -> list[str]:
        return list(self.groups)

    def columns(self) -> list[str]:
        return [*self.groups, *self.measures]

    def partial(self, df: "DataFrame") -> "DataFrame":
        """The batch's partial aggregate: one row per group, columns :meth:`columns`."""
        from pyspark.sql import functions as F

        if self.where:
            df = df.where(F.expr(self.where))
        keys = [F.expr(expr).alias(name) for name, expr in self.groups.items()]
        return df.groupBy(*keys).agg(*[m.column(n) for n, m in self.measures.items()])

    def check_input(self, df: "DataFrame") -> "DataFrame":
        """The partial aggregate's plan, analysed (raises :class:`SinkSchemaError` naming a bad expression)."""
        try:
            partial = self.partial(df)
            _ = partial.schema  # analysis resolves every column and expression
        except Exception as exc:  # noqa: BLE001 - Spark's AnalysisException as one sentence
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise SinkSchemaError(f"Aggregation {self.table!r} does not fit the consumer's rows ({first}); "
                                  "fix its group_by, where or measures.") from None
        return partial

    def create_table(self, columns: Sequence[Column]) -> str:
        """DDL of the aggregate table: the group columns (unique, NULLs equal) and the measures."""
        body = [c.ddl() for c in columns]
        keys = ", ".join(ident(k) for k in self.key)
        body.append(f"CONSTRAINT {ident(self.table[:50] + '_group')} UNIQUE NULLS NOT DISTINCT ({keys})")
        return f"CREATE TABLE IF NOT EXISTS {ident(self.table)} ({', '.join(body)})"

    def merge_sql(self) -> str:
        """``INSERT ... VALUES (%s, ...) ON CONFLICT (group) DO UPDATE SET <merges>`` of one partial row."""
        cols = self.columns()
        names = ", ".join(ident(c) for c in cols)
        marks = ", ".join(["%s"] * len(cols))
        merges = ", ".join(m.merge(n) for n, m in self.measures.items())
        keys = ", ".join(ident(k) for k in self.key)
        return (f"INSERT INTO {ident(self.table)} AS t ({names}) VALUES ({marks}) "
                f"ON CONFLICT ({keys}) DO UPDATE SET {merges}")
