"""The README stays short and true: its size, its commands, its links and its example.

No broker, no network: the commands are checked by name and with ``--help`` only
(which must not connect to anything), the example runs against in-memory fakes
and a local Spark.
"""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
MAX_BYTES = 12_288

# The subcommands of the `pipeline` console command. framework.commands.SUBCOMMANDS is the
# source of truth once it exists; until then, this fixed list (each is `python cmd/<sub>_cmd.py`,
# with '-' written '_').
FALLBACK_SUBCOMMANDS = ("run", "produce", "consume", "query", "admin", "broker", "api", "game-api",
                        "game-load", "bench")

FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
SPAN = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"\]\(([^)\s]+)\)")


def subcommands() -> tuple[str, ...]:
    try:
        from framework.commands import SUBCOMMANDS  # type: ignore[attr-defined]
    except ImportError:
        return FALLBACK_SUBCOMMANDS
    # names, a {name: ...} mapping or (name, ...) pairs
    return tuple(name if isinstance(name, str) else name[0] for name in SUBCOMMANDS)


def readme() -> str:
    return README.read_text(encoding="utf-8")


def code_lines(text: str) -> list[str]:
    """Every line of a fenced block and every inline code span, as command candidates."""
    blocks = FENCE.findall(text)
    prose = FENCE.sub("", text)
    lines = [line for block in blocks for line in block.splitlines()]
    return lines + [span.strip() for span in SPAN.findall(prose)]


def commands(text: str, program: str) -> list[list[str]]:
    """Invocations of ``program`` (``pipeline``, ``make``): a code line or span that starts with it,
    after an optional ``$ `` prompt, or a comment (``# pipeline produce ...``) that does."""
    found = []
    for line in code_lines(text):
        for part in [line, *line.split("# ")[1:]]:
            words = part.strip().removeprefix("$ ").split("#")[0].split()
            if len(words) >= 2 and words[0] == program:
                found.append(words)
    return found


def command_table(text: str) -> list[tuple[str, str]]:
    """(subcommand, script) of each row of the README's command table."""
    rows = re.findall(r"^\| `pipeline ([\w-]+)` \| `python (cmd/[\w]+\.py)` \|", text, re.MULTILINE)
    assert rows, "the README has no command table with rows like | `pipeline run` | `python cmd/run_cmd.py` |"
    return rows


