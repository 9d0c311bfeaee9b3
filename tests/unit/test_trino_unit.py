"""The local Trino without a server or the network: JDK discovery, the download check, the rendered config."""
from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from framework.commands.trino import main as trino_main
from framework.errors import SettingsError, TrinoError
from framework.local import trino_dist
from framework.local.postgres import PostgresTarget
from framework.local.trino import LocalTrino, catalog_properties
from framework.local.trino_dist import download, ensure_server, find_jdk, parse_java_version
from framework.settings import Settings


def fake_jdk(root: Path, name: str, version: str, release: bool = True) -> Path:
    home = root / name
    (home / "bin").mkdir(parents=True)
    java = home / "bin" / "java"
    java.write_text("#!/bin/sh\nexit 0\n")
    java.chmod(0o755)
    if release:
        (home / "release").write_text(f'IMPLEMENTOR="Test"\nJAVA_VERSION="{version}"\nOS_NAME="Linux"\n')
    return home


@pytest.mark.parametrize("text, expected", [("25.0.3", (25, 0, 3)), ('"24"', (24,)), ("17.0.16+8", (17, 0, 16)),
                                            ("1.8.0_412", (8, 0, 412)), ("abc", None)])
def test_java_versions_are_parsed_like_the_release_files_spell_them(text, expected):
    assert parse_java_version(text) == expected


def test_the_newest_jdk_of_at_least_24_0_1_is_chosen(tmp_path):
    jvm = tmp_path / "jvm"
    fake_jdk(jvm, "java-17-openjdk-amd64", "17.0.16")
    fake_jdk(jvm, "jdk-24.0.0", "24.0.0")  # below Trino 476's 24.0.1
    fake_jdk(jvm, "temurin-25-jdk-amd64", "25.0.3")
    fake_jdk(jvm, "jdk-24.0.2", "24.0.2")
    fake_jdk(jvm, "no-release", "26", release=False)  # not recognisable as a JDK: ignored
    home, version = find_jdk("", roots=[jvm, tmp_path / "missing"], environ={})
    assert (home.name, version) == ("temurin-25-jdk-amd64", (25, 0, 3))


def test_without_a_jdk_of_24_or_newer_the_error_names_what_was_found_and_the_remedy(tmp_path):
    jvm = tmp_path / "jvm"
    fake_jdk(jvm, "java-17-openjdk-amd64", "17.0.16")
    with pytest.raises(TrinoError) as err:
        find_jdk("", roots=[jvm], environ={})
    message = str(err.value)
    assert "Java 24.0.1+" in message and "java-17-openjdk-amd64 (Java 17.0.16)" in message
    assert "PIPELINE_TRINO_JAVA_HOME" in message and message.count(". ") == 0


def test_a_configured_java_home_is_the_only_one_considered(tmp_path):
    old = fake_jdk(tmp_path, "old", "21.0.2")
    fake_jdk(tmp_path / "jvm", "temurin-25", "25.0.1")
    with pytest.raises(TrinoError, match=r"PIPELINE_TRINO_JAVA_HOME=.*old is Java 21\.0\.2, but Trino needs Java "
                                         r"24\.0\.1 or newer"):
        find_jdk(str(old), roots=[tmp_path / "jvm"])
    with pytest.raises(TrinoError, match="is not a JDK"):
        find_jdk(str(tmp_path / "nothing"))
    assert find_jdk(str(tmp_path / "jvm" / "temurin-25"))[1] == (25, 0, 1)


def test_java_home_from_the_environment_counts_when_it_is_new_enough(tmp_path):
    env_home = fake_jdk(tmp_path, "env-jdk", "24.0.1")
    assert find_jdk("", roots=[], environ={"JAVA_HOME": str(env_home)}) == (env_home, (24, 0, 1))


def _publish(repo: Path, relative: str, data: bytes, sha1: str | None = None) -> None:
    path = repo / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    (repo / (relative + ".sha1")).write_text((sha1 or hashlib.sha1(data).hexdigest()) + "\n")


def test_download_checks_the_sha1_and_removes_a_file_that_differs(tmp_path):
    repo = tmp_path / "repo"
    _publish(repo, "a/good.bin", b"x" * 5000)
    _publish(repo, "a/bad.bin", b"y" * 10, sha1="0" * 40)
    seen = []
    got = download((repo / "a/good.bin").as_uri(), tmp_path / "good.bin", lambda url, done, total: seen.append(done))
    assert got.read_bytes() == b"x" * 5000 and seen[-1] == 5000
    with pytest.raises(TrinoError, match=r"bad\.bin does not match its Maven Central SHA-1"):
        download((repo / "a/bad.bin").as_uri(), tmp_path / "bad.bin", lambda *a: None)
    assert not (tmp_path / "bad.bin").exists()
    with pytest.raises(TrinoError, match=r"^Downloading .*missing\.bin failed"):
        download((repo / "a/missing.bin").as_uri(), tmp_path / "m.bin", lambda *a: None)


