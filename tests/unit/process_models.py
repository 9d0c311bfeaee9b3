"""Models at module level, so a child process can import them (framework.sources.model_process)."""
from __future__ import annotations

import sys

from framework.producer.simulation import SimulationProducerABC
from framework.sources.simulation import Message, SimulationModel

PER_STEP = 3


def p_draw(params, substep, state_history, previous_state):
    return {"draw": params["rng"].randrange(1000)}


def s_last(params, substep, state_history, previous_state, policy_input):
    return "last", policy_input["draw"]


def s_count(params, substep, state_history, previous_state, policy_input):
    return "count", previous_state["count"] + 1


class DrawModel(SimulationModel):
    """Two substeps, PER_STEP messages per transition; a float (a bad message) at timestep 2 of substep 1."""

    initial_state = {"count": 0, "last": -1}
    partial_state_update_blocks = [
        {"label": "draw", "policies": {"draw": p_draw}, "variables": {"last": s_last}},
        {"label": "count", "policies": {}, "variables": {"count": s_count}},
    ]
    timesteps = 8
    runs = 3
    seed = 3

    def messages(self, t):
        for i in range(PER_STEP):
            yield Message({"run": t.run, "t": t.timestep, "s": t.substep, "i": i, "last": t.state["last"]},
                          key=f"k{i}")
        if t.timestep == 2 and t.substep == 1:
            yield 2.5


class PrintingModel(DrawModel):
    """Prints on standard output in every transition (must not disturb the child's protocol)."""

    def messages(self, t):
        print("transition", t.run, t.timestep, t.substep)
        sys.stdout.flush()
        yield from super().messages(t)


def p_fail_at_3(params, substep, state_history, previous_state):
    if previous_state["count"] == 2:
        raise ZeroDivisionError("rate / 0")
    return {}


class FailingModel(DrawModel):
    """Its policy raises at timestep 3 of every run."""

    partial_state_update_blocks = [{"label": "fail", "policies": {"p_fail": p_fail_at_3},
                                    "variables": {"count": s_count}}]


class LongModel(DrawModel):
    """Many timesteps: the child cannot finish before a test stops or kills it."""

    timesteps = 200_000
    runs = 1


class DrawSim(SimulationProducerABC):
    name = "unit-draw-sim"
    model = DrawModel
    topic = "draw"
    partitions = 2


def p_slow(params, substep, state_history, previous_state):
    import time

    time.sleep(0.01)
    return {}


class SilentModel(DrawModel):
    """One message at timestep 1, then minutes of silence: the child has nothing to write."""

    partial_state_update_blocks = [{"label": "slow", "policies": {"slow": p_slow}, "variables": {"count": s_count}}]
    timesteps = 100_000
    runs = 1

    def messages(self, t):
        if t.timestep == 1:
            yield {"t": t.timestep}
