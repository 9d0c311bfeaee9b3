"""docker-compose.yml and the Dockerfile: valid, wired together, and pinned to the project's versions.

``docker compose config -q`` validates the file when the compose plugin is
installed (it needs no daemon); otherwise that test is skipped. The structural
tests read the file with PyYAML when it is installed, and otherwise with
:func:`read_compose_yaml`, a reader for the subset of YAML the compose file
keeps to (block mappings and lists, JSON-style flow lists, quoted or plain
scalars, no anchors). With PyYAML present both readers must agree.
"""
from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from framework.settings import PREFIX, Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


# --------------------------------------------------------------- a tiny YAML reader
def read_compose_yaml(text: str) -> Any:
    """Parse the YAML subset docker-compose.yml is written in; ValueError on anything else."""
    lines = []
    for number, raw in enumerate(text.splitlines(), start=1):
        content = _strip_comment(raw).rstrip()
        if content.strip():
            if "\t" in content[: len(content) - len(content.lstrip())]:
                raise ValueError(f"line {number}: tabs in indentation")
            lines.append((len(content) - len(content.lstrip(" ")), content.strip(), number))
    if not lines:
        return None
    value, pos = _block(lines, 0, lines[0][0])
    if pos != len(lines):
        raise ValueError(f"line {lines[pos][2]}: unexpected indentation")
    return value


def _strip_comment(line: str) -> str:
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == "\\" and quote == '"':
                continue
            if ch == quote and (quote == "'" or line[i - 1] != "\\"):
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] in " \t"):
            return line[:i]
    return line


def _block(lines: list[tuple[int, str, int]], pos: int, indent: int) -> tuple[Any, int]:
    if lines[pos][1].startswith("- "):
        items = []
        while pos < len(lines) and lines[pos][0] == indent and lines[pos][1].startswith("- "):
            items.append(_scalar(lines[pos][1][2:].strip(), lines[pos][2]))
            pos += 1
        return items, pos
    mapping: dict[str, Any] = {}
    while pos < len(lines) and lines[pos][0] == indent:
        key, sep, rest = lines[pos][1].partition(":")
        if not sep or (rest and not rest.startswith(" ")) or key.startswith(("-", "[", "{", "&", "*")):
            raise ValueError(f"line {lines[pos][2]}: not a 'key: value' line: {lines[pos][1]!r}")
        key, rest, pos = key.strip().strip("\"'"), rest.strip(), pos + 1
        if rest:
            mapping[key] = _scalar(rest, lines[pos - 1][2])
        elif pos < len(lines) and (lines[pos][0] > indent
                                   or (lines[pos][0] == indent and lines[pos][1].startswith("- "))):
            mapping[key], pos = _block(lines, pos, lines[pos][0])
        else:
            mapping[key] = None
    if pos < len(lines) and lines[pos][0] > indent:
        raise ValueError(f"line {lines[pos][2]}: unexpected indentation")
    return mapping, pos


def _scalar(text: str, number: int) -> Any:
    if text.startswith(("&", "*", "!", "|", ">", "{")):
        raise ValueError(f"line {number}: anchors, tags, block scalars and flow mappings are not used here")
    if text.startswith(("[", '"')):
        return json.loads(text)  # flow lists are written as JSON; YAML double quotes escape like JSON here
    if text.startswith("'"):
        if not text.endswith("'"):
            raise ValueError(f"line {number}: unterminated single-quoted string")
        return text[1:-1].replace("''", "'")
    if text in ("null", "~"):
        return None
    if text in ("true", "false"):
        return text == "true"
    if re.fullmatch(r"[-+]?\d+", text):
        return int(text)
    if text.lower() in ("yes", "no", "on", "off", "y", "n"):
        raise ValueError(f"line {number}: quote {text!r}; YAML 1.1 readers take it for a boolean")
    return text


# --------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    text = COMPOSE.read_text()
    data = read_compose_yaml(text)
    try:
        import yaml
    except ImportError:
        return data
    assert yaml.safe_load(text) == data, "the tiny reader and PyYAML disagree about docker-compose.yml"
    return data


@pytest.fixture(scope="module")
def services(compose) -> dict[str, dict[str, Any]]:
    return compose["services"]


def _project_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in services.items() if "build" in svc}


def _pinned_pyspark() -> str:
    match = re.search(r"""["']pyspark==([\w.]+)["']""", (ROOT / "setup.py").read_text())
    assert match, "setup.py must pin pyspark with =="
    return match.group(1)


def _kafka(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in services.items() if svc.get("image", "").startswith("apache/kafka:")}


