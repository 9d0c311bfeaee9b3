"""Simulation producers for the integration tests (imported by the commands with ``--module``, and by Spark
executors): a model with a fixed number of messages per transition, so every count is known in advance."""
from __future__ import annotations

from framework.producer.simulation import SimulationProducerABC
from framework.sources.simulation import Message, SimulationModel

PER_STEP = 4      # messages per transition
SUBSTEPS = 2


def p_draw(params, substep, state_history, previous_state):
    return {"draw": params["rng"].randrange(1_000_000)}


def s_last(params, substep, state_history, previous_state, policy_input):
    return "last", policy_input["draw"]


def s_steps(params, substep, state_history, previous_state, policy_input):
    return "steps", previous_state["steps"] + 1


class FixedModel(SimulationModel):
    """``PER_STEP`` keyed JSON messages per substep, two substeps per timestep."""

    initial_state = {"last": 0, "steps": 0}
    partial_state_update_blocks = [
        {"label": "draw", "policies": {"draw": p_draw}, "variables": {"last": s_last}},
        {"label": "count", "policies": {}, "variables": {"steps": s_steps}},
    ]
    timesteps = 150
    runs = 4
    seed = 5
    history = 1

    def messages(self, t):
        for i in range(PER_STEP):
            yield Message({"run": t.run, "t": t.timestep, "s": t.substep, "i": i, "last": t.state["last"]},
                          key=f"k{i}")


def expected_count(runs: int, timesteps: int = FixedModel.timesteps) -> int:
    return runs * timesteps * SUBSTEPS * PER_STEP


class SparkLocalSim(SimulationProducerABC):
    name = "it-sim-spark-local"
    model = FixedModel
    topic = "it-sim-spark-local"
    partitions = 3


class SparkClusterSim(SimulationProducerABC):
    name = "it-sim-spark-cluster"
    model = FixedModel
    topic = "it-sim-spark-cluster"
    partitions = 2


class KilledSim(SimulationProducerABC):
    name = "it-sim-killed"
    model = FixedModel
    topic = "it-sim-killed"
    partitions = 3
