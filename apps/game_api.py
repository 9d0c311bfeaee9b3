"""The game API: every player action is answered in JSON and logged as one event to Kafka first.

Endpoints (``GET``)::

    /                     welcome, the list of actions          event_type "visit"
    /purchase_a_sword     buy a sword                           event_type "purchase_sword"
    /purchase_a_shield    buy a shield                          event_type "purchase_shield"
    /purchase_an_axe      buy an axe                            event_type "purchase_axe"
    /purchase_a_potion    buy a potion                          event_type "purchase_potion"
    /purchase_a_spear     buy a spear                           event_type "purchase_spear"
    /join_guild?guild=G   join guild G (default the-knights)    event_type "join_guild"
    /declare_war          declare war                           event_type "declare_war"
    /declare_peace        declare peace                         event_type "declare_peace"

The names of the projects this demo comes from answer too, with the same
action and event: ``/join_a_guild``, ``/declare_a_war``, ``/declare_a_peace``
(see ``docs/game-demo-endpoints.md``).

Every event carries ``event_type``, ``timestamp`` (UTC, ISO 8601 with
milliseconds, e.g. ``2026-01-05T08:00:00.123Z``), ``host`` and ``user_agent``
(the request's ``Host`` and ``User-Agent`` headers, ``null`` when absent).
Purchases add ``item``, ``strength`` (drawn from a normal distribution with mean
5 and standard deviation 4, clipped to 0..10, two decimals: its JSON number,
``0.0`` to ``10.0``, fits the consumers' ``DECIMAL(4,2)`` exactly) and
``description``; a guild join adds ``guild``. The record key is the user agent,
so one player's events stay in order in one partition.

Contract: the answer is ``200`` only after Kafka acknowledged the event
(``acks=all``, through :class:`~framework.producer.event_log.KafkaEventLog`), and
carries where it was stored (``logged``: topic, partition, offset). When the
event cannot be confirmed (broker down, timeout) the answer is ``503`` with
``{"error": <one sentence>, "logged": false}`` and a ``Retry-After`` header,
and the action did not happen for the player. An event answered with 200 is
never lost. A malformed ``guild`` is a ``400`` and logs nothing.

Run it with ``python cmd/game_api_cmd.py`` (port 5001), or in-process::

    app = create_game_app(settings)                       # or event_log=InMemoryEventLog() in tests
    server = serve_in_thread(app, "127.0.0.1", 0)         # from apps.api
    ...
    server.stop(); app.extensions["game"].event_log.close()
"""
from __future__ import annotations

import datetime as dt
import random
import re
import threading
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from framework.errors import EventLogError
from framework.producer.event_log import EventLog, KafkaEventLog
from framework.log import get_logger
from framework.settings import Settings

EVENTS_TOPIC = "events"
KEY_FIELD = "user_agent"
EXTENSION = "game"
DEFAULT_GUILD = "the-knights"
STRENGTH_MEAN, STRENGTH_SIGMA, STRENGTH_MIN, STRENGTH_MAX = 5.0, 4.0, 0.0, 10.0
RETRY_AFTER_SECONDS = 5
_GUILD = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$")
_log = get_logger("game_api")


@dataclass(frozen=True)
class Item:
    """Something a player can buy."""

    name: str
    path: str
    noun: str  # used in the description, after a quality word

    @property
    def event_type(self) -> str:
        return f"purchase_{self.name}"


def _article(noun: str) -> str:
    return ("an " if noun[0] in "aeiou" else "a ") + noun


ITEMS = (Item("sword", "/purchase_a_sword", "steel sword"), Item("shield", "/purchase_a_shield", "oak shield"),
         Item("axe", "/purchase_an_axe", "battle axe"), Item("potion", "/purchase_a_potion", "healing potion"),
         Item("spear", "/purchase_a_spear", "ash spear"))
#: path -> what it does, as listed by ``/``
ACTIONS = {"/": "welcome and this list", **{i.path: f"buy {_article(i.name)}" for i in ITEMS},
           "/join_guild": f"join a guild: ?guild=<name> (default {DEFAULT_GUILD})",
           "/declare_war": "declare war", "/declare_peace": "declare peace"}
#: the names users of the source projects call (path -> our path, same action and event_type)
ALIASES = {"/join_a_guild": "/join_guild", "/declare_a_war": "/declare_war", "/declare_a_peace": "/declare_peace"}
ALIASES_OF = {ours: theirs for theirs, ours in ALIASES.items()}
#: every event_type the API logs
EVENT_TYPES = ("visit", *(i.event_type for i in ITEMS), "join_guild", "declare_war", "declare_peace")
_QUALITY = ((2.0, "flimsy"), (4.0, "worn"), (6.0, "sturdy"), (8.0, "fine"), (9.5, "masterwork"))


@dataclass
class GameState:
    """What the views share, kept in ``app.extensions["game"]``."""

    event_log: EventLog
    rng: random.Random
    rng_lock: threading.Lock = field(default_factory=threading.Lock)


