"""Operations without a broker or Spark: signals, root causes in one sentence, bounds of every number, names."""
from __future__ import annotations

import signal
import socket
import threading
import time
from pathlib import Path

import pytest

from apps.api import create_app, serve_in_thread
from apps.game_api import create_game_app
from framework.admin import KafkaAdmin, kafka_answers, not_kafka
from framework.commands import admin as admin_command
from framework.consumer.failures import (check_output_dirs, data_loss_sentence, explain, reported_failures,
                                        root_cause)
from framework.errors import (ConsumerError, KafkaUnavailableError, OutputError, SettingsError, SparkUnavailableError,
                              StreamError, TopicError)
from framework.local.kafka_broker import free_port
from framework.producer.event_log import InMemoryEventLog
from framework.settings import Settings
from framework.signals import EXIT_INTERRUPTED, StopSignals, preserved_handlers
from framework.sources.http import NdjsonStream
from framework.spark import check_master

# ------------------------------------------------------------------ signals


def test_stop_signals_stop_once_then_force_and_restore():
    stops = []
    before = signal.getsignal(signal.SIGINT)
    with StopSignals(lambda: stops.append(1), "the test") as signals:
        handler = signal.getsignal(signal.SIGINT)
        assert handler == signals.handle
        handler(signal.SIGINT, None)
        assert stops == [1] and signals.received == "SIGINT"
        with pytest.raises(KeyboardInterrupt):
            handler(signal.SIGTERM, None)
        assert stops == [1]  # the second signal does not stop twice, it cuts the wait short
    assert signal.getsignal(signal.SIGINT) == before
    assert EXIT_INTERRUPTED == 130


def test_exit_code_is_130_after_ctrl_c_and_0_after_a_graceful_sigterm():
    for signum, code in ((signal.SIGINT, 130), (signal.SIGTERM, 0)):
        signals = StopSignals(lambda: None)
        assert signals.exit_code == 0  # nothing received yet
        signals.handle(signum)
        assert signals.exit_code == code


def test_a_handler_replaced_while_spark_starts_is_put_back():
    """pyspark's SparkContext installs its own SIGINT handler; preserved_handlers undoes that."""
    with StopSignals(lambda: None) as signals:
        with preserved_handlers():
            signal.signal(signal.SIGINT, lambda *_: None)  # what SparkContext._do_init does
        assert signal.getsignal(signal.SIGINT) == signals.handle


# ------------------------------------------------------------------ root causes
PROXY_FAILURE = """[STREAM_FAILED] Query [id = 1, runId = 2] terminated with exception: An exception was raised by \
the Python Proxy. Return Message: Traceback (most recent call last):
  File "/py4j/clientserver.py", line 617, in _call_proxy
    return_value = getattr(self.pool[obj_id], method)(*params)
  File "/work/framework/sinks/parquet.py", line 60, in write_batch
    staging.mkdir(parents=True)
PermissionError: [Errno 1] Operation not permitted: '/tmp/out/metrics/_staging/batch=3'

\tat py4j.Protocol.getReturnValue(Protocol.java:476)
\tat org.apache.spark.sql.execution.streaming.StreamExecution.runStream(StreamExecution.scala:287)
"""

DATA_LOSS = """[STREAM_FAILED] Query [id = 1] terminated with exception: An exception was raised by the Python \
Proxy. Return Message: Traceback (most recent call last):
py4j.protocol.Py4JJavaError: An error occurred while calling o92.save.
: org.apache.spark.SparkException: Job aborted due to stage failure: Task 0 in stage 3.0 failed 1 times
Caused by: org.apache.kafka.clients.consumer.OffsetOutOfRangeException: Fetch position FetchPosition{offset=100, \
offsetEpoch=Optional.empty} is out of range for partition loss-topic-0
\tat org.apache.kafka.clients.consumer.internals.FetchCollector.handleInitializeErrors(FetchCollector.java:348)
"""


