"""One streamed line as bytes: its ``_position`` member cut out, its validity checked, nothing re-encoded.

The producer sends a record's own bytes (when the subclass keeps the default
``transform``), so every value reaches Kafka exactly as the source wrote it:
``12345678901234567890.12`` stays ``12345678901234567890.12``, never the
nearest double. Two things happen to a line, both on bytes:

- :func:`split_position` removes the ``"_position": N`` member the API puts
  first (``{"_position":7,"id":1}`` becomes ``{"id":1}``, ``{"_position":7}``
  becomes ``{}``); a ``_position`` member elsewhere among the top-level
  members is cut out the same way (with the comma that separated it);
- :func:`parse_record` decides whether the bytes are a *valid record*: one
  UTF-8 JSON object (RFC 8259) with only JSON whitespace (space, tab, CR, LF)
  around it, the definition the consumer uses too (``docs/parse-contract.md``).
  Numbers beyond the range of a double are valid JSON and valid here (orjson
  refuses them, so such a record is checked again with the standard library,
  which keeps them exact).

Minimal use::

    position, value = split_position(b'{"_position":7,"id":1,"n":123456789012345678901234567890}')
    # position == 7, value == b'{"id":1,"n":123456789012345678901234567890}'
    record = parse_record(value)         # a dict; RecordError (one sentence) if the value is not a record
"""
from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

import orjson

__all__ = ["POSITION_MEMBER", "RecordError", "parse_record", "split_position"]

POSITION_MEMBER = "_position"
_PREFIX = b'{"_position":'
_MEMBER = b'"_position"'
_INT = re.compile(rb"\s*(-?\d{1,19})\s*")
_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[{}\[\],:]', re.S)


class RecordError(ValueError):
    """A value that is not a valid record; the message is the reason kept in the dead-letter topic."""


def split_position(line: bytes) -> tuple[int | None, bytes]:
    """``(position, record bytes)``: the integer ``_position`` member of ``line`` and the line without it.

    ``(None, line)`` when the line has no top-level integer ``_position``
    member (or is not a JSON object at all); the line is then returned as it is.
    Only the member's bytes and one adjoining comma are removed; every other
    byte of the line is kept.
    """
    if line.startswith(_PREFIX):  # the API's form: {"_position":N,...} or {"_position":N}
        comma = line.find(44, 13, 34)  # ","
        if comma > 13:
            digits = line[13:comma]
            if digits.isdigit():
                return int(digits), b"{" + line[comma + 1:]
        else:
            end = line.find(125, 13, 34)  # "}"
            digits = line[13:end] if end > 13 else b""
            if digits.isdigit():
                return int(digits), b"{" + line[end:]
    if _MEMBER not in line:
        return None, line
    return _cut_member(line)


def _cut_member(line: bytes) -> tuple[int | None, bytes]:
    """The general case of :func:`split_position`: find ``"_position"`` among the top-level members."""
    depth = 0
    expect_key = False
    member_start = previous_comma = None
    value_start = None
    key_found = False
    for token in _TOKEN.finditer(line):
        text = token.group()
        first = text[0]
        if first == 34:  # '"': a string
            if depth == 1 and expect_key:
                expect_key = False
                if text == _MEMBER:
                    key_found, member_start = True, token.start()
            continue
        if first in b"{[":
            if depth == 0 and first != 123:
                return None, line
            depth += 1
            if depth == 1:
                expect_key = True
            continue
        if first == 58:  # ":"
            if depth == 1 and key_found and value_start is None:
                value_start = token.end()
            continue
        if depth == 1 and first in b",}":
            if key_found:
                match = _INT.fullmatch(line, value_start or 0, token.start()) if value_start else None
                if match is None:
                    return None, line
                position = int(match.group(1))
                if previous_comma is not None:  # not the first member: cut ",<member>"
                    return position, line[:previous_comma] + line[token.start():]
                if first == 44:  # the first member, others follow: cut "<member>,"
                    return position, line[:member_start] + line[token.end():]
                return position, line[:member_start] + line[token.start():]  # the only member
            if first == 44:
                previous_comma = token.start()
                expect_key = True
        if first in b"]}":
            depth -= 1
            if depth == 0:
                return None, line
    return None, line


def parse_record(value: bytes) -> dict[str, Any]:
    """The record ``value`` holds, decoded; :class:`RecordError` when it is not a valid record (module doc).

    Numbers come back as orjson gives them (doubles) unless a number is beyond
    a double's range, then as ``int`` / ``Decimal``; the caller keeps
    ``value`` itself to send, so this only decides validity and reads fields.
    """
    try:
        record = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        if "number is infinity" not in str(exc):
            raise RecordError(f"the line is not valid JSON ({exc})") from None
        record = _parse_exact(value)
    if type(record) is not dict:
        raise RecordError(f"the line is a JSON {_kind(record)}, not an object")
    return record


def _parse_exact(value: bytes) -> Any:
    """RFC 8259 parsing that keeps numbers beyond a double's range (the standard library, strict UTF-8)."""
    try:
        text = value.decode("utf-8")
        return json.loads(text, parse_float=Decimal, parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise RecordError(f"the line is not valid JSON ({exc})") from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _kind(value: object) -> str:
    return {list: "array", str: "string", int: "number", float: "number", bool: "boolean",
            Decimal: "number"}.get(type(value), "null")
