"""The API's JSON parser: DRF's, plus clean 400s for bodies too deeply nested to parse and for a key given
twice in one object (JSON allows it; the last value would silently win, e.g. an event for the wrong member)."""

import codecs
import json

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser
from rest_framework.utils.json import strict_constant


def object_without_repeated_keys(pairs: list[tuple[str, object]]) -> dict:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        repeated = next(key for key, _ in pairs if key in seen or seen.add(key))
        raise ValueError(f"the key {repeated!r} appears twice in one object")
    return obj


class StrictJSONParser(JSONParser):
    """Rejects NaN/Infinity (as DRF's parser does), a key twice in one object, and nesting deep enough to
    exhaust the stack."""

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            return json.load(codecs.getreader(encoding)(stream), parse_constant=strict_constant,
                             object_pairs_hook=object_without_repeated_keys)
        except RecursionError:
            raise ParseError("JSON parse error - the document is nested too deeply.") from None
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