def test_the_server_is_assembled_from_the_core_tarball_and_the_iceberg_plugin_once(tmp_path, monkeypatch):
    repo = tmp_path / "maven2"
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w:gz") as tar:
        for name, data in {"trino-server-core-9/lib/trino-main.jar": b"main",
                           "trino-server-core-9/plugin/geospatial/g.jar": b"g"}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    zip_bytes = io.BytesIO()
    with zipfile.ZipFile(zip_bytes, "w") as zf:
        zf.writestr("trino-iceberg-9/io.trino_trino-iceberg-9.jar", b"ice")
        zf.writestr("trino-iceberg-9/org.postgresql_postgresql-42.7.6.jar", b"pg")
    _publish(repo, "io/trino/trino-server-core/9/trino-server-core-9.tar.gz", tar_bytes.getvalue())
    _publish(repo, "io/trino/trino-iceberg/9/trino-iceberg-9.zip", zip_bytes.getvalue())
    monkeypatch.setattr(trino_dist, "MAVEN_CENTRAL", repo.as_uri())
    home = ensure_server(tmp_path / "cache", "9", progress=lambda *a: None)
    assert home == tmp_path / "cache" / "trino" / "9" / "server"
    assert (home / "lib" / "trino-main.jar").read_bytes() == b"main"
    assert sorted(p.name for p in (home / "plugin" / "iceberg").iterdir()) == [
        "io.trino_trino-iceberg-9.jar", "org.postgresql_postgresql-42.7.6.jar"]
    assert (home / "COMPLETE").is_file() and not list(home.parent.glob(".server-*"))
    monkeypatch.setattr(trino_dist, "MAVEN_CENTRAL", (tmp_path / "gone").as_uri())
    assert ensure_server(tmp_path / "cache", "9") == home  # cached: the network is not asked again


TARGET = PostgresTarget("127.0.0.1", 5433, "pipeline", "pipeline", "s3cret")


def test_the_catalog_is_the_writers_jdbc_catalog(tmp_path):
    settings = Settings.from_env({}, output_dir=tmp_path / "out", iceberg_catalog="lake", iceberg_namespace="game")
    props = catalog_properties(settings, TARGET)
    assert props["connector.name"] == "iceberg" and props["iceberg.catalog.type"] == "jdbc"
    assert props["iceberg.jdbc-catalog.catalog-name"] == "lake"  # the catalog_name column Spark writes
    assert props["iceberg.jdbc-catalog.connection-url"] == "jdbc:postgresql://127.0.0.1:5433/pipeline"
    assert (props["iceberg.jdbc-catalog.connection-user"], props["iceberg.jdbc-catalog.connection-password"]) == (
        "pipeline", "s3cret")
    assert props["iceberg.jdbc-catalog.default-warehouse-dir"] == (tmp_path / "out" / "warehouse").resolve().as_uri()
    assert props["fs.native-local.enabled"] == "true" and props["local.location"] == "/"


