"""The API's JSON parser: DRF's, plus a clean 400 for bodies too deeply nested to parse."""

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


class StrictJSONParser(JSONParser):
    """Rejects NaN/Infinity (as DRF's parser does) and nesting deep enough to exhaust the stack."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - the document is nested too deeply.") from None
