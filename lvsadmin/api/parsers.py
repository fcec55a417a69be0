"""The API's one body parser: JSON, refusing any text that holds a NUL character.

No field of the panel takes one, and PostgreSQL refuses it in any statement: a value that reached the database
before its field's own check (a cluster named in a balancer's body is looked up first) was a 500. One rule here,
for every body, answers 400 before any of that."""

from __future__ import annotations

from rest_framework import parsers
from rest_framework.exceptions import ParseError


def holds_nul(value) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(holds_nul(k) or holds_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(holds_nul(v) for v in value)
    return False


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        data = super().parse(stream, media_type, parser_context)
        if holds_nul(data):
            raise ParseError("JSON parse error - a text holds a NUL character (\\u0000), which no field takes")
        return data
