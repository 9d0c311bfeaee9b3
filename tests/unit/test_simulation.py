"""Simulation sources and SimulationProducerABC without a broker: determinism, positions, declarations, bad input."""
from __future__ import annotations

import orjson
import pytest

from apps.simulations import ChatModel, ChatSimProducer
from framework.errors import DeclarationError, ProducerError, SimulationError
from framework.producer.base import PRODUCERS
from framework.producer.simulation import SimulationProducerABC, partition_of_run
from framework.settings import Settings
from framework.sources.simulation import (MAX_INDEX, BadMessage, Message, SimulationModel, decode_position,
                                          encode_message, encode_position)
from framework.testing.producer import InMemoryKafka

PER_STEP = 3  # messages per transition of CounterModel


def p_tick(params, substep, state_history, previous_state):
    return {"tick": params["rng"].randrange(1000)}


def s_count(params, substep, state_history, previous_state, policy_input):
    return "count", previous_state["count"] + 1


def s_last(params, substep, state_history, previous_state, policy_input):
    return "last", policy_input["tick"]


class CounterModel(SimulationModel):
    """Two substeps per timestep, PER_STEP messages per transition: counts are exact by construction."""

    initial_state = {"count": 0, "last": -1}
    partial_state_update_blocks = [
        {"label": "tick", "policies": {"tick": p_tick}, "variables": {"last": s_last}},
        {"label": "count", "policies": {}, "variables": {"count": s_count}},
    ]
    params = {"unused": 1}
    timesteps = 6
    runs = 3
    seed = 11

    def messages(self, t):
        for i in range(PER_STEP):
            yield {"run": t.run, "timestep": t.timestep, "substep": t.substep, "i": i, "last": t.state["last"],
                   "count": t.state["count"]}


# ----------------------------------------------------------------------------- source
def test_same_seed_gives_the_same_messages_in_the_same_order_and_another_seed_does_not():
    first = list(ChatModel(runs=2, timesteps=60).simulate_all())
    again = list(ChatModel(runs=2, timesteps=60).simulate_all())
    assert first == again and len(first) > 100

    class OtherSeed(ChatModel):
        seed = 1

    assert list(OtherSeed(runs=2, timesteps=60).simulate_all()) != first


def test_runs_are_independent_of_each_other_and_of_the_order_they_are_simulated():
    model = ChatModel(runs=3, timesteps=40)
    forward = {r: list(model.simulate(r)) for r in (1, 2, 3)}
    backward = {r: list(ChatModel(runs=3, timesteps=40).simulate(r)) for r in (3, 2, 1)}
    assert forward == backward
    assert forward[1] != forward[2]


def test_positions_encode_run_timestep_substep_index_and_increase():
    assert decode_position(encode_position(7, 123456, 3, 65535)) == (7, 123456, 3, 65535)
    assert encode_position(1, 2, 1, 0) > encode_position(1, 1, 2, MAX_INDEX)
    out = list(CounterModel().simulate_all())
    positions = [p for p, _ in out]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    assert len(out) == 3 * 6 * 2 * PER_STEP  # runs x timesteps x substeps x messages per transition
    for position, item in out:
        run, timestep, substep, index = decode_position(position)
        assert (item["run"], item["timestep"], item["substep"], item["i"]) == (run, timestep, substep, index)


def test_simulate_from_a_position_yields_exactly_the_tail():
    model = CounterModel()
    whole = list(model.simulate(2))
    cut = whole[17][0]
    assert list(CounterModel().simulate(2, start=cut)) == whole[17:]
    assert list(CounterModel().simulate(2, start=encode_position(3, 0, 0, 0))) == []


def test_state_and_signals_reach_the_message_function():
    out = [item for _, item in CounterModel().simulate(1)]
    counts = [m["count"] for m in out if m["substep"] == 2 and m["i"] == 0]
    assert counts == [1, 2, 3, 4, 5, 6]  # the state after each timestep's second substep


def test_a_raising_policy_stops_the_run_naming_policy_block_and_timestep_and_nothing_of_that_timestep_is_yielded():
    def p_boom(params, substep, state_history, previous_state):
        if previous_state["count"] >= 3:
            return {"x": params["missing"]}
        return {"x": 0}

    class Broken(CounterModel):
        partial_state_update_blocks = [{"label": "boom", "policies": {"boom": p_boom},
                                        "variables": {"count": s_count}}]

        def messages(self, t):
            yield {"timestep": t.timestep}

    seen = []
    with pytest.raises(SimulationError) as info:
        for _, item in Broken().simulate(1):
            seen.append(item["timestep"])
    text = str(info.value)
    assert "Policy 'boom' of block 'boom'" in text and "KeyError" in text and "'missing'" in text
    assert "run 1, timestep 4, substep 1" in text
    assert seen == [1, 2, 3]