def test_a_python_error_inside_a_query_is_its_last_line_with_the_path():
    cause = root_cause(Exception(PROXY_FAILURE))
    assert cause.kind == "output" and cause.type_name == "PermissionError"
    sentence = explain(Exception(PROXY_FAILURE))
    assert sentence.startswith("Cannot write /tmp/out/metrics/_staging/batch=3 (PermissionError: [Errno 1] "
                               "Operation not permitted")
    assert "\n" not in sentence and "Python Proxy" not in sentence


ARROW_FAILURE = """[STREAM_FAILED] Query [id = 1] terminated with exception: An exception was raised by the Python \
Proxy. Return Message: Traceback (most recent call last):
  File "/py4j/clientserver.py", line 644, in _call_proxy
    return_value = getattr(self.pool[obj_id], method)(*params)
  File "/venv/lib/python3.11/site-packages/pyspark/sql/pandas/conversion.py", line 252, in toArrow
    table = pa.Table.from_batches(batches).cast(schema)
pyarrow.lib.ArrowInvalid: Can't view array of type struct<lat: double not null> as struct<lat: double not null>: \
nulls in input cannot be viewed as non-nullable

\tat py4j.Protocol.getReturnValue(Protocol.java:476)
"""


def test_a_python_exception_of_any_name_is_the_sentence_not_the_traceback_header():
    cause = root_cause(Exception(ARROW_FAILURE))
    assert (cause.kind, cause.type_name) == ("other", "pyarrow.lib.ArrowInvalid")
    assert explain(Exception(ARROW_FAILURE)).startswith("pyarrow.lib.ArrowInvalid: Can't view array of type struct")
    assert "Traceback" not in explain(Exception(ARROW_FAILURE))


def test_data_loss_names_topic_partition_offsets_and_both_remedies(tmp_path):
    sentence = explain(Exception(DATA_LOSS), consumer="parquet", topic="loss-topic", checkpoint=tmp_path / "cp")
    assert "topic 'loss-topic' partition 0" in sentence and "offsets from 100" in sentence
    assert "fail_on_data_loss = False" in sentence and f"delete the checkpoint {tmp_path / 'cp'}" in sentence
    assert "\n" not in sentence
    # what Kafka and the checkpoint say (every partition, exact ranges) wins over Spark's first failed task
    exact = data_loss_sentence(root_cause(Exception(DATA_LOSS)), "consumer 'c'", "t", None, {0: (100, 200), 2: (5, 9)})
    assert "topic 't' partition 0 offsets 100 to 199, partition 2 offsets 5 to 8;" in exact
    assert "give the consumer a new checkpoint" in exact


def test_the_innermost_java_cause_wins():
    text = ("org.apache.spark.SparkException: Job aborted.\n\tat a.b.C.d(C.java:1)\n"
            "Caused by: java.lang.IllegalStateException: outer\n"
            "Caused by: java.lang.ArithmeticException: / by zero\n\tat x.y.Z.z(Z.java:2)\n")
    assert explain(Exception(text)) == "java.lang.ArithmeticException: / by zero"


class Py4JJavaErrorLike(Exception):
    """What a Py4J failure looks like to reported_failures (module py4j.protocol)."""


Py4JJavaErrorLike.__module__ = "py4j.protocol"


def test_reported_failures_reduce_py4j_errors_and_write_the_trace(tmp_path):
    with pytest.raises(OutputError) as info:
        with reported_failures("consumer 'parquet'", tmp_path / "state"):
            raise Py4JJavaErrorLike(PROXY_FAILURE)
    message = str(info.value)
    assert message.startswith("Cannot write /tmp/out/metrics/_staging/batch=3")
    trace = Path(message.rsplit("(full trace: ", 1)[1].rstrip(")"))
    assert trace.is_file() and "PermissionError" in trace.read_text() and "runStream" in trace.read_text()
    with pytest.raises(ConsumerError, match=r"^Consumer 'parquet' failed: java.lang.ArithmeticException: / by zero"):
        with reported_failures("consumer 'parquet'"):
            raise Py4JJavaErrorLike("Job aborted.\nCaused by: java.lang.ArithmeticException: / by zero\n")
    with pytest.raises(KeyError):  # a plain Python bug outside Spark keeps its traceback
        with reported_failures("consumer 'parquet'"):
            raise KeyError("x")


