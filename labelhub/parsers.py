"""The API's JSON parser: DRF's, with bounds on body size and nesting, and only text the database can store."""
import codecs
import json
import re
from typing import Any

from django.conf import settings
from rest_framework import exceptions, status
from rest_framework.parsers import JSONParser as DRFJSONParser
from rest_framework.parsers import get_encoding
from rest_framework.utils.json import strict_constant

from labelhub.text import bad_character

# Deeper bodies are refused: no request of the API nests more than a few levels, and code that
# walks a value recursively (encoders, validators) must never meet a body near the recursion limit.
JSON_MAX_DEPTH = 32
# The escapes that can make a NUL or a lone surrogate (labelhub.text): in UTF-8 JSON they arrive only
# so. A surrogate pair, as clients that escape non-ASCII send emoji, is text.
_SUSPECT_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")
_UTF8 = frozenset({"utf-8", "utf-8-sig", "ascii"})


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "payload_too_large"


def _check(data: dict | list, *, strings: bool) -> None:
    """Refuse values nested deeper than JSON_MAX_DEPTH and, if ``strings``, strings (keys too) with a bad character.

    Iterative, so that the check itself never recurses.
    """
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if type(value) is dict:
            if strings:
                for key in value:
                    _check_string(key)
            value = value.values()
        for child in value:
            kind = type(child)
            if kind is dict or kind is list:
                if depth == JSON_MAX_DEPTH:
                    raise exceptions.ParseError(f"JSON nested deeper than {JSON_MAX_DEPTH} levels.")
                stack.append((child, depth + 1))
            elif strings and kind is str:
                _check_string(child)


def _check_string(text: str) -> None:
    bad = bad_character(text)
    if bad is not None:
        raise exceptions.ParseError(f"JSON strings may not contain {bad}.")


class JSONParser(DRFJSONParser):
    """Parse a JSON body; 413 above ``API_JSON_MAX_BYTES``, 400 for nesting deeper than JSON_MAX_DEPTH and for
    strings with NUL or lone surrogates, as for any other malformed body."""

    def parse(self, stream, media_type=None, parser_context=None) -> Any:
        limit = settings.LABELHUB_API_JSON_MAX_BYTES
        body = stream.read(limit + 1) if stream is not None else b""
        if len(body) > limit:
            raise PayloadTooLarge(f"The JSON body is larger than {limit:,} bytes.")
        encoding = get_encoding(parser_context or {})
        try:
            text = body.decode(encoding)
            data = json.loads(text, parse_constant=strict_constant if self.strict else None)
        except RecursionError:
            raise exceptions.ParseError(f"JSON nested deeper than {JSON_MAX_DEPTH} levels.") from None
        except ValueError as exc:
            raise exceptions.ParseError(f"JSON parse error - {exc}") from None
        # Each opening bracket is at most one level: a body with few of them needs no walk.
        deep = text.count("[") + text.count("{") > JSON_MAX_DEPTH
        # Other codecs than UTF-8's (a client names one in Content-Type) may decode to those characters directly.
        escaped = codecs.lookup(encoding).name not in _UTF8 or _SUSPECT_ESCAPE.search(text) is not None
        if (deep or escaped) and type(data) in (dict, list):
            _check(data, strings=escaped)
        elif escaped and type(data) is str:
            _check_string(data)
        return data

