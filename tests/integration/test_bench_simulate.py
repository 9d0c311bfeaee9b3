"""``python cmd/bench_cmd.py --quick --only simulate`` end to end, small: the local figures measured, counts checked.

The section's Spark part (a standalone cluster, 1 and 2 executors) is left out here to keep the test short
(``--no-sim-spark``); publishing from Spark executors is tested in test_simulation_kafka.py."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.integration.pipeline_procs import ROOT, pipeline_env

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.heavy]


@pytest.mark.timeout(600)
def test_quick_simulate_section_measures_the_model_the_reference_and_the_local_producer(tmp_path):
    out = tmp_path / "bench"
    proc = subprocess.run([sys.executable, "cmd/bench_cmd.py", "--quick", "--only", "simulate", "--sim-runs", "2",
                           "--sim-timesteps", "40", "--no-sim-spark", "--out", str(out)], cwd=ROOT, env=pipeline_env(),
                          capture_output=True, text=True, timeout=560, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["errors"] == {}
    names = [f["name"] for f in results["figures"] if f["section"] == "simulate"]
    assert names[0] == "model alone (simulate + encode, no Kafka)"
    assert any(n.startswith("local simulation producer") for n in names)
    assert not any(n.startswith("Spark") for n in names)
    details = results["details"]["simulate"]
    assert details["local"]["sent"] == details["messages"] > 0
    assert details["record_size"] > details["value_size"] > 0  # the reference's values: key + value + headers
    for figure in results["figures"]:
        if figure["section"] == "simulate" and figure["unit"] == "records/s":
            assert figure["ours"] > 0, figure
    assert "| simulate | local simulation producer" in proc.stdout
    cpu = [f for f in results["figures"] if f["section"] == "simulate" and f["name"].endswith("CPU per message")]
    assert len(cpu) == 1 and cpu[0]["unit"] == "us" and cpu[0]["ours"] > cpu[0]["reference"] > 0  # publishing costs
    assert details["local"]["cpu_us_per_message"] == cpu[0]["ours"]
