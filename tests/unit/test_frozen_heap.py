"""frozen_heap(): the cyclic collector skips what was alive before a producer ran, and only while it runs."""
from __future__ import annotations

import gc
import threading

import pytest

from framework.producer.base import PRODUCERS, ProducerABC, frozen_heap
from framework.settings import Settings
from framework.testing.producer import FakeNdjsonSession, InMemoryKafka


@pytest.fixture(autouse=True)
def _thawed():
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_objects_alive_before_are_frozen_while_inside_and_thawed_after():
    keep = [[i] for i in range(1000)]  # tracked containers alive before
    with frozen_heap():
        assert gc.get_freeze_count() >= len(keep)
        cycle: list = []
        cycle.append(cycle)  # garbage made inside is still collected (it is not frozen)
        del cycle
        assert gc.collect() >= 1
    assert gc.get_freeze_count() == 0


def test_nested_and_concurrent_runs_thaw_only_when_the_last_one_ends():
    inside, release = threading.Event(), threading.Event()

    def other() -> None:
        with frozen_heap():
            inside.set()
            release.wait(10)

    t = threading.Thread(target=other)
    with frozen_heap():
        frozen = gc.get_freeze_count()
        made_after = [[i] for i in range(5000)]
        t.start()
        assert inside.wait(10)
        assert gc.get_freeze_count() < frozen + len(made_after)  # the second run did not freeze again
    assert gc.get_freeze_count() > 0  # the other run is still inside: still frozen
    release.set()
    t.join(10)
    assert gc.get_freeze_count() == 0


def test_a_heap_the_process_froze_itself_or_a_disabled_collector_is_left_alone():
    gc.freeze()
    mine = gc.get_freeze_count()
    with frozen_heap():
        pass
    assert gc.get_freeze_count() > mine // 2  # not thawed (frozen objects freed meanwhile may lower it)
    gc.unfreeze()
    gc.disable()
    try:
        with frozen_heap():
            assert gc.get_freeze_count() == 0
    finally:
        gc.enable()


def test_a_producer_run_freezes_during_the_run_and_thaws_after():
    seen = []
    kafka = InMemoryKafka()

    class Feed(ProducerABC):
        name = "unit-frozen-feed"
        endpoint = "/s"
        topic = "unit-frozen"

        def transform(self, record):
            seen.append(gc.get_freeze_count())
            return record

    try:
        session = FakeNdjsonSession([{"id": i} for i in range(3)])
        Feed(Settings.from_env(api_base_url="http://api.test"), session=session, **kafka.clients()).run()
    finally:
        PRODUCERS.unregister("unit-frozen-feed")
    assert len(seen) == 3 and all(n > 0 for n in seen)
    assert gc.get_freeze_count() == 0
    assert len(kafka.messages("unit-frozen")) == 3
