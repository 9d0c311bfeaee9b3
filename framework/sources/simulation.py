"""A cadCAD model as a message source: deterministic by seed, every message at a stable position.

A user declares a model in cadCAD's vocabulary (initial state, partial
state-update blocks of policies and state-update functions, timesteps, runs,
params) and one function from each *state transition* (one substep) to zero or
more messages::

    def p_arrivals(params, substep, state_history, previous_state):
        return {"arrived": params["rng"].random() < params["rate"]}

    def s_queue(params, substep, state_history, previous_state, policy_input):
        return "queue", previous_state["queue"] + policy_input["arrived"]

    class QueueModel(SimulationModel):
        initial_state = {"queue": 0}
        partial_state_update_blocks = [{"label": "arrivals", "policies": {"arrivals": p_arrivals},
                                        "variables": {"queue": s_queue}}]
        params = {"rate": 0.3}
        timesteps = 1000
        runs = 4
        seed = 7

        def messages(self, t: Transition):
            if t.signals["arrived"]:
                yield Message({"run": t.run, "timestep": t.timestep, "queue": t.state["queue"]}, key=str(t.run))

    for position, message in QueueModel().simulate(run=1):
        ...

**Determinism.** Run ``r`` (1-based, as cadCAD numbers runs) draws its randomness
from ``params["rng"]``, a :class:`random.Random` seeded with ``f"{seed}/{r}"``
(string seeds are hashed with SHA-512, so every process and machine gets the
same sequence). Nothing else is random: the same model, seed and run give the
same messages in the same order, so a message's *position* is stable:
``(run, timestep, substep, index)`` packed into one integer by
:func:`encode_position` (``index`` counts the messages of one transition). Model
functions must use ``params["rng"]`` (not the ``random`` module, whose global
state other threads share) and must not read the clock.

**Engine.** The declaration is checked with cadCAD 0.5's own ``config_sim`` and its
``Processor`` turns the blocks into the engine's configuration; each timestep runs
through cadCAD's ``engine.simulation.Executor.state_update_pipeline`` (policies,
aggregation with ``policy_ops``, state-update functions, the per-substep state
copy). cadCAD's top-level ``Executor.execute`` is not used because it returns the
whole history only at the end of every run (memory grows with timesteps x
substeps and nothing can be published before the end), prints to stdout, and runs
several configurations in a ``pathos`` process pool; here one run is stepped one
timestep at a time, its messages are published as they come, and the history
kept for the functions is bounded by ``history`` (None keeps all, like cadCAD).

**Errors.** A policy or state-update function that raises stops the run with
:class:`~framework.errors.SimulationError` naming the function, its block, the
run, timestep and substep; no message of that timestep has been yielded (a
timestep's messages are yielded only after all its substeps ran). A declaration
error (unknown block key, a state-update function for an undeclared variable,
a function with the wrong number of arguments, ...) raises
:class:`~framework.errors.DeclarationError` when the class body runs.
"""
from __future__ import annotations

import inspect
import random
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Iterable, Iterator, Mapping, NamedTuple, NoReturn, Sequence

import orjson

from framework.errors import DeclarationError, SimulationError

__all__ = ["Message", "SimulationModel", "Transition", "BadMessage", "encode_message", "encode_position",
           "decode_position", "MAX_RUNS", "MAX_TIMESTEPS"]

RUN_BITS, TIMESTEP_BITS, SUBSTEP_BITS, INDEX_BITS = 15, 24, 8, 16
MAX_RUNS = (1 << RUN_BITS) - 1              # 32767 runs
MAX_TIMESTEPS = (1 << TIMESTEP_BITS) - 1    # 16.7 million timesteps per run
MAX_SUBSTEPS = (1 << SUBSTEP_BITS) - 1      # 255 partial state-update blocks
MAX_INDEX = (1 << INDEX_BITS) - 1           # 65535 messages per transition
RUN_SHIFT = TIMESTEP_BITS + SUBSTEP_BITS + INDEX_BITS
BLOCK_KEYS = ("label", "policies", "variables")
LEGACY_KEYS = {"behaviors": "policies", "states": "variables"}  # cadCAD's old names, accepted like cadCAD does
RNG_PARAM = "rng"