def test_an_s3a_warehouse_uses_trinos_native_s3_with_the_endpoint(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    settings = Settings.from_env({}, iceberg_warehouse="s3a://bucket/wh", iceberg_s3_endpoint="http://127.0.0.1:9000")
    props = catalog_properties(settings, TARGET)
    assert props["fs.native-s3.enabled"] == "true" and "fs.native-local.enabled" not in props
    assert (props["s3.endpoint"], props["s3.path-style-access"]) == ("http://127.0.0.1:9000", "true")
    assert (props["s3.aws-access-key"], props["s3.aws-secret-key"]) == ("key", "secret")


def test_the_server_config_binds_127_0_0_1_under_the_state_directory_with_a_small_heap(tmp_path):
    settings = Settings.from_env({}, state_dir=tmp_path / "state", output_dir=tmp_path / "out", trino_port=18123)
    trino = LocalTrino.from_settings(settings)
    home = tmp_path / "server"
    trino.write_config(TARGET, home)
    etc = tmp_path / "state" / "trino" / "etc"
    config = dict(line.split("=", 1) for line in (etc / "config.properties").read_text().splitlines())
    assert (config["http-server.http.port"], config["node.bind-ip"], config["discovery.uri"]) == (
        "18123", "127.0.0.1", "http://127.0.0.1:18123")
    assert config["plugin.dir"] == str(home / "plugin") and config["coordinator"] == "true"
    catalog = etc / "catalog" / "iceberg.properties"
    assert "iceberg.catalog.type=jdbc\n" in catalog.read_text() and catalog.stat().st_mode & 0o077 == 0
    node_id = config["node.id"]
    trino.write_config(TARGET, home)  # the node id is stable across starts
    assert f"node.id={node_id}\n" in (etc / "config.properties").read_text()
    cmd = trino.command(Path("/jdk"), home)
    assert cmd[:2] == ["/jdk/bin/java", "-Xmx2g"] and cmd[-1] == "io.trino.server.TrinoServer"
    assert f"-Dnode.data-dir={(tmp_path / 'state' / 'trino' / 'data').resolve()}" in cmd
    assert cmd[cmd.index("-cp") + 1] == f"{home}/lib/*"


def test_start_without_a_usable_jdk_fails_before_any_download(tmp_path):
    old = fake_jdk(tmp_path, "jdk17", "17.0.16")
    settings = Settings.from_env({}, state_dir=tmp_path / "state", cache_dir=tmp_path / "cache",
                                 trino_java_home=str(old))
    with pytest.raises(TrinoError, match="Trino needs Java 24.0.1 or newer"):
        LocalTrino.from_settings(settings).start()
    assert not (tmp_path / "cache").exists()


def test_status_and_stop_of_a_server_that_is_not_running(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PIPELINE_STATE_DIR", str(tmp_path / "state"))
    assert trino_main(["status"]) == 3
    assert capsys.readouterr().out.startswith("not running (state ")
    assert trino_main(["stop"]) == 0
    assert "no local Trino was running" in capsys.readouterr().out


def test_with_a_trino_url_nothing_is_managed_here(monkeypatch, capsys):
    from framework.local.kafka_broker import free_port

    monkeypatch.setenv("PIPELINE_TRINO_URL", f"http://127.0.0.1:{free_port()}")
    assert trino_main(["start"]) == 2
    assert "PIPELINE_TRINO_URL is set" in capsys.readouterr().err
    assert trino_main(["status"]) == 3
    assert capsys.readouterr().out.startswith("not reachable: Trino at http://127.0.0.1:")


@pytest.mark.parametrize("value", ["trino:8080", "http://trino:8080/v1", "ftp://x"])
def test_a_malformed_trino_url_is_refused_when_the_settings_are_read(value):
    with pytest.raises(SettingsError, match=r"PIPELINE_TRINO_URL=.* is not valid; expected empty"):
        Settings.from_env({"PIPELINE_TRINO_URL": value})


class _Cursor:
    """A trino DB-API cursor stand-in: each execute() takes the next outcome (an exception or rows)."""

    def __init__(self, outcomes: list, executed: list) -> None:
        self.outcomes, self.executed, self.rows = outcomes, executed, []
        self.description = [("n",)]

    def execute(self, sql):
        self.executed.append(sql)
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        self.rows = outcome

    def fetchall(self):
        return self.rows


def _engine(outcomes: list, executed: list):
    from framework.query.trino_engine import TrinoEngine

    engine = TrinoEngine.__new__(TrinoEngine)  # no server: the connection is a stand-in
    engine.settings, engine.url = Settings.from_env({}), "http://127.0.0.1:1"
    engine.conn = type("Conn", (), {"cursor": lambda self: _Cursor(outcomes, executed)})()
    return engine


def _trino_error(name: str, message: str):
    from trino.exceptions import TrinoExternalError

    return TrinoExternalError({"message": message, "errorName": name, "errorType": "EXTERNAL"}, "q1")


def test_a_statement_refused_for_want_of_nodes_is_sent_again_until_a_node_serves_it(monkeypatch):
    # Trino 476 just started: the first scan of an s3a table failed with NO_NODES_AVAILABLE, the next ran
    import framework.query.trino_engine as trino_engine

    monkeypatch.setattr(trino_engine.time, "sleep", lambda s: None)
    executed: list = []
    no_nodes = _trino_error("NO_NODES_AVAILABLE", "No nodes available to run query")
    engine = _engine([no_nodes, no_nodes, [(120,)]], executed)
    assert engine.execute("select count(*) from t") == (["n"], [(120,)])
    assert executed == ["select count(*) from t"] * 3


def test_no_nodes_for_longer_than_the_wait_and_other_errors_are_raised_at_once(monkeypatch):
    import framework.query.trino_engine as trino_engine
    from framework.query.duck import QueryError

    monkeypatch.setattr(trino_engine.time, "sleep", lambda s: None)
    monkeypatch.setattr(trino_engine, "NO_NODES_WAIT", 0.0)
    executed: list = []
    engine = _engine([_trino_error("NO_NODES_AVAILABLE", "No nodes available to run query")], executed)
    with pytest.raises(QueryError, match=r"^The query failed: No nodes available to run query \(NO_NODES_AVAILABLE\)$"):
        engine.execute("select 1")
    monkeypatch.setattr(trino_engine, "NO_NODES_WAIT", 30.0)
    engine = _engine([_trino_error("DIVISION_BY_ZERO", "Division by zero")], executed)
    with pytest.raises(QueryError, match=r"Division by zero \(DIVISION_BY_ZERO\)"):
        engine.execute("select 1/0")
    assert executed == ["select 1", "select 1/0"]
