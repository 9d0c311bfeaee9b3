"""The local PostgreSQL for real: start, connect, data kept across a restart, stop by PID, the command."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from framework.local.postgres import LocalPostgres
from framework.local.processes import alive
from framework.settings import Settings

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def test_server_answers_and_keeps_data_across_restart(local_postgres):
    with local_postgres.target.connect(autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS kept (id int PRIMARY KEY)")
        conn.execute("INSERT INTO kept VALUES (1) ON CONFLICT DO NOTHING")
        assert conn.execute("SHOW listen_addresses").fetchone()[0] == "127.0.0.1"
    pid = local_postgres.running_pid()
    again = LocalPostgres(state_dir=local_postgres.state_dir, port=local_postgres.port)
    assert again.start().running_pid() == pid  # a running server is reused, not started twice
    assert local_postgres.stop() and not alive(pid)
    local_postgres.start()
    with local_postgres.target.connect() as conn:
        assert conn.execute("SELECT count(*) FROM kept").fetchone()[0] == 1


def test_command_start_status_stop():
    from framework.local.kafka_broker import free_port

    # not pytest's tmp_path: it is private to root, and as root the server runs as the postgres user
    state = Path(tempfile.mkdtemp(prefix="pipeline-pg-cmd-"))
    state.chmod(0o711)

    env = {**os.environ, "PIPELINE_STATE_DIR": str(state), "PIPELINE_POSTGRES_PORT": str(free_port())}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, str(ROOT / "cmd" / "postgres_cmd.py"), *args], env=env,
                              capture_output=True, text=True, timeout=120)

    try:
        started = run("start")
        assert started.returncode == 0, started.stderr
        assert "local PostgreSQL running (pid" in started.stdout and "127.0.0.1" in started.stdout
        status = run("status")
        assert status.returncode == 0 and status.stdout.startswith("running (pid")
        settings = Settings.from_env({k: v for k, v in env.items() if k.startswith("PIPELINE_")})
        with LocalPostgres.from_settings(settings).target.connect() as conn:
            assert conn.execute("SELECT current_database()").fetchone()[0] == "pipeline"
    finally:
        stopped = run("stop")
        after = run("status")
        shutil.rmtree(state, ignore_errors=True)
    assert stopped.returncode == 0 and stopped.stdout.strip() == "stopped local PostgreSQL"
    assert after.returncode == 3 and after.stdout.startswith("not running")
