"""The default query engine and the statement shell, without services (Parquet tables, no catalog)."""
from __future__ import annotations

import io
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from framework.commands.query import main
from framework.errors import PostgresError
from framework.query.duck import DuckEngine, QueryError
from framework.query.shell import interactive, split_statements
from framework.settings import Settings


def test_statements_split_on_semicolons_outside_quotes_and_comments():
    text = "select 1; select 'a;b' as x;\n-- a comment; not a statement\nselect \"c;d\" from t;;  "
    assert split_statements(text) == ["select 1", "select 'a;b' as x", 'select "c;d" from t']


@pytest.fixture
def tables(tmp_path):
    out = tmp_path / "output"
    (out / "metrics").mkdir(parents=True)
    pq.write_table(pa.table({"id": [1, 2, 2], "val": [1.0, 2.0, 4.0]}), out / "metrics" / "batch-000000000000.parquet")
    # a later batch with an added column: readers see it, null in the older file
    pq.write_table(pa.table({"id": [3], "val": [8.0], "extra": ["x"]}), out / "metrics" / "batch-000000000001.parquet")
    (out / "warehouse" / "pipeline" / "t" / "data").mkdir(parents=True)  # the Iceberg warehouse is not a table
    pq.write_table(pa.table({"a": [1]}), out / "warehouse" / "pipeline" / "t" / "data" / "f.parquet")
    return Settings.from_env({}, output_dir=out, state_dir=tmp_path / "state")


def test_duckdb_engine_reads_parquet_tables_with_added_columns(tables):
    engine = DuckEngine(tables)
    assert set(engine.tables()) == {"metrics", "parquet.metrics"}
    columns, rows = engine.execute(
        "SELECT id, avg(val) AS mean, count(extra) AS n FROM metrics GROUP BY id ORDER BY id")
    assert columns == ["id", "mean", "n"] and rows == [(1, 1.0, 0), (2, 3.0, 0), (3, 8.0, 1)]
    t0 = time.perf_counter()
    engine.execute("SELECT count(*) FROM metrics")
    assert time.perf_counter() - t0 < 5  # in-process; the 0.5 s target is measured in bench/


def test_missing_table_lists_the_tables(tables):
    with pytest.raises(QueryError, match=r"purchases.*; tables: metrics, parquet.metrics\.$"):
        DuckEngine(tables).execute("SELECT * FROM purchases")


def test_catalog_database_that_is_down_is_one_sentence_quickly(tables):
    from framework.local.kafka_broker import free_port

    down = tables.replace(postgres_url=f"postgresql://u:p@127.0.0.1:{free_port()}/db")
    t0 = time.perf_counter()
    with pytest.raises(PostgresError, match=r"^PostgreSQL at postgresql://u@127.0.0.1:\d+/db cannot be reached"):
        DuckEngine(down)
    assert time.perf_counter() - t0 < 30


def test_interactive_prompt_runs_several_statements_and_goes_on_after_an_error(tables):
    lines = iter(["select count(*) as n", "from metrics;", "select * from nope;", ".tables",
                  "select 1 as a; select 2 as b;"])

    def read(prompt):
        try:
            return next(lines)
        except StopIteration:
            raise EOFError from None
    out = io.StringIO()
    assert interactive(DuckEngine(tables), tables.state_dir / "hist", "table", 100, read=read, out=out) == 0
    text = out.getvalue()
    assert "n\n-\n4\n(1 row" in text
    assert "error: Catalog Error" in text and "tables: metrics, parquet.metrics." in text
    assert "parquet.metrics\tparquet " in text
    assert "a\n-\n1\n" in text and "b\n-\n2\n" in text


def test_query_command_runs_a_file_of_statements(tables, tmp_path, monkeypatch, capsys):
    sql = tmp_path / "q.sql"
    sql.write_text("SELECT count(*) AS n FROM metrics;\nSELECT max(id) AS top FROM parquet.metrics;\n")
    monkeypatch.setenv("PIPELINE_OUTPUT_DIR", str(tables.output_dir))
    monkeypatch.setenv("PIPELINE_STATE_DIR", str(tables.state_dir))
    assert main(["-f", str(sql), "--format", "csv"]) == 0
    assert capsys.readouterr().out.replace("\r", "") == "n\n4\ntop\n3\n"
