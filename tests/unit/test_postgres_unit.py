"""The local PostgreSQL's pure parts: URL parsing, settings, and its refusals (no server started)."""
from __future__ import annotations

import socket

import pytest

from framework.errors import PostgresError, SettingsError
from framework.local.postgres import LocalPostgres, PostgresTarget, postgres_target
from framework.settings import Settings


def test_url_round_trip_and_jdbc_form():
    t = PostgresTarget.parse("postgresql://app:p%40ss@db.example:6543/sales")
    assert (t.host, t.port, t.database, t.user, t.password) == ("db.example", 6543, "sales", "app", "p@ss")
    assert t.jdbc_url == "jdbc:postgresql://db.example:6543/sales"
    assert t.jdbc_properties == {"user": "app", "password": "p@ss", "driver": "org.postgresql.Driver"}
    assert PostgresTarget.parse(t.url) == t
    assert "p@ss" not in t.safe_url and "p%40ss" not in t.safe_url


def test_default_port_is_postgres_standard():
    assert PostgresTarget.parse("postgres://u@h/d").port == 5432


@pytest.mark.parametrize("url", ["mysql://u@h/d", "postgresql://h:5432", "not a url"])
def test_bad_url_is_one_sentence_naming_it(url):
    with pytest.raises(PostgresError, match="is not a PostgreSQL URL"):
        PostgresTarget.parse(url)


def test_setting_refuses_a_non_postgres_url():
    with pytest.raises(SettingsError, match="PIPELINE_POSTGRES_URL=mysql://x/y is not valid"):
        Settings.from_env({"PIPELINE_POSTGRES_URL": "mysql://x/y"})


def test_settings_choose_local_or_given_server(tmp_path):
    local = Settings.from_env({"PIPELINE_STATE_DIR": str(tmp_path), "PIPELINE_POSTGRES_PORT": "6000"})
    assert local.uses_local_postgres
    t = postgres_target(local)
    assert (t.host, t.port, t.database, t.user) == ("127.0.0.1", 6000, "pipeline", "pipeline")
    given = Settings.from_env({"PIPELINE_POSTGRES_URL": "postgresql://a:b@h:7/x"})
    assert not given.uses_local_postgres and postgres_target(given).database == "x"


def test_start_refuses_a_taken_port(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        pg = LocalPostgres(state_dir=tmp_path / "pg", port=s.getsockname()[1])
        with pytest.raises(PostgresError, match=r"Port \d+ on 127.0.0.1 is in use.*PIPELINE_POSTGRES_PORT"):
            pg.start()


def test_missing_server_programs_is_one_sentence(tmp_path, mocker):
    mocker.patch("framework.local.postgres.server_bin_dir", return_value=None)
    with pytest.raises(PostgresError, match="server programs .* are not installed.*make install"):
        LocalPostgres(state_dir=tmp_path / "pg", port=1).start()


def test_unreachable_server_is_one_sentence_naming_it():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: refused
        with pytest.raises(PostgresError, match=rf"PostgreSQL at postgresql://u@127.0.0.1:{port}/d cannot be "
                                                  "reached"):
            PostgresTarget("127.0.0.1", port, "d", "u", "secret").connect(timeout=2)


def test_status_of_a_server_never_started(tmp_path):
    st = LocalPostgres(state_dir=tmp_path / "pg", port=6001).status()
    assert st["running"] is False and st["pid"] is None and st["url"].endswith(":6001/pipeline")
