"""The model in a child process (framework.sources.model_process): the same items as in-process, errors, stops."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import orjson
import pytest

from framework.errors import SimulationError
from framework.sources.model_process import ModelProcess, encoded_messages, model_reference
from framework.sources.simulation import decode_position, encode_position
from framework.testing.producer import InMemoryKafka
from tests.unit.process_models import PER_STEP, DrawModel, DrawSim, FailingModel, LongModel, PrintingModel


def feed_items(model, jobs, **kwargs):
    with ModelProcess(model, kwargs.get("runs", model.runs), kwargs.get("timesteps", model.timesteps),
                      kwargs.get("key_field")) as feed:
        return list(feed.messages(jobs))


def test_the_child_yields_exactly_the_in_process_items_also_from_a_position_inside_a_run():
    start = encode_position(2, 5, 2, 1)  # run 2 from timestep 5, substep 2, message 1
    jobs = [(1, 0), (2, start), (3, 0)]
    here = list(encoded_messages(DrawModel(), jobs, None))
    there = feed_items(DrawModel, jobs)
    assert there == here
    per_run = 8 * 2 * PER_STEP + 1  # + the bad message of timestep 2
    assert len(here) == 2 * per_run + sum(1 for run, p, *_ in here if run == 2)
    assert min(p for run, p, *_ in here if run == 2) == start and decode_position(start) == (2, 5, 2, 1)
    assert [p for _, p, *_ in there] == sorted(p for _, p, *_ in there)
    bad = [item for item in there if item[4] is not None]
    assert [(run, value, reason) for run, _, _, value, reason in bad] == [
        (1, b"2.5", "the message is a float, not bytes, str or dict"),
        (3, b"2.5", "the message is a float, not bytes, str or dict")]
    first = there[0]
    assert first[2] == b"k0" and orjson.loads(first[3])["t"] == 1


def test_what_a_model_prints_does_not_disturb_the_stream(capfd):
    assert feed_items(PrintingModel, [(1, 0)]) == list(encoded_messages(PrintingModel(), [(1, 0)], None))
    assert "transition 1 8 2" in capfd.readouterr().err


def test_a_raising_policy_in_the_child_gives_the_in_process_sentence_after_the_earlier_timesteps():
    with pytest.raises(SimulationError) as here:
        list(encoded_messages(FailingModel(), [(1, 0)], None))
    received = []
    with ModelProcess(FailingModel, 3, 8, None) as feed:
        with pytest.raises(SimulationError) as there:
            for item in feed.messages([(1, 0)]):
                received.append(item)
    assert str(there.value) == str(here.value)
    assert "Policy 'p_fail' of block 'fail' in FailingModel raised ZeroDivisionError: rate / 0 at run 1, " \
           "timestep 3" in str(there.value)
    assert {decode_position(item[1])[1] for item in received} == {1, 2}  # timesteps 1 and 2, nothing of 3


def test_a_killed_child_is_an_error_naming_its_exit_code():
    feed = ModelProcess(LongModel, 1, LongModel.timesteps, None).start()
    try:
        items = feed.messages([(1, 0)])
        next(items)
        os.kill(feed.pid, signal.SIGKILL)
        with pytest.raises(SimulationError, match=r"ended with exit code -9 before it finished; the messages "
                                                  r"acknowledged so far are kept"):
            for _ in items:
                pass
    finally:
        feed.close()


def test_should_stop_ends_the_stream_and_the_child():
    stop_after = 5000
    seen = []
    feed = ModelProcess(LongModel, 1, LongModel.timesteps, None).start()
    with feed:
        for item in feed.messages([(1, 0)], should_stop=lambda: len(seen) >= stop_after):
            seen.append(item)
    assert stop_after <= len(seen) < stop_after + 1024 * 2
    process = feed._process
    assert process is not None and process.poll() is not None  # ended and reaped, no zombie


def test_a_model_the_child_cannot_import_is_one_sentence():
    class Local(DrawModel):
        pass

    assert model_reference(Local) == "test_a_model_the_child_cannot_import_is_one_sentence.<locals>.Local is " \
                                     "defined inside a function"
    with pytest.raises(SimulationError, match="Local cannot run in a child process: .* define it at module level"):
        ModelProcess(Local, 1, 1, None)
    Gone = type("Gone", (DrawModel,), {"__module__": "tests.unit.no_such_module"})
    with pytest.raises(SimulationError, match=r"Gone cannot run in a child process: Gone is not what its module "
                                              r"'tests.unit.no_such_module' holds under that name"):
        feed_items(Gone, [(1, 0)])


# ----------------------------------------------------------------------------- the producer
def published(kafka):
    return [(m.topic, m.partition, m.position, m.key, m.value) for m in
            kafka.messages("draw") + kafka.messages("draw.dlq")]


@pytest.mark.parametrize("runs", [3, 1])
def test_the_producer_writes_the_same_records_with_the_model_in_a_child_or_in_process(runs):
    kafka_child, kafka_here = InMemoryKafka(), InMemoryKafka()
    child = DrawSim(runs=runs, model_process=True, **kafka_child.clients()).run()
    here = DrawSim(runs=runs, model_process=False, **kafka_here.clients()).run()
    assert published(kafka_child) == published(kafka_here)
    assert (child.sent, child.dead_lettered) == (here.sent, here.dead_lettered) == (runs * 8 * 2 * PER_STEP, runs)
    again = DrawSim(runs=runs, model_process=True, **kafka_child.clients()).run()
    assert (again.sent, again.dead_lettered) == (0, 0)


def test_the_setting_and_a_model_defined_in_a_function_keep_the_model_in_process(monkeypatch, caplog):
    from framework.settings import Settings

    monkeypatch.setenv("PIPELINE_SIMULATION_PROCESS", "true")
    assert DrawSim(**InMemoryKafka().clients()).model_process is True
    monkeypatch.delenv("PIPELINE_SIMULATION_PROCESS")
    assert Settings.from_env().simulation_process is False  # opt-in: the child imports the model's module again
    monkeypatch.setenv("PIPELINE_SIMULATION_PROCESS", "true")

    class Inner(DrawModel):
        pass

    class InnerSim(DrawSim):
        name = "unit-inner-sim"
        model = Inner

    spawned = []
    monkeypatch.setattr(ModelProcess, "start", lambda self: spawned.append(self) or self)
    kafka = InMemoryKafka()
    try:
        summary = InnerSim(runs=1, **kafka.clients()).run()
    finally:
        from framework.producer.base import PRODUCERS

        PRODUCERS.unregister("unit-inner-sim")
    assert summary.sent == 8 * 2 * PER_STEP and spawned == []


def test_a_script_without_a_main_guard_is_not_run_again_by_the_child(tmp_path):
    """The child imports the model's module, never the script: a script that runs a producer at import time
    (no ``if __name__ == "__main__"``) publishes once."""
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent("""
        import sys
        from framework.sources.model_process import ModelProcess
        from tests.unit.process_models import DrawModel
        with ModelProcess(DrawModel, 1, 2, None) as feed:
            print("items", len(list(feed.messages([(1, 0)]))))
    """))
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run([sys.executable, str(script)], cwd=root, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": root})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["items", str(2 * 2 * PER_STEP + 1)]  # + the bad message of timestep 2


def test_a_model_in_the_script_being_run_stays_in_process():
    Main = type("Main", (DrawModel,), {"__module__": "__main__"})
    assert "defined in the script being run" in model_reference(Main)
    assert model_reference(DrawModel) == ("tests.unit.process_models", "DrawModel")


def test_the_child_ends_when_its_publisher_is_killed(tmp_path):
    """SIGKILL of the publisher leaves no model process behind: its next write fails (broken pipe)."""
    script = tmp_path / "publisher.py"
    script.write_text(textwrap.dedent("""
        import sys, time
        from framework.sources.model_process import ModelProcess
        from tests.unit.process_models import SilentModel
        feed = ModelProcess(SilentModel, 1, SilentModel.timesteps, None).start()
        items = feed.messages([(1, 0)])
        next(items)
        print(feed.pid, flush=True)
        time.sleep(600)
    """))
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    publisher = subprocess.Popen([sys.executable, str(script)], cwd=root, stdout=subprocess.PIPE, text=True,
                                 env={**os.environ, "PYTHONPATH": root})
    try:
        child = int(publisher.stdout.readline())
        assert _alive(child)
        publisher.kill()
        publisher.wait(30)
        deadline = time.monotonic() + 30
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(child), f"the model process {child} outlived its publisher"
    finally:
        if publisher.poll() is None:
            publisher.kill()
            publisher.wait(30)


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, ended but not yet reaped by init, counts as ended)."""
    try:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_silent_model_stops_at_once_and_a_built_class_stays_in_process():
    from tests.unit.process_models import SilentModel

    stop = {"at": None}
    started = time.monotonic()
    with ModelProcess(SilentModel, 1, SilentModel.timesteps, None) as feed:
        items = []
        for item in feed.messages([(1, 0)], should_stop=lambda: time.monotonic() - started > 2.0):
            items.append(item)
        stop["at"] = time.monotonic() - started
    assert len(items) == 1 and stop["at"] < 10  # the model says nothing more for minutes
    Built = type("Built", (DrawModel,), {"__module__": "tests.unit.process_models"})
    assert "is not what its module 'tests.unit.process_models' holds" in model_reference(Built)


def test_a_model_module_that_starts_a_producer_at_import_fails_in_one_sentence_and_sends_nothing():
    from tests.unit.import_runs_model import ImportRunsModel

    with pytest.raises(SimulationError, match=r"could not import the model: ProducerError: .*run\(\) was called while "
                                              r"a simulation's model process imported the model's module"):
        feed_items(ImportRunsModel, [(1, 0)])
