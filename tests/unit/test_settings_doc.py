"""docs/settings.md is generated from Settings: it must not drift from the code."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from framework.commands.admin import main as admin_main
from framework.settings import Settings, env_name, settings_markdown

PAGE = Path(__file__).resolve().parents[2] / "docs" / "settings.md"
REGENERATE = "python cmd/admin_cmd.py settings --markdown > docs/settings.md"


def test_settings_page_matches_the_code():
    assert PAGE.read_text(encoding="utf-8") == settings_markdown(), (
        f"docs/settings.md differs from the settings in framework/settings.py; regenerate it with "
        f"`{REGENERATE}` and commit the result.")


def test_every_setting_has_a_row_with_its_default():
    text = settings_markdown()
    rows = [line for line in text.splitlines() if line.startswith("| `PIPELINE_")]
    assert [row.split("`")[1] for row in rows] == [env_name(f.name) for f in dataclasses.fields(Settings)]
    assert "| `PIPELINE_BROKER_PORT` | `9092` | client port of the local broker |" in rows
    assert "| `PIPELINE_KAFKA_BOOTSTRAP_SERVERS` | (empty) |" in text
    assert "| `PIPELINE_CHECKPOINT_DIR` | (empty) |" in text
    assert "| `PIPELINE_SPARK_UI` | `false` |" in text


def test_the_page_does_not_depend_on_the_machine(monkeypatch):
    # The cache directory's default is under the home directory: shown as ~, whoever generates the page.
    assert "| `PIPELINE_CACHE_DIR` | `~/.cache/pipeline-framework` |" in settings_markdown()
    monkeypatch.setenv("PIPELINE_LOG_LEVEL", "DEBUG")
    assert "| `PIPELINE_LOG_LEVEL` | `INFO` |" in settings_markdown()


def test_the_admin_command_prints_the_page(capsys):
    assert admin_main(["settings", "--markdown"]) == 0
    assert capsys.readouterr().out == settings_markdown()
