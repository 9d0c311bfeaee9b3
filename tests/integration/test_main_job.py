"""The main job end to end on the embedded default: exact rows, the report, reruns, Ctrl-C."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from framework.local.kafka_broker import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "data_source"


def _source(name: str) -> list[dict]:
    return [json.loads(line) for line in (DATA / f"{name}.json").read_text().splitlines() if line.strip()]


def _env(work: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_") or k == "PIPELINE_CACHE_DIR"}
    env.update({
        "PIPELINE_STATE_DIR": str(work / "state"),
        "PIPELINE_OUTPUT_DIR": str(work / "output"),
        "PIPELINE_BROKER_PORT": str(free_port()),
        "PIPELINE_BROKER_CONTROLLER_PORT": str(free_port()),
        "PIPELINE_API_PORT": str(free_port()),
        "PIPELINE_SPARK_MASTER": "local[2]",
        "PYTHONPATH": str(ROOT),
    })
    return env


def _run(env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "cmd" / "run_cmd.py")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _table(path: Path) -> list[dict]:
    return ds.dataset(str(path), format="parquet", partitioning="hive").to_table().to_pylist()


def _broker_pid(work: Path) -> int | None:
    pid_file = work / "state" / "kafka" / "broker.pid"
    return json.loads(pid_file.read_text())["pid"] if pid_file.exists() else None


def test_main_job_writes_exactly_the_source_records_and_the_report(tmp_path):
    env = _env(tmp_path)
    first = _run(env)
    assert first.returncode == 0, first.stderr[-3000:]
    out = tmp_path / "output"

    metrics, workorder = _source("metrics"), _source("workorder")
    m_rows, w_rows = _table(out / "metrics"), _table(out / "workorder")
    assert len(m_rows) == len(metrics) == 19440
    assert len(w_rows) == len(workorder)
    assert sorted((r["id"], round(r["val"], 6)) for r in m_rows) == sorted((r["id"], round(r["val"], 6))
                                                                           for r in metrics)
    assert sorted((r["product"], r["production"]) for r in w_rows) == sorted((r["product"], r["production"])
                                                                             for r in workorder)
    # one row per Kafka record: (partition, offset) pairs are unique
    assert len({(r["kafka_partition"], r["kafka_offset"]) for r in m_rows}) == len(m_rows)

    assert "Pipeline summary" in first.stdout
    assert f"Parquet rows {len(metrics):>8,}" in first.stdout
    assert f"(+{len(metrics):,} this run)" in first.stdout

    truth = {k: sorted(v) for k, v in json.loads((DATA / "ground_truth.json").read_text()).items()}
    found = json.loads((out / "report" / "report.json").read_text())
    assert {k: sorted(v["top"]) for k, v in found.items()} == truth
    assert all((out / "report" / f"product_{k}.png").is_file() for k in truth)

    # nothing it started is left running
    assert _broker_pid(tmp_path) is None

    # a second run adds nothing and the row counts are the same
    second = _run(env)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "(+0 this run)" in second.stdout
    assert len(_table(out / "metrics")) == len(metrics)
    assert len(_table(out / "workorder")) == len(workorder)


def test_ctrl_c_stops_everything_and_the_next_run_completes_exactly(tmp_path):
    env = _env(tmp_path)
    env["PIPELINE_LOG_LEVEL"] = "INFO"
    proc = subprocess.Popen([sys.executable, str(ROOT / "cmd" / "run_cmd.py"), "--delay", "0.0005",
                             "--no-report"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    seen = []
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline:  # wait until the producers are streaming
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            if "Stage 1/3" in line:
                time.sleep(2.0)
                break
        assert any("Stage 1/3" in line for line in seen), "".join(seen)[-3000:]
        broker_pid = _broker_pid(tmp_path)
        assert broker_pid
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0, "an interrupted main job must not claim success"
    assert "Stopped local Kafka broker" in rest, rest[-3000:]
    with pytest.raises(ProcessLookupError):
        os.kill(broker_pid, 0)

    again = _run(env)
    assert again.returncode == 0, again.stderr[-3000:]
    out = tmp_path / "output"
    assert len(_table(out / "metrics")) == len(_source("metrics"))
    assert len(_table(out / "workorder")) == len(_source("workorder"))
