"""Nothing half-written sits where a reader of a table directory looks (staging lives outside the table)."""
from __future__ import annotations

import pyarrow.dataset as ds
import pytest

from framework.sinks import STAGING, BatchPublisher
from framework.sinks import publish as publish_module
from framework.sinks.publish import prepare_directory, staging_directory

duckdb = pytest.importorskip("duckdb")


def _duckdb_counts(table):
    return [duckdb.connect().execute(f"SELECT count(*) FROM read_parquet('{pattern}')").fetchall()[0][0]
            for pattern in (str(table), f"{table}/**/*.parquet", f"{table}/*.parquet")]


def test_staging_directory_is_a_sibling_of_the_table(tmp_path):
    assert staging_directory(tmp_path / "out" / "metrics") == tmp_path / "out" / STAGING / "metrics"
    assert BatchPublisher(tmp_path / "out" / "metrics_quarantine").staging == tmp_path / "out" / STAGING / \
        "metrics_quarantine"


def test_a_crash_mid_publish_leaves_nothing_that_duckdb_or_pyarrow_read(spark, tmp_path, monkeypatch):
    table = tmp_path / "out" / "metrics"
    prepare_directory(table, "unit", "metrics", fresh_checkpoint=True)
    publisher = BatchPublisher(table)
    df = spark.createDataFrame([(i, i / 2) for i in range(10)], "id INT, val DOUBLE")
    publisher.publish(df, 0)

    # batch 1 is killed between writing its staged file and the rename: its staging stays behind, torn
    def killed(*args):
        raise KeyboardInterrupt("killed before the rename")

    monkeypatch.setattr(publish_module.os, "replace", killed)
    monkeypatch.setattr(publish_module.shutil, "rmtree", lambda *a, **k: None)
    with pytest.raises(KeyboardInterrupt):
        publisher.publish(df.limit(3), 1)
    monkeypatch.undo()
    staged = list(publisher.staging.rglob("*.parquet"))
    assert staged, "the killed attempt left its staged file"
    for path in staged:
        path.write_bytes(path.read_bytes()[:40])  # torn: no footer, no magic bytes at the end
    assert not any(p for p in table.rglob("*") if p.name != "_pipeline_table.json" and not p.name.startswith("batch-"))

    assert _duckdb_counts(table) == [10, 10, 10]
    assert ds.dataset(str(table), format="parquet").count_rows() == 10
    assert spark.read.parquet(str(table)).count() == 10

    prepare_directory(table, "unit", "metrics", fresh_checkpoint=False)  # a restart removes the leftovers
    assert not publisher.staging.exists() and not (tmp_path / "out" / STAGING).exists()


def test_a_torn_file_inside_the_table_is_what_breaks_duckdb(tmp_path):
    """The failure the move prevents: DuckDB descends into ``<table>/_staging``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = tmp_path / "metrics"
    (table / STAGING).mkdir(parents=True)
    pq.write_table(pa.table({"id": [1, 2]}), table / "batch-000000000000.parquet")
    assert _duckdb_counts(table) == [2, 2, 2]
    (table / STAGING / "part-00000.parquet").write_bytes(b"PAR1 torn")
    with pytest.raises(duckdb.Error):
        _duckdb_counts(table)
    prepare_directory(table, "unit", "metrics", fresh_checkpoint=False)  # the old location is cleaned too
    assert _duckdb_counts(table) == [2, 2, 2]