def test_a_state_update_function_returning_another_variable_is_named():
    def s_wrong(params, substep, state_history, previous_state, policy_input):
        return "cout", 1

    class Wrong(CounterModel):
        partial_state_update_blocks = [{"policies": {}, "variables": {"count": s_wrong}}]

    with pytest.raises(SimulationError, match=r"State-update function 's_wrong' of block 'block 1'.*'count'"):
        list(Wrong().simulate(1))


@pytest.mark.parametrize("body, match", [
    ({"partial_state_update_blocks": [{"policy": {}, "variables": {}}]}, "unknown cadCAD key 'policy'"),
    ({"partial_state_update_blocks": [{"variables": {"nope": s_count}}]}, "updates 'nope', which is not in"),
    ({"partial_state_update_blocks": [{"policies": {"p": lambda a, b: {}}}]}, "cannot be called with cadCAD's 4"),
    ({"params": {"rng": 1}}, "reserved name 'rng'"),
    ({"params": {"rate": [0.1, 0.2]}}, "sweeps 'rate'"),
    ({"timesteps": 0}, "timesteps must be a whole number"),
    ({"initial_state": {}}, "initial_state must be a non-empty dict"),
    ({"initial_state": {"run": 0}}, "bookkeeping name 'run'"),
])
def test_declaration_errors_name_the_class_and_the_attribute(body, match):
    with pytest.raises(DeclarationError, match=match):
        type("BadModel", (CounterModel,), body)


def test_a_model_without_messages_is_refused():
    with pytest.raises(DeclarationError, match="must define `def messages"):
        type("Silent", (SimulationModel,), {"initial_state": {"a": 1}, "timesteps": 1,
                                            "partial_state_update_blocks": [{"variables": {"a": s_count}}]})


def test_a_model_without_params_runs():
    class NoParams(CounterModel):
        params = {}
        partial_state_update_blocks = [{"variables": {"count": s_count}}]

        def messages(self, t):
            yield str(t.state["count"])

    assert [item for _, item in NoParams(runs=1, timesteps=3).simulate(1)] == ["1", "2", "3"]


def test_legacy_block_keys_are_accepted_like_cadcad_does():
    class Legacy(CounterModel):
        partial_state_update_blocks = {"only": {"behaviors": {}, "states": {"count": s_count}}}

        def messages(self, t):
            yield f"{t.block}:{t.state['count']}"

    assert [item for _, item in Legacy(runs=1, timesteps=2).simulate(1)] == ["only:1", "only:2"]


def test_encode_message_accepts_bytes_str_dict_and_keys_and_refuses_the_rest():
    assert encode_message(b"x") == (None, b"x")
    assert encode_message("é") == (None, "é".encode())
    assert encode_message({"room": "r1", "n": 1}, key_field="room") == (b"r1", b'{"room":"r1","n":1}')
    assert encode_message(Message({"n": 1}, key=7)) == (b"7", b'{"n":1}')
    for bad, reason in ((3.5, "a float, not bytes, str or dict"), (("k", "v"), "Message(value, key=...)"),
                        ({"room": "r", "n": object()}, "cannot be written as JSON"),
                        (Message("v", key=1.5), "key is a float"), ({"n": 1}, "no 'room' field")):
        with pytest.raises(BadMessage, match=reason.replace("(", r"\(").replace(")", r"\)")):
            encode_message(bad, key_field="room")


# ----------------------------------------------------------------------------- producer
class CounterSim(SimulationProducerABC):
    name = "unit-counter-sim"
    model = CounterModel
    topic = "counter"
    partitions = 2


@pytest.fixture
def settings():
    return Settings.from_env()


def test_producer_publishes_every_message_once_partitioned_by_run_and_resumes_to_nothing(settings):
    kafka = InMemoryKafka()
    summary = CounterSim(settings, **kafka.clients()).run()
    expected = list(CounterModel().simulate_all())
    assert summary.sent == len(expected) == 3 * 6 * 2 * PER_STEP
    for p in (0, 1):
        log = kafka.logs[("counter", p)]
        runs = {orjson.loads(m.value)["run"] for m in log}
        assert runs == {r for r in (1, 2, 3) if partition_of_run(r, 2) == p}
        assert [m.position for m in log] == sorted(m.position for m in log)
    assert sorted((m.position, orjson.loads(m.value)) for m in kafka.messages("counter")) == expected
    again = CounterSim(settings, **kafka.clients()).run()
    assert again.sent == 0 and len(kafka.messages("counter")) == len(expected)