def makefile_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    return set(re.findall(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", text, re.MULTILINE))


# --------------------------------------------------------------------------- size and names
def test_readme_fits_in_12_kib():
    size = len(README.read_bytes())
    assert size <= MAX_BYTES, (f"README.md is {size} bytes, more than {MAX_BYTES}; move the details to a page "
                               "under docs/ and link it from the README.")


PAGES = [README, *sorted((ROOT / "docs").rglob("*.md"))]


def _page_id(page: Path) -> str:
    return str(page.relative_to(ROOT))


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_every_script_named_exists(page):
    scripts = set(re.findall(r"\bcmd/[\w.-]+\.py\b", page.read_text(encoding="utf-8")))
    missing = sorted(s for s in scripts if not (ROOT / s).is_file())
    assert not missing, f"{_page_id(page)} names scripts that do not exist: {missing}"


def test_every_make_target_named_exists():
    named = {words[1] for words in commands(readme(), "make")}
    assert {"run", "test"} <= named, "the README must show `make run` and `make test`"
    unknown = sorted(named - makefile_targets())
    assert not unknown, f"the README names make targets the Makefile does not have: {unknown}"


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_every_pipeline_subcommand_named_exists(page):
    named = {words[1] for words in commands(page.read_text(encoding="utf-8"), "pipeline")}
    unknown = sorted(named - set(subcommands()))
    assert not unknown, (f"{_page_id(page)} names `pipeline` subcommands that do not exist: {unknown}; "
                         f"known: {', '.join(subcommands())}")


def test_the_readme_shows_the_pipeline_command():
    assert {words[1] for words in commands(readme(), "pipeline")} >= {"produce", "consume"}


def test_the_command_table_shows_both_forms_of_every_subcommand():
    rows = command_table(readme())
    for sub, script in rows:
        assert script == f"cmd/{sub.replace('-', '_')}_cmd.py", f"`pipeline {sub}` is not `python {script}`"
    assert sorted(sub for sub, _ in rows) == sorted(subcommands())


def test_commands_are_recognised_only_where_they_are_commands():
    text = ("```bash\nmake run     # runs the whole pipeline once\n$ pipeline produce metrics\n```\n"
            "The `pipeline query` command, and the pipeline runs.\n"
            "```python\nname = \"orders\"   # pipeline consume orders --module m\n```\n")
    assert commands(text, "pipeline") == [["pipeline", "produce", "metrics"],
                                          ["pipeline", "consume", "orders", "--module", "m"], ["pipeline", "query"]]
    assert commands(text, "make") == [["make", "run"]]


# --------------------------------------------------------------------------- links
def _links(page: Path) -> list[str]:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    return [link for link in LINK.findall(text) if not re.match(r"^[a-z]+:", link)]


def _anchors(page: Path) -> set[str]:
    """GitHub's heading anchors of a Markdown page."""
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    headings = re.findall(r"^#+ (.+)$", text, re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_every_relative_link_resolves(page):
    broken = []
    for link in _links(page):
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        if not target.exists():
            broken.append(f"{link} (no file {target.relative_to(ROOT) if ROOT in target.parents else target})")
        elif anchor and target.suffix == ".md" and anchor not in _anchors(target):
            broken.append(f"{link} (no heading #{anchor} in {target.name})")
    assert not broken, f"{page.relative_to(ROOT)} has broken links: {broken}"


def test_the_readme_links_every_docs_page():
    linked = {(ROOT / link.partition("#")[0]).resolve() for link in _links(README)}
    pages = {p.resolve() for p in (ROOT / "docs").glob("*.md")}
    assert pages - linked == set(), f"pages under docs/ the README does not link: {sorted(pages - linked)}"


# --------------------------------------------------------------------------- --help, without I/O
@pytest.mark.parametrize("script", [script for _, script in command_table(readme())])
def test_help_of_every_command_runs_without_connecting(script, tmp_path):
    """``--help`` prints the usage and exits 0, starting nothing: no broker state, no download, no output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
    env.update(PIPELINE_STATE_DIR=str(tmp_path / "state"), PIPELINE_CACHE_DIR=str(tmp_path / "cache"),
               PIPELINE_OUTPUT_DIR=str(tmp_path / "output"), PIPELINE_DATA_DIR=str(tmp_path / "data"),
               PIPELINE_BROKER_PORT="1", PIPELINE_BROKER_CONTROLLER_PORT="2", PIPELINE_API_PORT="3",
               PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    proc = subprocess.run([sys.executable, script, "--help"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, f"`python {script} --help` exited {proc.returncode}: {proc.stderr[-2000:]}"
    assert proc.stdout.startswith("usage:"), proc.stdout[:500]
    assert sorted(p.name for p in tmp_path.iterdir()) == [], f"`python {script} --help` created files"


# --------------------------------------------------------------------------- the example
@pytest.fixture
def readme_example(tmp_path):
    """The README's Python example, imported as a module; its classes unregistered afterwards."""
    from framework.consumer import CONSUMERS
    from framework.producer import PRODUCERS

    blocks = re.findall(r"^```python\n(.*?)^```", readme(), re.MULTILINE | re.DOTALL)
    assert blocks, "the README has no ```python example"
    lines = blocks[0].count("\n")
    assert lines <= 25, f"the README's example is {lines} lines; keep it near 20"
    path = tmp_path / "readme_example.py"
    path.write_text(blocks[0], encoding="utf-8")
    saved = dict(PRODUCERS._classes), dict(CONSUMERS._classes)
    spec = importlib.util.spec_from_file_location("readme_example", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        for registry, classes in zip((PRODUCERS, CONSUMERS), saved):
            registry._classes.clear()
            registry._classes.update(classes)


def test_the_example_producer_runs_exactly_once(readme_example):
    from framework.producer import PRODUCERS, ProducerABC
    from framework.settings import Settings
    from framework.testing.producer import FakeNdjsonSession, InMemoryKafka

    producer_cls = readme_example.OrdersProducer
    assert issubclass(producer_cls, ProducerABC) and PRODUCERS.get(producer_cls.name) is producer_cls
    kafka = InMemoryKafka()
    session = FakeNdjsonSession([{"customer_id": 7, "amount": 2.5, "status": "paid"},
                                 {"customer_id": 8, "amount": 1.0, "status": "test"},
                                 {"amount": 3.0}])
    settings = Settings.from_env({})
    producer = producer_cls(settings, session=session, **kafka.clients())
    assert producer.url == producer_cls.endpoint
    summary = producer.run()
    assert (summary.sent, summary.dropped, summary.dead_lettered) == (1, 1, 1)
    [message] = kafka.messages(producer_cls.topic)
    assert message.json() == {"customer_id": 7, "amount": 2.5, "status": "paid"} and message.key == b"7"
    again = producer_cls(settings, session=session, **kafka.clients()).run()
    assert again.sent == 0 and len(kafka.messages(producer_cls.topic)) == 1


def test_the_example_consumer_reads_what_the_producer_writes(readme_example, spark):
    from framework.consumer import CONSUMERS, ConsumerSparkABC
    from framework.sinks import ParquetWriter
    from framework.testing.consumer import parse_values

    consumer_cls = readme_example.OrdersToParquet
    assert issubclass(consumer_cls, ConsumerSparkABC) and CONSUMERS.get(consumer_cls.name) is consumer_cls
    assert list(consumer_cls.topics) == [readme_example.OrdersProducer.topic]
    assert isinstance(consumer_cls.writer, ParquetWriter)
    result = parse_values(consumer_cls, ['{"customer_id": 7, "amount": 2.5, "time": "2026-01-05T08:00:00Z"}',
                                         '{"amount": 1.0}'], spark=spark)
    assert [(r["customer_id"], r["amount"]) for r in result.rows] == [(7, 2.5)]
    assert result.reasons == ["missing required field 'customer_id'"]
