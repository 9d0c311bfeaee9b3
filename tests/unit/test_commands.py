"""The `pipeline` console command: one table of subcommands, the same main() as the cmd/ scripts."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from framework.commands import SUBCOMMAND_HELP, SUBCOMMANDS
from framework.commands.pipeline import SubcommandError, load, main

ROOT = Path(__file__).resolve().parents[2]
PIPELINE = Path(sys.executable).parent / "pipeline"
EXPECTED = ["run", "produce", "consume", "query", "admin", "broker", "api", "game-api", "game-load", "bench"]


def _run(*argv: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=120, cwd=cwd)


def test_every_subcommand_has_a_main_and_a_help_line():
    assert list(SUBCOMMANDS)[:len(EXPECTED)] == EXPECTED
    assert set(SUBCOMMAND_HELP) <= set(SUBCOMMANDS)
    for name, target in SUBCOMMANDS.items():
        module, sep, attr = target.partition(":")
        assert sep and module and attr == "main", f"{name}: {target!r} is not 'module.path:main'"


def test_pipeline_help_lists_every_subcommand():
    assert PIPELINE.exists(), "the console script is installed by `pip install -e .` (make install)"
    done = _run(str(PIPELINE), "--help")
    assert done.returncode == 0, done.stderr
    listed = {}
    section = done.stdout.split("subcommands:\n", 1)[1].split("\n\n", 1)[0]
    for line in section.splitlines():
        name, _, text = line.strip().partition(" ")
        listed[name] = text.strip()
    assert list(listed) == list(SUBCOMMANDS)
    for name in SUBCOMMANDS:
        assert listed[name], f"{name} has no help line"
        assert listed[name] == SUBCOMMAND_HELP.get(name, listed[name])


def test_pipeline_produce_list_equals_the_cmd_script(tmp_path):
    via_pipeline = _run(str(PIPELINE), "produce", "--list", cwd=tmp_path)  # not from the checkout: installed
    via_script = _run(sys.executable, str(ROOT / "cmd" / "produce_cmd.py"), "--list")
    assert via_pipeline.returncode == via_script.returncode == 0, via_pipeline.stderr + via_script.stderr
    assert via_pipeline.stdout == via_script.stdout
    assert "metrics" in via_pipeline.stdout and "workorder" in via_pipeline.stdout


@pytest.mark.parametrize("name", list(SUBCOMMANDS))
def test_each_subcommand_answers_help_under_its_pipeline_name(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([name, "--help"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: pipeline {name} ")


def test_unknown_subcommand_is_one_sentence_with_a_suggestion(capsys):
    assert main(["produse"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: Unknown subcommand 'produse'; did you mean 'produce'?")
    assert err.count("\n") == 0
    with pytest.raises(SubcommandError, match="Unknown subcommand 'nope'; subcommands: run, produce"):
        load("nope")


def test_no_arguments_prints_the_usage_and_fails(capsys):
    assert main([]) == 2
    assert "subcommands:" in capsys.readouterr().out


def test_bench_outside_a_checkout_fails_in_one_sentence(tmp_path, monkeypatch):
    import framework.commands.pipeline as pipeline

    monkeypatch.setattr(pipeline, "__file__", str(tmp_path / "site" / "framework" / "commands" / "pipeline.py"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if Path(p or ".").resolve() != ROOT])
    monkeypatch.delitem(sys.modules, "bench", raising=False)
    monkeypatch.delitem(sys.modules, "bench.command", raising=False)
    with pytest.raises(SubcommandError, match=r"^The benchmarks live in bench/ of a source checkout.*clone of the "
                                              r"project\.$"):
        load("bench")


def test_cmd_scripts_are_thin_shims_of_the_same_main():
    """Each cmd/<x>_cmd.py imports `main` from the module its subcommand names, and edits no sys.path."""
    mains = {target.partition(":")[0] for target in SUBCOMMANDS.values()}
    for script in sorted((ROOT / "cmd").glob("*_cmd.py")):
        text = script.read_text()
        assert "sys.path" not in text, f"{script.name} edits sys.path"
        imported = {node.module for node in ast.walk(ast.parse(text))
                    if isinstance(node, ast.ImportFrom) and any(a.name == "main" for a in node.names)}
        assert imported and imported <= mains | {"framework.commands.pipeline"}, (script.name, imported)
        assert len([n for n in ast.parse(text).body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]) == 0, \
            f"{script.name} holds logic; move it into the library or apps/"