def create_game_app(settings: Settings | None = None, event_log: EventLog | None = None, *,
                    rng: random.Random | None = None, topic: str = EVENTS_TOPIC) -> Flask:
    """The Flask app of the game. No I/O: the event log connects on the first request.

    ``event_log`` default: a :class:`KafkaEventLog` of ``topic`` keyed by the user
    agent (``settings`` default: ``Settings.from_env()``); whoever serves the app
    closes it (``app.extensions["game"].event_log.close()``). ``rng`` draws the
    strengths (seed it for reproducible tests).
    """
    if event_log is None:
        event_log = KafkaEventLog(settings or Settings.from_env(), topic, key_field=KEY_FIELD)
    app = Flask(__name__)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions[EXTENSION] = GameState(event_log, rng or random.Random())
    app.add_url_rule("/", "visit", _visit)
    for item in ITEMS:
        app.add_url_rule(item.path, item.event_type, _purchase, defaults={"item_name": item.name})
    for path in ("/join_guild", ALIASES_OF["/join_guild"]):
        app.add_url_rule(path, f"join_guild{path}", _join_guild)
    for stance in ("war", "peace"):
        for path in (f"/declare_{stance}", ALIASES_OF[f"/declare_{stance}"]):
            app.add_url_rule(path, f"declare_{stance}{path}", _declare, defaults={"stance": stance})
    app.config["SERVICE_NAME"] = "game API"  # how apps.api's server logs it
    app.register_error_handler(HTTPException, _http_error)
    return app


# ------------------------------------------------------------------ pure helpers
def draw_strength(rng: random.Random) -> float:
    """Normal(5, 4) clipped to 0..10, rounded to two decimals.

    The float's JSON text (Python's shortest round-trip ``repr``) is that two-decimal number, ``0.0`` to
    ``10.0``, so it lands in the consumers' ``strength DECIMAL(4,2)`` exactly (tests/unit/test_game.py checks
    all 1001 values).
    """
    value = rng.normalvariate(STRENGTH_MEAN, STRENGTH_SIGMA)
    return round(min(STRENGTH_MAX, max(STRENGTH_MIN, value)), 2)


def describe_item(item: Item, strength: float) -> str:
    """``"a fine steel sword"``: the quality word follows the strength."""
    quality = next((word for limit, word in _QUALITY if strength < limit), "legendary")
    return f"a {quality} {item.noun}"


def utc_timestamp(now: dt.datetime | None = None) -> str:
    """``2026-01-05T08:00:00.123Z``."""
    now = now or dt.datetime.now(dt.timezone.utc)
    return now.astimezone(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# ------------------------------------------------------------------ views
def _state() -> GameState:
    return current_app.extensions[EXTENSION]


def _event(event_type: str, **metadata: Any) -> dict[str, Any]:
    return {"event_type": event_type, "timestamp": utc_timestamp(), "host": request.headers.get("Host"),
            "user_agent": request.headers.get("User-Agent"), **metadata}


def _answer(event: dict[str, Any], message: str, failed: str, **extra: Any) -> Response:
    """Log ``event``; 200 with ``message`` once Kafka acknowledged it, else 503 saying ``failed``."""
    state = _state()
    try:
        partition, offset = state.event_log.log(event)
    except EventLogError as exc:
        _log.warning("{} from {} not logged: {}", event["event_type"], event["user_agent"], exc)
        response = jsonify(error=f"{failed}: {exc}", event_type=event["event_type"], logged=False)
        response.status_code = 503
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    return jsonify(message=message, **extra, event=event,
                   logged={"topic": state.event_log.topic, "partition": partition, "offset": offset})


def _visit() -> Response:
    return _answer(_event("visit"), "Welcome to the game! Pick an action.",
                   "Your visit could not be recorded", actions=ACTIONS)


def _purchase(item_name: str) -> Response:
    item = next(i for i in ITEMS if i.name == item_name)
    state = _state()
    with state.rng_lock:
        strength = draw_strength(state.rng)
    description = describe_item(item, strength)
    event = _event(item.event_type, item=item.name, strength=strength, description=description)
    return _answer(event, f"You bought {description} (strength {strength:.2f}).",
                   f"Your purchase of {_article(item.name)} could not be recorded, so it did not happen")


def _join_guild() -> Response:
    guild = request.args.get("guild", DEFAULT_GUILD)
    if not _GUILD.match(guild):
        response = jsonify(error=f"guild={guild!r} is not valid; use 1 to 64 letters, digits, spaces, '.', '_' or "
                                 f"'-', starting with a letter or digit, e.g. ?guild={DEFAULT_GUILD}.", logged=False)
        response.status_code = 400
        return response
    return _answer(_event("join_guild", guild=guild), f"You joined the guild {guild}.",
                   f"Your joining of {guild} could not be recorded, so it did not happen")


def _declare(stance: str) -> Response:
    message = "War is declared! Sharpen your swords." if stance == "war" else "Peace is declared. Rest well."
    return _answer(_event(f"declare_{stance}"), message,
                   f"Your declaration of {stance} could not be recorded, so it did not happen")


def _http_error(exc: HTTPException) -> Response:
    response = jsonify(error=f"No action at {request.method} {request.path!r}; actions (GET): "
                             f"{', '.join(ACTIONS)}." if exc.code in (404, 405) else (exc.description or exc.name),
                       actions=ACTIONS)
    response.status_code = exc.code or 500
    return response
