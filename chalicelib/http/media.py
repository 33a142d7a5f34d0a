"""Reading the headers and query flags that say what a body is and what
answer is wanted (``Content-Type``, ``Accept``, ``?probabilities=``), the
one way every protocol reads them."""
from types import MappingProxyType

from chalicelib.http.errors import BadRequest, UnsupportedMediaType, quoted

_NO_PARAMS = MappingProxyType({})


def accepted(accept):
    """``[(media, q)]`` of an ``Accept`` header in the client's order: the
    media range lower-cased, its ``q`` weight (1 when absent, 0 when
    unreadable)."""
    ranges = []
    for item in (accept or "").split(","):
        media, *params = [p.strip() for p in item.split(";")]
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        ranges.append((media.lower(), q))
    return ranges


# Clients repeat one Content-Type, so parsed headers are kept; bounded, so
# varied headers cannot grow it. Only headers that parsed are kept.
_PARSED = {}
_PARSED_MAX = 32


def content_type(header, default="application/json"):
    """``(media, params)`` of a ``Content-Type`` header, the one way every
    protocol reads it: the media type lower-cased, and its parameters other
    than ``charset`` as a read-only mapping (keys lower-cased, values
    unquoted). A ``charset`` other than UTF-8 is a 415: every body is read
    as UTF-8. No header is ``default`` (what Chalice assumes); which media
    types and parameters a route accepts is the route's rule."""
    if not header:
        return default, _NO_PARAMS
    known = _PARSED.get(header)
    if known:
        return known
    media, *raw = header.split(";")
    params = {}
    for param in raw:
        key, _, value = param.partition("=")
        key, value = key.strip().lower(), value.strip().strip('"')
        if key == "charset":
            if value.lower() not in ("utf-8", "utf8"):
                raise UnsupportedMediaType("Unsupported charset: %s; send UTF-8" % value)
        elif key or value:
            params[key] = value
    parsed = (media.strip().lower(), MappingProxyType(params))
    if len(_PARSED) < _PARSED_MAX:
        _PARSED[header] = parsed
    return parsed


def csv_header(params):
    """RFC 4180's ``header`` parameter of a ``text/csv`` Content-Type (from
    :func:`content_type`'s params): True (``present``), False (``absent``)
    or None (not given); any other value is a 415 saying so."""
    value = params.get("header")
    if value is None:
        return None
    if value.lower() not in ("present", "absent"):
        raise UnsupportedMediaType("text/csv: header must be present or absent (RFC 4180), "
                                   "got %s" % quoted(value))
    return value.lower() == "present"


def query_flag(value, name="probabilities"):
    """A true/false query parameter (``?probabilities=true``): absent is
    False; ``true``/``1`` and ``false``/``0`` in any case; anything else is
    a 400 located at the parameter."""
    if value is None:
        return False
    lowered = value.lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise BadRequest("expected true or false, got %s" % quoted(value), (name,))