def encode_position(run: int, timestep: int, substep: int, index: int) -> int:
    """One integer, increasing in (run, timestep, substep, index) order: the message's source position."""
    return (((run << TIMESTEP_BITS | timestep) << SUBSTEP_BITS | substep) << INDEX_BITS) | index


def decode_position(position: int) -> tuple[int, int, int, int]:
    """``(run, timestep, substep, index)`` of a position made by :func:`encode_position`."""
    index = position & MAX_INDEX
    substep = (position >> INDEX_BITS) & MAX_SUBSTEPS
    timestep = (position >> (INDEX_BITS + SUBSTEP_BITS)) & MAX_TIMESTEPS
    return position >> RUN_SHIFT, timestep, substep, index


def run_range(run: int) -> tuple[int, int]:
    """The first and last position a run can have."""
    return encode_position(run, 0, 0, 0), encode_position(run + 1, 0, 0, 0) - 1


class Message(NamedTuple):
    """One message of a transition: ``value`` (bytes, str or a JSON-able dict) and an optional ``key``."""

    value: Any
    key: Any = None


@dataclass(frozen=True)
class Transition:
    """One substep of one timestep of one run: the state before, the state after, the policies' signals.

    ``state`` and ``previous`` hold cadCAD's bookkeeping fields too (``run``,
    ``timestep``, ``substep``, ``simulation``, ``subset``). ``signals`` is the
    aggregated policy input the state-update functions received.
    """

    run: int
    timestep: int
    substep: int
    block: str
    params: Mapping[str, Any]
    previous: Mapping[str, Any]
    state: Mapping[str, Any]
    signals: Mapping[str, Any]


class BadMessage(Exception):
    """A message that cannot be published (the reason is the message); it goes to the dead-letter topic."""


def encode_message(item: Any, key_field: str | None = None) -> tuple[bytes | None, bytes]:
    """``(key, value)`` bytes of one item returned by :meth:`SimulationModel.messages`.

    A value is bytes (as is), str (UTF-8) or a dict (compact JSON, orjson). The key
    is ``Message.key`` (bytes, or str/int as UTF-8 text), else ``value[key_field]``
    for a dict value, else None. Raises :class:`BadMessage` with the reason.
    """
    key: Any = None
    if isinstance(item, Message):
        item, key = item.value, item.key
    if isinstance(item, bytes):
        value = item
    elif isinstance(item, str):
        value = item.encode()
    elif isinstance(item, dict):
        if key is None and key_field is not None:
            key = item.get(key_field)
            if key is None:
                raise BadMessage(f"the message has no {key_field!r} field, the producer's key_field")
        try:
            value = orjson.dumps(item)
        except TypeError as exc:
            raise BadMessage(f"the message cannot be written as JSON ({exc})") from None
    else:
        hint = " (return Message(value, key=...) for a keyed message)" if isinstance(item, tuple) else ""
        raise BadMessage(f"the message is a {type(item).__name__}, not bytes, str or dict{hint}")
    if key is None or isinstance(key, bytes):
        return key, value
    if isinstance(key, (str, int)) and not isinstance(key, bool):
        return str(key).encode(), value
    raise BadMessage(f"the message key is a {type(key).__name__}, not bytes, str or int")