def _spark(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in services.items() if svc.get("image", "").startswith("apache/spark:")}


# ------------------------------------------------------------------------ tests
def test_docker_compose_accepts_the_file():
    if not shutil.which("docker"):
        pytest.skip("the docker client is not installed, so `docker compose config` cannot check the file")
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        pytest.skip("the docker compose plugin is not installed (`docker compose version` failed: "
                    f"{((probe.stderr or probe.stdout).strip() or 'no output').splitlines()[0][:120]})")
    done = subprocess.run(["docker", "compose", "-f", str(COMPOSE), "config", "-q"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr


def test_tiny_reader_handles_the_subset_and_refuses_the_rest():
    text = ('a:\n  b: "x: #1"  # comment\n  c: [\"CMD\", \"y\"]\n  d:\n    - "1:1"\n    - plain\n'
            "  e: 'it''s'\n  f: 5\n  g:\n")
    assert read_compose_yaml(text) == {"a": {"b": "x: #1", "c": ["CMD", "y"], "d": ["1:1", "plain"],
                                             "e": "it's", "f": 5, "g": None}}
    for bad in ("a: &anchor 1\n", "a:\n  - x\n   - y\n", "a: no\n", "a:\n    b: 1\n  c: 2\n"):
        with pytest.raises(ValueError):
            read_compose_yaml(bad)


def test_images_match_the_project_pins(services):
    kafka_version = Settings().kafka_version
    kafka = _kafka(services)
    assert sorted(kafka) == ["kafka1", "kafka2", "kafka3"]
    assert {svc["image"] for svc in kafka.values()} == {f"apache/kafka:{kafka_version}"}
    spark = _spark(services)
    assert sorted(spark) == ["spark-master", "spark-worker-1", "spark-worker-2"]
    assert {svc["image"] for svc in spark.values()} == {f"apache/spark:{_pinned_pyspark()}"}
    import pyspark
    assert pyspark.__version__ == _pinned_pyspark(), "the installed pyspark is not the pinned one"


def test_project_services_are_configured_only_by_valid_pipeline_variables(services):
    project = _project_services(services)
    assert {"api", "producers", "consumer"} <= set(project)
    for name, svc in project.items():
        env = svc.get("environment") or {}
        assert isinstance(env, dict), f"{name}: write environment as a mapping"
        foreign = [key for key in env if not key.startswith(PREFIX)]
        assert not foreign, f"{name} sets non-{PREFIX}* variables: {foreign}"
        Settings.from_env({key: str(value) for key, value in env.items()})  # known names, valid values
        assert svc["build"] == "." and svc["image"] == project["api"]["image"]
    commands = {name: project[name]["command"] for name in ("api", "producers", "consumer")}
    assert commands["api"][:2] == ["python", "cmd/api_cmd.py"] and "0.0.0.0" in commands["api"]
    assert commands["producers"] == ["python", "cmd/produce_cmd.py", "--all"]
    assert commands["consumer"] == ["python", "cmd/consume_cmd.py", "parquet"]


def test_kafka_is_a_three_voter_kraft_cluster_with_safe_replication(services):
    kafka = _kafka(services)
    envs = {name: svc["environment"] for name, svc in kafka.items()}
    voters = {env["KAFKA_CONTROLLER_QUORUM_VOTERS"] for env in envs.values()}
    assert len(voters) == 1, "every node must list the same voters"
    listed = dict(v.split("@") for v in voters.pop().split(","))
    cluster_ids = {env["CLUSTER_ID"] for env in envs.values()}
    assert len(cluster_ids) == 1, "every node must be formatted with the same cluster id"
    assert len(base64.urlsafe_b64decode(cluster_ids.pop() + "==")) == 16
    for name, env in envs.items():
        assert kafka[name]["hostname"] == name
        assert listed[env["KAFKA_NODE_ID"]] == f"{name}:9093"
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
        assert f"PLAINTEXT://{name}:9092" in env["KAFKA_ADVERTISED_LISTENERS"].split(",")
        assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
        assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == "3"
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == "2"
        assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "3"
        assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "3"
        assert env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == "2"
        assert "healthcheck" in kafka[name]
    assert sorted(listed) == ["1", "2", "3"]


def test_services_point_at_each_other(services):
    kafka = _kafka(services)
    internal = sorted(f"{name}:9092" for name in kafka)
    for name, svc in _project_services(services).items():
        env = svc.get("environment") or {}
        if "PIPELINE_KAFKA_BOOTSTRAP_SERVERS" in env:
            assert sorted(env["PIPELINE_KAFKA_BOOTSTRAP_SERVERS"].split(",")) == internal, name
            assert env["PIPELINE_TOPIC_REPLICATION_FACTOR"] == "3", name
    master = services["spark-master"]["command"]
    master_url = f"spark://{master[master.index('--host') + 1]}:{master[master.index('--port') + 1]}"
    for worker in ("spark-worker-1", "spark-worker-2"):
        assert master_url in services[worker]["command"]
    consumer = services["consumer"]["environment"]
    assert consumer["PIPELINE_SPARK_MASTER"] == master_url
    assert consumer["PIPELINE_SPARK_DRIVER_HOST"] == services["consumer"]["hostname"] == "consumer"
    api = services["api"]
    assert services["producers"]["environment"]["PIPELINE_API_BASE_URL"] == \
        f"http://{api['hostname']}:{api['environment']['PIPELINE_API_PORT']}"


def test_executors_and_driver_share_the_output_volume(compose, services):
    output = services["consumer"]["environment"]["PIPELINE_OUTPUT_DIR"]

    def mount_of(svc: dict[str, Any]) -> str | None:
        for volume in svc.get("volumes", []):
            source, target = volume.split(":")[:2]
            if output.startswith(target.rstrip("/") + "/") and source in (compose.get("volumes") or {}):
                return source
        return None

    shared = mount_of(services["consumer"])
    assert shared, f"PIPELINE_OUTPUT_DIR={output} of the consumer is not on a named volume"
    for worker in ("spark-worker-1", "spark-worker-2"):
        assert mount_of(services[worker]) == shared, f"{worker} must mount {shared} where the consumer does"


def test_start_up_is_ordered_by_health(services):
    for name, svc in services.items():
        for dep, spec in (svc.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown service {dep}"
            condition = spec["condition"]
            assert condition in ("service_healthy", "service_started", "service_completed_successfully")
            if condition == "service_healthy":
                assert "healthcheck" in services[dep], \
                    f"{name} waits for {dep} to be healthy, but it has no healthcheck"
    consumer = services["consumer"]["depends_on"]
    for needed in ("kafka1", "kafka2", "kafka3", "spark-worker-1", "spark-worker-2"):
        assert consumer[needed]["condition"] == "service_healthy"
    producers = services["producers"]["depends_on"]
    assert producers["api"]["condition"] == "service_healthy"
    assert all(producers[k]["condition"] == "service_healthy" for k in ("kafka1", "kafka2", "kafka3"))


def test_dockerfile_builds_the_project_on_python_and_java():
    text = DOCKERFILE.read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    assert "openjdk-17-jre-headless" in text
    assert re.search(r"^RUN pip install", text, re.M)
    assert re.search(r"^USER pipeline$", text, re.M) and "--uid 185" in text  # Spark's uid, for the shared volume
    ignored = {line.strip() for line in DOCKERIGNORE.read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    for needed in ("setup.py", "framework", "apps", "cmd", "data_source", "README.md"):
        assert needed not in ignored, f".dockerignore must not exclude {needed}"


def test_trino_serves_the_writers_jdbc_catalog_on_the_shared_warehouse(services):
    trino = services["trino"]
    assert trino["image"] == f"trinodb/trino:{Settings().trino_version}"
    mounts = dict(v.split(":")[:2] for v in trino["volumes"])
    source = ROOT / "deploy/trino/catalog/iceberg.properties"
    assert mounts["./deploy/trino/catalog/iceberg.properties"] == "/etc/trino/catalog/iceberg.properties"
    props = dict(line.split("=", 1) for line in source.read_text().splitlines() if line and not line.startswith("#"))
    postgres = services["postgres"]["environment"]
    assert props["iceberg.catalog.type"] == "jdbc"
    assert props["iceberg.jdbc-catalog.catalog-name"] == Settings().iceberg_catalog
    assert props["iceberg.jdbc-catalog.connection-url"] == f"jdbc:postgresql://postgres:5432/{postgres['POSTGRES_DB']}"
    assert (props["iceberg.jdbc-catalog.connection-user"], props["iceberg.jdbc-catalog.connection-password"]) == (
        postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"])
    output = services["consumer"]["environment"]["PIPELINE_OUTPUT_DIR"]
    assert props["iceberg.jdbc-catalog.default-warehouse-dir"] == f"file://{output}/warehouse"
    assert mounts["pipeline-data"] == "/data" and output.startswith("/data/")
    assert trino["depends_on"]["postgres"]["condition"] == "service_healthy"