def test_producer_resumes_after_a_failure_mid_run_without_loss_or_duplicate(settings):
    kafka = InMemoryKafka()
    calls = {"n": 0}

    def fail_once(message):
        calls["n"] += 1
        return RuntimeError("broker gone") if calls["n"] == 40 else None

    first = CounterSim(settings.replace(producer_retries=1, producer_retry_backoff=0.01),
                       producer=kafka.producer(fail=fail_once), admin=kafka.clients()["admin"],
                       consumer_factory=kafka.clients()["consumer_factory"])
    with pytest.raises(ProducerError, match="broker gone"):
        first.run()
    stored = len(kafka.messages("counter"))
    assert 0 < stored < 108
    second = CounterSim(settings, **kafka.clients()).run()
    assert sorted(m.position for m in kafka.messages("counter")) == [p for p, _ in CounterModel().simulate_all()]
    assert second.sent == 108 - stored


def test_bad_messages_go_to_the_dead_letter_partition_of_their_run_with_the_reason(settings):
    class Mixed(CounterModel):
        def messages(self, t):
            yield {"ok": t.timestep}
            if t.timestep == 2 and t.substep == 1:
                yield 3.5

    class MixedSim(CounterSim):
        name = "unit-mixed-sim"
        model = Mixed

    kafka = InMemoryKafka()
    summary = MixedSim(settings, runs=2, **kafka.clients()).run()
    assert (summary.sent, summary.dead_lettered) == (2 * 6 * 2, 2)
    dead = kafka.messages("counter.dlq")
    assert [m.partition for m in dead] == [0, 1] and dead[0].value == b"3.5"
    assert dead[0].header("dlq-reason") == b"the message is a float, not bytes, str or dict (run 1, timestep 2, " \
                                           b"substep 1, message 1)"
    assert MixedSim(settings, runs=2, **kafka.clients()).run().dead_lettered == 0
    PRODUCERS.unregister("unit-mixed-sim")


def test_a_producer_owning_one_partition_publishes_only_its_runs(settings):
    kafka = InMemoryKafka()
    summary = CounterSim(settings, groups=[1], **kafka.clients()).run()
    assert {orjson.loads(m.value)["run"] for m in kafka.messages("counter")} == {2}
    assert summary.sent == 6 * 2 * PER_STEP
    rest = CounterSim(settings, **kafka.clients()).run()
    assert rest.sent == 2 * 6 * 2 * PER_STEP
    assert rest.skipped_existing <= 1  # run 2's last message: the watermark read back lags the tail by one
    assert len(kafka.messages("counter")) == 3 * 6 * 2 * PER_STEP


def test_a_failing_model_stops_the_producer_and_counts_only_acknowledged_messages(settings):
    def p_fail(params, substep, state_history, previous_state):
        if previous_state["count"] == 2:
            raise ValueError("bad rate")
        return {}

    class Failing(CounterModel):
        partial_state_update_blocks = [{"label": "fail", "policies": {"p_fail": p_fail},
                                        "variables": {"count": s_count}}]

    class FailingSim(CounterSim):
        name = "unit-failing-sim"
        model = Failing

    kafka = InMemoryKafka()
    producer = FailingSim(settings, **kafka.clients())
    with pytest.raises(SimulationError, match=r"Policy 'p_fail' of block 'fail' .* ValueError: bad rate at run 1, "
                                              r"timestep 3"):
        producer.run()
    assert producer.summary.sent == len(kafka.messages("counter")) == 2 * PER_STEP
    PRODUCERS.unregister("unit-failing-sim")


def test_producer_declaration_checks():
    with pytest.raises(DeclarationError, match="model must be a SimulationModel subclass"):
        type("NoModel", (SimulationProducerABC,), {"name": "x", "topic": "x", "model": dict})
    with pytest.raises(DeclarationError, match="overrides transform"):
        type("Overrides", (SimulationProducerABC,), {"name": "x", "topic": "x", "model": CounterModel,
                                                     "transform": lambda self, r: r})
    assert PRODUCERS.get("chat-sim") is ChatSimProducer
    assert "ChatModel (4 runs x 500 timesteps" in ChatSimProducer.source_description()


def test_command_lists_simulations_and_keeps_spark_and_runs_for_them(capsys):
    from framework.commands.produce import main as produce_main

    assert produce_main(["--list"]) == 0
    out = capsys.readouterr().out
    assert "chat-sim         cadCAD model ChatModel (4 runs x 500 timesteps, seed 2026) -> chat" in out
    assert produce_main(["metrics", "--spark"]) == 2
    assert "--spark and --runs apply to simulation producers only, and 'metrics' reads an HTTP stream" in \
        capsys.readouterr().err
    with pytest.raises(SystemExit) as info:  # refused by the parser, before anything starts
        produce_main(["chat-sim", "--runs", "0"])
    assert info.value.code == 2
    assert "argument --runs: 0 is out of range; use a whole number from 1 to" in capsys.readouterr().err
