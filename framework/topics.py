"""Kafka topic names: the one check that the admin, producer and consumer declarations share.

Kafka's own rule, ``Topic.validate`` in ``clients/src/main/java/org/apache/kafka/common/internals/Topic.java``
(``LEGAL_CHARS = "[a-zA-Z0-9._-]"``, ``MAX_NAME_LENGTH = 249``; the 249 leaves room for the
partition suffix of the log directory names within the file system's 255): a topic name is 1 to
249 characters of ASCII letters, digits, ``.``, ``_`` and ``-``, and is neither ``.`` nor ``..``.
The broker refuses anything else with ``InvalidTopicException``; checking here makes a wrong
name fail at declaration, before any connection.
"""
from __future__ import annotations

import re

from framework.errors import TopicError

__all__ = ["MAX_TOPIC_NAME_LENGTH", "check_topic_name", "topic_name_problem"]

#: Kafka's ``Topic.MAX_NAME_LENGTH``.
MAX_TOPIC_NAME_LENGTH = 249
_LEGAL = re.compile(r"[a-zA-Z0-9._-]+")  # ASCII only, as Kafka's LEGAL_CHARS (not \w)


def topic_name_problem(name: object, max_length: int = MAX_TOPIC_NAME_LENGTH) -> str | None:
    """Why ``name`` is not a legal Kafka topic name, as a phrase after "it" (None when it is legal).

    ``max_length`` is lower than 249 for a name that gets a suffix (the producer's
    ``<topic>.dlq``). Examples: ``"is empty"``, ``"contains ' '"``, ``"has 250 characters, more than 249"``.
    """
    if not isinstance(name, str):
        return f"is a {type(name).__name__}, not a string"
    if not name:
        return "is empty"
    if name in (".", ".."):
        return "is '.' or '..', which Kafka does not allow"
    if not _LEGAL.fullmatch(name):
        bad = sorted({ch for ch in name if not _LEGAL.fullmatch(ch)})
        return f"contains {', '.join(map(repr, bad))}; only ASCII letters, digits, '.', '_' and '-' are allowed"
    if len(name) > max_length:
        return f"has {len(name)} characters, more than {max_length}"
    return None


def check_topic_name(name: object) -> str:
    """``name`` when it is a legal Kafka topic name, else :class:`~framework.errors.TopicError` (one sentence)."""
    problem = topic_name_problem(name)
    if problem is not None:
        raise TopicError(f"Topic name {name!r} is not valid: it {problem}.")
    assert isinstance(name, str)
    return name
