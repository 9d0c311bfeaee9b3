"""The shipped simulation: users entering and leaving chat rooms and sending messages (``chat-sim``).

    python cmd/produce_cmd.py chat-sim                  # 4 runs x 500 timesteps into topic "chat"
    python cmd/produce_cmd.py chat-sim --spark --runs 8 # the runs published by Spark tasks

Each timestep has two substeps (cadCAD partial state-update blocks):

1. ``presence``: every user outside a room enters a random room with probability
   ``p_enter``; every user in a room leaves it with probability ``p_leave``;
2. ``chat``: every user in a room sends one message with probability ``p_send``.

Messages (JSON, keyed by room): ``{"type": "enter" | "leave", "run", "timestep",
"user", "room"}`` for the presence changes and ``{"type": "message", "run",
"timestep", "user", "room", "text"}`` for the chat. With the default parameters a
timestep has about 12 messages of about 100 bytes.
"""
from __future__ import annotations

from framework.producer.simulation import SimulationProducerABC
from framework.sources.simulation import Message, SimulationModel, Transition

WORDS = ("hello", "kafka", "spark", "stream", "table", "offset", "batch", "topic", "lag", "commit", "partition",
         "replica", "ok", "thanks", "see", "you", "later", "what", "about", "the", "new", "schema")


# ----------------------------------------------------------------------------- policies
def p_presence(params, substep, state_history, previous_state):
    """Who enters which room and who leaves (``params["rng"]`` is the run's seeded generator)."""
    rng = params["rng"]
    where = previous_state["where"]
    enters, leaves = [], []
    for user, room in enumerate(where):
        if room < 0:
            if rng.random() < params["p_enter"]:
                enters.append((user, rng.randrange(params["rooms"])))
        elif rng.random() < params["p_leave"]:
            leaves.append((user, room))
    return {"enters": enters, "leaves": leaves}


def p_chat(params, substep, state_history, previous_state):
    """One message from each user in a room, with probability ``p_send``."""
    rng = params["rng"]
    said = []
    for user, room in enumerate(previous_state["where"]):
        if room >= 0 and rng.random() < params["p_send"]:
            said.append((user, room, " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 8)))))
    return {"said": said}


# ----------------------------------------------------------------------------- state-update functions
def s_where(params, substep, state_history, previous_state, policy_input):
    where = list(previous_state["where"])
    for user, room in policy_input["enters"]:
        where[user] = room
    for user, _ in policy_input["leaves"]:
        where[user] = -1
    return "where", tuple(where)


def s_sent(params, substep, state_history, previous_state, policy_input):
    return "sent", previous_state["sent"] + len(policy_input["said"])


class ChatModel(SimulationModel):
    """Users (``where[user]`` = their room, -1 outside) entering, leaving and chatting."""

    initial_state = {"where": (-1,) * 40, "sent": 0}
    partial_state_update_blocks = [
        {"label": "presence", "policies": {"presence": p_presence}, "variables": {"where": s_where}},
        {"label": "chat", "policies": {"chat": p_chat}, "variables": {"sent": s_sent}},
    ]
    params = {"rooms": 5, "p_enter": 0.2, "p_leave": 0.05, "p_send": 0.3}
    timesteps = 500
    runs = 4
    seed = 2026
    history = 1          # no function reads older states: keep memory flat over long runs
    deepcopy = False     # states are immutable (tuples, ints): cadCAD's shallow copy is enough

    def messages(self, t: Transition):
        if t.block == "presence":
            for user, room in t.signals["enters"]:
                yield Message({"type": "enter", "run": t.run, "timestep": t.timestep, "user": f"u{user}",
                               "room": f"room-{room}"}, key=f"room-{room}")
            for user, room in t.signals["leaves"]:
                yield Message({"type": "leave", "run": t.run, "timestep": t.timestep, "user": f"u{user}",
                               "room": f"room-{room}"}, key=f"room-{room}")
        else:
            for user, room, text in t.signals["said"]:
                yield Message({"type": "message", "run": t.run, "timestep": t.timestep, "user": f"u{user}",
                               "room": f"room-{room}", "text": text}, key=f"room-{room}")


class ChatSimProducer(SimulationProducerABC):
    """``chat-sim``: the chat model into topic ``chat``, one partition per group of runs."""

    name = "chat-sim"
    model = ChatModel
    topic = "chat"
    partitions = 4
