from __future__ import annotations

from framework.commands.query import format_table, table_dirs


def test_format_table_aligns_numbers_right_and_text_left():
    text = format_table(["product", "mean"], [("a", 1.5), ("bbb", 10.25), ("c", None)])
    lines = text.splitlines()
    assert lines[0].startswith("product |")
    assert lines[2] == "a       |   1.5"
    assert lines[3] == "bbb     | 10.25"
    assert lines[4] == "c       |  NULL"


def test_table_dirs_only_lists_directories_with_parquet(tmp_path):
    (tmp_path / "metrics" / "batch_id=1").mkdir(parents=True)
    (tmp_path / "metrics" / "batch_id=1" / "part-0.parquet").write_bytes(b"x")
    (tmp_path / "empty").mkdir()
    (tmp_path / "_checkpoints").mkdir()
    (tmp_path / "_checkpoints" / "x.parquet").write_bytes(b"x")
    assert list(table_dirs(tmp_path)) == ["metrics"]


def test_format_table_shows_floats_and_decimals_in_full_precision():
    from decimal import Decimal

    text = format_table(["total", "amount", "tiny"], [(13254.023978, Decimal("12345678901234567890.12"), 1e-20)])
    row = text.splitlines()[2]
    assert [cell.strip() for cell in row.split("|")] == ["13254.023978", "12345678901234567890.12", "1e-20"]
    assert float(row.split("|")[0]) == 13254.023978