def test_output_dir_that_is_a_regular_file_is_one_sentence(tmp_path):
    blocker = tmp_path / "out.txt"
    blocker.write_text("a file")
    settings = Settings.from_env({}, output_dir=blocker, state_dir=tmp_path / "state")
    with pytest.raises(OutputError, match=r"^PIPELINE_OUTPUT_DIR .*out.txt cannot be a directory: .*out.txt is a "
                                          r"regular file; point PIPELINE_OUTPUT_DIR at a directory"):
        check_output_dirs(settings)
    with pytest.raises(OutputError, match=r"is a regular file, not a directory"):
        with reported_failures("the pipeline"):
            (blocker / "metrics").mkdir(parents=True)  # NotADirectoryError
    check_output_dirs(settings.replace(output_dir=tmp_path / "fine" / "out"))  # missing is fine: created later


def test_an_unreachable_spark_master_is_named_at_once():
    port = free_port()
    started = time.monotonic()
    with pytest.raises(SparkUnavailableError, match=rf"^The Spark master spark://127.0.0.1:{port} does not accept "
                                                    r"connections .*PIPELINE_SPARK_MASTER"):
        check_master(f"spark://127.0.0.1:{port}")
    assert time.monotonic() - started < 5
    check_master("local[2]")  # not probed


# ------------------------------------------------------------------ bounds of numbers
@pytest.mark.parametrize("var, value, expected", [
    ("PIPELINE_API_DELAY", "inf", "expected a finite number"),
    ("PIPELINE_API_DELAY", "nan", "expected a finite number"),
    ("PIPELINE_API_DELAY", "1e10", "expected a number from 0 to 3600"),
    ("PIPELINE_TRIGGER_SECONDS", "1e12", "at most 86400"),
    ("PIPELINE_MAX_OFFSETS_PER_TRIGGER", str(2**40), "at most 2147483647"),
    ("PIPELINE_PRODUCER_LINGER_MS", str(2**31), "at most 2147483647"),
])
def test_every_number_is_bounded_when_settings_load(var, value, expected):
    with pytest.raises(SettingsError, match=rf"^{var}=.* is not valid; .*{expected}"):
        Settings.from_env({var: value})


@pytest.mark.parametrize("query, word", [("delay=1e10", "delay"), ("delay=3601", "delay"), ("speed=1e-9", "speed"),
                                         ("speed=1e300", "speed")])
def test_api_refuses_numbers_it_cannot_sleep_with_a_400(tmp_path, query, word):
    (tmp_path / "s.json").write_text('{"time": "2026-01-05T06:00:00Z", "v": 1}\n{"time": "2026-01-05T06:00:01Z"}\n')
    client = create_app(Settings.from_env({}), data_dir=tmp_path, delay=0).test_client()
    response = client.get(f"/stream_data_s?{query}")
    assert response.status_code == 400
    assert response.get_json()["error"].startswith(f"{word}=")
    assert client.get("/stream_data_s?delay=0.001").status_code == 200


def test_checkpoint_dir_empty_means_unset_and_dot_means_here(tmp_path):
    empty = Settings.from_env({"PIPELINE_CHECKPOINT_DIR": "", "PIPELINE_OUTPUT_DIR": str(tmp_path)})
    assert empty.checkpoint_dir is None and empty.checkpoint_root == tmp_path / "_checkpoints"
    dot = Settings.from_env({"PIPELINE_CHECKPOINT_DIR": ".", "PIPELINE_OUTPUT_DIR": str(tmp_path)})
    assert dot.checkpoint_root == Path(".")