class SimulationModel:
    """Base class of a cadCAD message model; see the module docstring for a complete example.

    Class attributes (checked when the class body runs):

    - ``initial_state``: {state variable: value};
    - ``partial_state_update_blocks``: a list of blocks ``{"label": str (optional),
      "policies": {name: f(params, substep, state_history, previous_state) -> dict},
      "variables": {variable: f(params, substep, state_history, previous_state, policy_input)
      -> (variable, value)}}`` (or cadCAD's dict form ``{label: block}``);
    - ``timesteps`` (T), ``runs`` (N, default 1), ``params`` (M: one value per name; the
      key ``"rng"`` is reserved for the run's random generator), ``seed`` (default 0);
    - ``policy_ops``: cadCAD's aggregation of the same signal from several policies
      (default: addition);
    - ``deepcopy``: False turns on cadCAD's ``deepcopy_off`` (a shallow copy of the state
      per substep: faster, but functions must then never change a state value in place);
    - ``history``: timesteps of state history kept for the functions (None: all, as cadCAD).

    Override :meth:`messages` (the one method): transition -> zero or more messages.
    """

    abstract: ClassVar[bool] = True
    initial_state: ClassVar[Mapping[str, Any]]
    partial_state_update_blocks: ClassVar[Sequence[Mapping[str, Any]] | Mapping[str, Mapping[str, Any]]]
    # timesteps and runs are declared on the class and may be overridden per instance (``__init__``)
    timesteps: int
    runs: int = 1
    params: ClassVar[Mapping[str, Any]] = {}
    seed: ClassVar[int | str] = 0
    policy_ops: ClassVar[Sequence[Callable[[Any, Any], Any]]] = (lambda a, b: a + b,)
    deepcopy: ClassVar[bool] = True
    history: ClassVar[int | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("abstract", False):
            return
        check_model(cls)

    def __init__(self, runs: int | None = None, timesteps: int | None = None) -> None:
        where = type(self).__name__
        self.runs = _count(runs if runs is not None else type(self).runs, "runs", where, MAX_RUNS)
        self.timesteps = _count(timesteps if timesteps is not None else type(self).timesteps, "timesteps",
                                where, MAX_TIMESTEPS)
        self._engine: _Engine | None = None

    def messages(self, t: Transition) -> Iterable[Any]:
        """The messages of one transition: values (bytes, str, dict) or :class:`Message` objects."""
        raise NotImplementedError(f"{type(self).__name__} must define messages(self, t: Transition).")

    # ------------------------------------------------------------------ running
    def run_rng(self, run: int) -> random.Random:
        """The random generator of ``run``: ``random.Random(f"{seed}/{run}")``."""
        return random.Random(f"{self.seed}/{run}")

    def simulate(self, run: int, start: int = 0,
                 should_stop: Callable[[], bool] | None = None) -> Iterator[tuple[int, Any]]:
        """Yield ``(position, item)`` for every message of ``run`` at a position ``>= start``, in order.

        Transitions whose positions all lie before ``start`` are simulated (the
        state must be rebuilt) but :meth:`messages` is not called for them. A
        timestep's messages are yielded after its last substep ran.
        ``should_stop()`` is asked between timesteps. Raises
        :class:`~framework.errors.SimulationError` when a model function fails.
        """
        if not 1 <= run <= self.runs:
            raise SimulationError(f"Run {run} is not a run of {type(self).__name__}; runs are 1..{self.runs}.")
        first, last = run_range(run)
        if last < start:
            return
        engine = self._engine = self._engine or _Engine(self)
        params = {**type(self).params, RNG_PARAM: self.run_rng(run)}
        for timestep, transitions in engine.timesteps(run, params, self.timesteps, should_stop):
            if encode_position(run, timestep, MAX_SUBSTEPS, MAX_INDEX) < start:
                continue
            out: list[tuple[int, Any]] = []
            for t in transitions:
                base = encode_position(run, timestep, t.substep, 0)
                if base + MAX_INDEX < start:
                    continue
                try:
                    items = list(self.messages(t) or ())
                except Exception as exc:
                    raise SimulationError(
                        f"{type(self).__name__}.messages() raised {type(exc).__name__}: {exc} at run {run}, "
                        f"timestep {timestep}, substep {t.substep} (block {t.block!r}); fix it, a restart "
                        "resumes after the last message Kafka acknowledged.") from exc
                if len(items) > MAX_INDEX + 1:
                    raise SimulationError(
                        f"{type(self).__name__}.messages() returned {len(items)} messages for run {run}, timestep "
                        f"{timestep}, substep {t.substep}; at most {MAX_INDEX + 1} per transition are allowed.")
                out.extend((base + i, item) for i, item in enumerate(items) if base + i >= start)
            yield from out

    def simulate_all(self, runs: Iterable[int] | None = None) -> Iterator[tuple[int, Any]]:
        """Every message of ``runs`` (default: all), in position order (no broker involved)."""
        for run in runs if runs is not None else range(1, self.runs + 1):
            yield from self.simulate(run)


class _ModelFunctionFailed(Exception):
    """Raised by a wrapped model function; deliberately not a ValueError/TypeError (cadCAD rewords those)."""

    def __init__(self, kind: str, name: str, block: str, substep: int, cause: BaseException | str) -> None:
        super().__init__(kind, name, block, substep, cause)
        self.kind, self.name, self.block, self.substep, self.cause = kind, name, block, substep, cause


class _Engine:
    """cadCAD's configuration and per-timestep execution for one model (built on first use)."""

    def __init__(self, model: SimulationModel) -> None:
        from cadCAD.configuration import Processor  # local: cadCAD imports pandas (seconds)
        from cadCAD.configuration.utils import config_sim
        from cadCAD.engine.simulation import Executor

        cls = type(model)
        try:  # cadCAD's own checks of N, T and M
            m = {"M": dict(cls.params)} if cls.params else {}
            config_sim({"N": model.runs, "T": range(model.timesteps), **m})
        except (KeyError, ValueError, Exception) as exc:  # noqa: BLE001 - cadCAD raises bare Exception
            raise DeclarationError(f"{cls.__name__}: cadCAD refused the simulation configuration: {exc}.") from None
        self.model = model
        self.blocks = _blocks(cls)
        self.labels = [label for label, _ in self.blocks]
        wrapped = [{"policies": {n: _wrap_policy(f, n, label, i) for n, f in block.get("policies", {}).items()},
                    "variables": {v: _wrap_update(f, v, label, i) for v, f in block.get("variables", {}).items()}}
                   for i, (label, block) in enumerate(self.blocks, start=1)]
        self.configs = Processor().generate_config(dict(cls.initial_state), wrapped, [])
        self.signals: list[Mapping[str, Any]] = []
        self.executor = Executor(list(cls.policy_ops), policy_update_exception=self._capture)
        self.additional = None if cls.deepcopy else {"deepcopy_off": True}
        self.history = cls.history

    def _capture(self, policy_input: Mapping[str, Any]) -> Mapping[str, Any]:
        self.signals.append(policy_input)
        return policy_input

    def timesteps(self, run: int, params: dict[str, Any], timesteps: int, should_stop: Callable[[], bool] | None
                  ) -> Iterator[tuple[int, list[Transition]]]:
        from copy import deepcopy

        genesis = dict(deepcopy(dict(type(self.model).initial_state)))
        genesis.update(simulation=0, subset=0, run=run, substep=0, timestep=0)
        history: list[list[dict[str, Any]]] = [[genesis]]
        previous = genesis
        for timestep in range(1, timesteps + 1):
            if should_stop is not None and should_stop():
                return
            self.signals = []
            try:
                states = self.executor.state_update_pipeline(params, history, self.configs, {}, timestep, run,
                                                             None if self.additional is None else dict(self.additional))
            except _ModelFunctionFailed as exc:
                raise _failure(type(self.model).__name__, exc, run, timestep) from None
            except ValueError as exc:  # cadCAD's wording for a state-update function that returned no tuple
                raise SimulationError(f"{type(self.model).__name__}: {exc} at run {run}, timestep {timestep}; "
                                      "every state-update function returns (variable, value).") from None
            substeps = states[1:]
            transitions: list[Transition] = []
            for i, state in enumerate(substeps):
                signals = {k: v for k, v in self.signals[i].items() if k != "identity"} if i < len(self.signals) else {}
                transitions.append(Transition(run=run, timestep=timestep, substep=i + 1, block=self.labels[i],
                                              params=params, previous=previous, state=state, signals=signals))
                previous = state
            history.append(substeps)
            if self.history is not None and len(history) > self.history + 1:
                del history[1:len(history) - self.history]  # keep the genesis state and the last `history`
            yield timestep, transitions


def _failure(model: str, exc: _ModelFunctionFailed, run: int, timestep: int) -> SimulationError:
    cause = exc.cause
    what = (f"raised {type(cause).__name__}: {cause}" if isinstance(cause, BaseException) else cause)
    kind = "Policy" if exc.kind == "policy" else "State-update function"
    return SimulationError(f"{kind} {exc.name!r} of block {exc.block!r} in {model} {what} at run {run}, timestep "
                           f"{timestep}, substep {exc.substep}; fix the model function (a restart resumes after the "
                           "last message Kafka acknowledged).")


def _wrap_policy(f: Callable[..., Any], name: str, block: str, substep: int) -> Callable[..., Mapping[str, Any]]:
    def policy(params: Any, substep_: Any, state_history: Any, previous_state: Any) -> Mapping[str, Any]:
        try:
            out = f(params, substep_, state_history, previous_state)
        except Exception as exc:
            raise _ModelFunctionFailed("policy", name, block, substep, exc) from exc
        if not isinstance(out, Mapping):
            raise _ModelFunctionFailed("policy", name, block, substep,
                                       f"returned a {type(out).__name__}, not a dict of signals")
        return out
    policy.__name__ = getattr(f, "__name__", name)
    return policy


def _wrap_update(f: Callable[..., Any], variable: str, block: str, substep: int) -> Callable[..., tuple[str, Any]]:
    name = getattr(f, "__name__", variable)

    def update(params: Any, substep_: Any, state_history: Any, previous_state: Any,
               policy_input: Any) -> tuple[str, Any]:
        try:
            out = f(params, substep_, state_history, previous_state, policy_input)
        except Exception as exc:
            raise _ModelFunctionFailed("update", name, block, substep, exc) from exc
        if not (isinstance(out, tuple) and len(out) == 2) or out[0] != variable:
            raise _ModelFunctionFailed("update", name, block, substep,
                                       f"returned {out!r:.80}, not the tuple ({variable!r}, value)")
        return out
    update.__name__ = name
    return update


# ---------------------------------------------------------------------- declaration checks
def _blocks(cls: type[SimulationModel]) -> list[tuple[str, Mapping[str, Any]]]:
    """``(label, block)`` pairs with cadCAD's legacy key names mapped to the current ones."""
    raw = cls.partial_state_update_blocks
    pairs: list[tuple[str | None, Mapping[str, Any]]] = (
        list(raw.items()) if isinstance(raw, Mapping) else [(None, b) for b in raw])
    out: list[tuple[str, Mapping[str, Any]]] = []
    for i, (label, block) in enumerate(pairs, start=1):
        block = {LEGACY_KEYS.get(k, k): v for k, v in block.items()}
        out.append((str(block.get("label") or label or f"block {i}"), block))
    return out


def check_model(cls: type[SimulationModel]) -> None:
    """Check a model's declaration; :class:`DeclarationError` names the class, the attribute and the remedy."""
    where = cls.__name__

    def fail(attr: str, problem: str, example: str) -> NoReturn:
        raise DeclarationError(f"{where}.{attr} {problem}; declare it like `{attr} = {example}`.")

    state = getattr(cls, "initial_state", None)
    if not isinstance(state, Mapping) or not state or not all(isinstance(k, str) for k in state):
        fail("initial_state", f"must be a non-empty dict of state variables, not {state!r:.60}", '{"users": 0}')
    reserved = {"run", "timestep", "substep", "simulation", "subset"} & set(state)
    if reserved:
        fail("initial_state", f"uses cadCAD's bookkeeping name {sorted(reserved)[0]!r}", '{"users": 0}')
    for attr in ("timesteps", "runs"):
        value = getattr(cls, attr, None)
        if value is None:
            fail(attr, "is missing", "100")
        _count(value, attr, where, MAX_TIMESTEPS if attr == "timesteps" else MAX_RUNS)
    params = cls.params
    if not isinstance(params, Mapping) or not all(isinstance(k, str) for k in params):
        fail("params", f"must be a dict of named parameters, not {params!r:.60}", '{"rooms": 5}')
    if RNG_PARAM in params:
        fail("params", f"uses the reserved name {RNG_PARAM!r} (the run's random generator is put there)",
             '{"rooms": 5}')
    sweeps = [k for k, v in params.items() if isinstance(v, list)]
    if sweeps:
        fail("params", f"sweeps {sweeps[0]!r} over a list; give one value per parameter (declare one model per "
             "configuration to compare)", '{"rooms": 5}')
    if not isinstance(cls.seed, (int, str)) or isinstance(cls.seed, bool):
        fail("seed", f"must be an int or a str, not {cls.seed!r}", "7")
    if cls.history is not None and (not isinstance(cls.history, int) or cls.history < 1):
        fail("history", f"must be a number of timesteps of at least 1 or None, not {cls.history!r}", "1")
    if not cls.policy_ops or not all(callable(op) for op in cls.policy_ops):
        fail("policy_ops", "must be a non-empty list of functions (a, b) -> value", "[lambda a, b: a + b]")
    raw = getattr(cls, "partial_state_update_blocks", None)
    if not isinstance(raw, (list, tuple, Mapping)) or not raw:
        fail("partial_state_update_blocks", f"must be a non-empty list of blocks, not {raw!r:.60}",
             '[{"policies": {...}, "variables": {...}}]')
    if len(raw) > MAX_SUBSTEPS:
        fail("partial_state_update_blocks", f"has {len(raw)} blocks; at most {MAX_SUBSTEPS} are supported", "[...]")
    blocks = raw.values() if isinstance(raw, Mapping) else raw
    for i, block in enumerate(blocks, start=1):
        attr = f"partial_state_update_blocks[{i - 1}]"
        if not isinstance(block, Mapping):
            fail(attr, f"must be a dict, not {type(block).__name__}", '{"policies": {...}, "variables": {...}}')
        unknown = [k for k in block if k not in BLOCK_KEYS and k not in LEGACY_KEYS]
        if unknown:
            raise DeclarationError(f"{where}.{attr} has the unknown cadCAD key {unknown[0]!r}; a block's keys are "
                                   f"{', '.join(BLOCK_KEYS)}.")
        block = {LEGACY_KEYS.get(k, k): v for k, v in block.items()}
        for kind, arity in (("policies", 4), ("variables", 5)):
            funcs = block.get(kind, {})
            if not isinstance(funcs, Mapping):
                fail(f"{attr}[{kind!r}]", f"must be a dict of name: function, not {type(funcs).__name__}", "{...}")
            for name, f in funcs.items():
                _check_function(where, f"{attr}[{kind!r}][{name!r}]", f, arity)
                if kind == "variables" and name not in state:
                    raise DeclarationError(f"{where}.{attr} updates {name!r}, which is not in initial_state; add "
                                           f"it to initial_state or fix the name (variables: {', '.join(state)}).")
    messages = getattr(cls, "messages", None)
    if messages is SimulationModel.messages or not callable(messages):
        raise DeclarationError(f"{where} must define `def messages(self, t: Transition)` returning the messages of "
                               "one transition.")


def _check_function(where: str, attr: str, f: Any, arity: int) -> None:
    args = ("params, substep, state_history, previous_state" + (", policy_input" if arity == 5 else ""))
    if not callable(f):
        raise DeclarationError(f"{where}.{attr} is a {type(f).__name__}, not a function f({args}).")
    try:
        inspect.signature(f).bind(*range(arity))
    except TypeError:
        raise DeclarationError(f"{where}.{attr} ({getattr(f, '__name__', f)!r}) cannot be called with cadCAD's "
                               f"{arity} arguments; define it as f({args}).") from None
    except ValueError:  # no signature (a builtin): let it run
        pass


def _count(value: Any, attr: str, where: str, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise DeclarationError(f"{where}.{attr} must be a whole number from 1 to {maximum}, not {value!r}.")
    return value
