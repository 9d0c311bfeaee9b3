"""Ctrl-C of ``python cmd/bench_cmd.py``: it stops what it started and exits 130 with one line, no traceback.

The signal goes to the whole process group, as a terminal's Ctrl-C does. The short test
interrupts the ``api`` section (a local broker and the API in a child process); the heavy
one interrupts ``latency`` while its Spark consumer runs, after the ``api`` section finished,
whose results must be saved.
"""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.pipeline_procs import pipeline_env

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _interrupt_bench(tmp_path: Path, args: list[str], when: str, after: float = 1.0) -> tuple[int, str, str, float]:
    """Run the benchmark, SIGINT its process group ``after`` s past the first line containing ``when``."""
    env = pipeline_env(state_dir=tmp_path / "state")
    proc = subprocess.Popen([sys.executable, str(ROOT / "cmd" / "bench_cmd.py"), "--quick", "--out",
                             str(tmp_path / "results"), *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            if when in line:
                break
        assert any(when in line for line in seen), "".join(seen)[-3000:]
        time.sleep(after)
        os.killpg(proc.pid, signal.SIGINT)
        signalled = time.monotonic()
        rest, _ = proc.communicate(timeout=120)
        took = time.monotonic() - signalled
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode, "".join(seen), rest, took


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _closed(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
    except OSError:
        return True
    return False


def _check_stopped(code: int, before: str, rest: str, took: float) -> str:
    assert code == 130, (before + rest)[-4000:]
    assert took < 60, f"{took:.0f} s to stop"
    assert "Traceback" not in rest and " ERROR " not in rest, rest[-4000:]
    last = rest.strip().splitlines()[-1]
    assert last.startswith("stopped by SIGINT: the benchmark was interrupted during section "), rest[-3000:]
    api = re.search(r"the streaming API \(pid (\d+)\)", last)
    broker = re.search(r"the local Kafka broker \(([\d.]+:\d+)\)", last)
    assert api and broker, last
    assert _gone(int(api.group(1))) and _closed(broker.group(1)), last  # really stopped
    return last


def test_ctrl_c_during_the_api_section_stops_the_broker_and_the_api_and_exits_130(tmp_path):
    code, before, rest, took = _interrupt_bench(tmp_path, ["--only", "api", "--records", "300000", "--repeat", "1"],
                                                "Streaming API (pid")
    last = _check_stopped(code, before, rest, took)
    assert "(api)" in last and last.endswith("no section had finished, nothing saved."), last
    assert not (tmp_path / "results" / "results.json").exists()


@pytest.mark.slow
@pytest.mark.heavy
@pytest.mark.timeout(1200)
def test_ctrl_c_while_the_latency_consumer_runs_stops_spark_too_and_saves_the_finished_sections(tmp_path):
    code, before, rest, took = _interrupt_bench(
        tmp_path, ["--only", "api,latency", "--records", "20000", "--repeat", "1", "--latency-seconds", "60",
                   "--latency-rate", "200"], "latency: consumer running", after=3.0)
    last = _check_stopped(code, before, rest, took)
    assert "(latency)" in last and "the Spark session" in last, last
    saved = tmp_path / "results" / "results.json"
    assert f"the finished sections' results are in {saved}" in last, last
    results = json.loads(saved.read_text())
    assert results["errors"] == {"section 2/2 (latency)": "interrupted"}, results["errors"]