def test_settings_command_shows_an_unset_checkpoint_dir_as_empty(monkeypatch, capsys):
    monkeypatch.delenv("PIPELINE_CHECKPOINT_DIR", raising=False)
    assert admin_command.main(["settings"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if "PIPELINE_CHECKPOINT_DIR" in ln)
    assert line.split()[1] == "Spark", line  # the value column is empty: the description follows
    assert "(default: empty)" in line


def test_a_bad_log_level_names_the_flag_as_typed(capsys):
    with pytest.raises(SystemExit) as info:
        admin_command.main(["--log-level", "verbose", "settings"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--log-level verbose is not a log level; use one of TRACE, DEBUG" in err
    assert "PIPELINE_LOG_LEVEL" not in err


@pytest.mark.parametrize("argv", [["create", "t", "--partitions", "0"], ["create", "t", "--partitions", "-3"],
                                  ["create", "t", "--replication-factor", "0"]])
def test_admin_create_refuses_zero_partitions_before_connecting(argv, capsys):
    with pytest.raises(SystemExit) as info:
        admin_command.main(argv)
    assert info.value.code == 2
    assert "out of range; use a whole number from 1 to" in capsys.readouterr().err


def test_create_topic_refuses_zero_partitions_without_a_broker():
    admin = KafkaAdmin(Settings.from_env({}), client=object())  # any network call would fail
    with pytest.raises(TopicError, match=r"needs at least 1 partition, not 0"):
        admin.create_topic("t", partitions=0)
    with pytest.raises(TopicError, match=r"replication factor of at least 1, not 0"):
        admin.create_topic("t", replication_factor=0)


# ------------------------------------------------------------------ a port that is not Kafka
class _Listener:
    """A TCP server on a free port that answers like HTTP (or never answers)."""

    def __init__(self, answer: bytes | None) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.answer = answer
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            if self.answer is not None:
                conn.recv(1024)
                conn.sendall(self.answer)

    def close(self) -> None:
        for conn in self.conns:
            conn.close()
        self.sock.close()


@pytest.mark.parametrize("answer, phrase", [
    (b"HTTP/1.1 400 Bad Request\r\n\r\n", "answered, but not in the Kafka protocol (it began with 'HTTP/1.1'"),
    (None, "accepted the connection but sent no Kafka answer within 1 s"),
])
def test_a_port_that_answers_but_is_not_kafka_fails_fast(answer, phrase):
    listener = _Listener(answer)
    try:
        servers = f"127.0.0.1:{listener.port}"
        assert phrase in not_kafka(servers, timeout=1.0)
        started = time.monotonic()
        admin = KafkaAdmin(Settings.from_env({"PIPELINE_KAFKA_BOOTSTRAP_SERVERS": servers}))
        with pytest.raises(KafkaUnavailableError, match=r"^The port answers but is not Kafka: 127.0.0.1:\d+ "):
            admin.list_topics()
        assert time.monotonic() - started < 10  # kafka-python alone waits its 30 s bootstrap timeout
        assert not kafka_answers(servers, timeout=1.0)
    finally:
        listener.close()


# ------------------------------------------------------------------ the producer shows the API's reason
class _FlaskSession:
    """A requests-like session over a Flask test client (what HttpStream needs)."""

    def __init__(self, app) -> None:
        self.client = app.test_client()

    def get(self, url, params=None, stream=False, timeout=None):
        response = self.client.get("/" + url.split("://", 1)[1].split("/", 1)[1], query_string=params)

        class Answer:
            status_code = response.status_code
            text = response.get_data(as_text=True)

            def iter_content(self, chunk_size=None):
                yield response.get_data()

            def close(self):
                response.close()
        return Answer()


def test_the_producer_error_carries_the_api_reason(tmp_path):
    # a bad line is served for the dead-letter topic; a file that is a broken JSON array is not served at all
    (tmp_path / "broken.json").write_text('[{"time": "2026-01-05T06:00:00Z", "v": 1},\n{"v": 2\n')
    app = create_app(Settings.from_env({}), data_dir=tmp_path, delay=0)
    answer = app.test_client().get("/stream_data_broken")
    assert answer.status_code == 503
    reason = answer.get_json()["error"]
    stream = NdjsonStream(_FlaskSession(app), "http://api.test/stream_data_broken", retries=1, backoff=0.01)
    with pytest.raises(StreamError) as info:
        list(stream.lines())
    message = str(info.value)
    assert "the API answered HTTP 503: " in message and reason[:60] in message
    assert "is the API running" not in message


# ------------------------------------------------------------------ names
@pytest.mark.parametrize("path, event_type", [("/purchase_a_spear", "purchase_spear"),
                                              ("/join_a_guild?guild=the-rangers", "join_guild"),
                                              ("/declare_a_war", "declare_war"),
                                              ("/declare_a_peace", "declare_peace")])
def test_the_source_projects_endpoint_names_answer(path, event_type):
    log = InMemoryEventLog()
    response = create_game_app(event_log=log).test_client().get(path, headers={"User-Agent": "p/1"})
    assert response.status_code == 200, response.get_json()
    assert log.events[-1]["event_type"] == event_type


def test_game_is_another_name_of_the_events_consumer(restore_consumer_registry):
    from apps.game_consumers import GameEventsConsumer
    from framework.consumer.base import CONSUMERS

    CONSUMERS.register(GameEventsConsumer.name, GameEventsConsumer)  # another test may have reset the registry

    assert CONSUMERS.get("game") is GameEventsConsumer and "game" in CONSUMERS
    assert "game" not in CONSUMERS.names()  # listed once, under its name
    assert GameEventsConsumer.routes["purchase_spear"] == "purchases"


def test_each_api_logs_under_its_own_label(tmp_path):
    from loguru import logger

    (tmp_path / "s.json").write_text('{"time": "2026-01-05T06:00:00Z"}\n')
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(m), format="{extra[component]} {message}", level="INFO")
    logger.enable("apps")
    try:
        apps = (create_app(Settings.from_env({}), data_dir=tmp_path), create_game_app(event_log=InMemoryEventLog()))
        for app in apps:
            serve_in_thread(app, "127.0.0.1", 0).stop()
    finally:
        logger.remove(sink)
    assert any(ln.startswith("streaming-api listening on http://127.0.0.1:") for ln in lines), lines
    assert any(ln.startswith("game-api listening on http://127.0.0.1:") for ln in lines), lines
    assert any(ln.startswith("game-api stopped") for ln in lines), lines


def test_admin_list_and_consume_fail_fast_when_the_broker_port_is_not_kafka(monkeypatch, tmp_path, capsys,
                                                                          restore_consumer_registry):
    from apps.consumers import ParquetConsumer
    from framework.commands import consume as consume_command
    from framework.consumer.base import CONSUMERS

    CONSUMERS.register(ParquetConsumer.name, ParquetConsumer)  # another test may have reset the registry

    listener = _Listener(b"SSH-2.0-OpenSSH_9.2\r\n")
    try:
        monkeypatch.setenv("PIPELINE_BROKER_PORT", str(listener.port))
        monkeypatch.setenv("PIPELINE_OUTPUT_DIR", str(tmp_path / "out"))
        monkeypatch.setenv("PIPELINE_STATE_DIR", str(tmp_path / "state"))
        for run in (lambda: admin_command.main(["list"]), lambda: consume_command.main(["parquet", "--bounded"])):
            started = time.monotonic()
            assert run() == 2
            assert time.monotonic() - started < 10
            err = capsys.readouterr().err.strip()
            assert err.startswith(f"error: The port answers but is not Kafka: 127.0.0.1:{listener.port} answered, "
                                  "but not in the Kafka protocol (it began with 'SSH-2.0-')"), err
            assert len(err.splitlines()) == 1
    finally:
        listener.close()
