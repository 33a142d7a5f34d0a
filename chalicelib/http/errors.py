"""Errors are data: one exception type per kind of failure, each carrying its
HTTP status and the ``Code`` of Chalice's error shape ``{"Code", "Message"}``.

The status codes live here and nowhere else;
:func:`chalicelib.protocols.wrapper.render_error` turns any of these into a
response in each protocol's error shape.
"""
import json


class Line(int):
    """A place part: a line of a CSV body (1-based, as editors count)."""


class Column(tuple):
    """A place part: a field of a CSV line, by position (1-based; None when
    the place is the feature alone) and feature name."""

    def __new__(cls, position, name):
        return super().__new__(cls, (position, name))


class Position(tuple):
    """A place part: a value in a row given as a list, by index and the
    feature that index stands for."""

    def __new__(cls, index, name):
        return super().__new__(cls, (index, name))


class Row(int):
    """A place part: a row of a request whose rows are not a list of its own
    (tensors given column by column)."""


class Tensor(str):
    """A place part: a tensor the client named (Open Inference inputs)."""


def quoted(text):
    """A client's text as an error message shows it: JSON-quoted, cut at 40
    characters (a message never echoes an unbounded value)."""
    return json.dumps(text if len(text) <= 40 else text[:40] + "...")


def place(loc):
    """The text of a location: ``("instances", 3, "petal_width")`` ->
    ``instances[3].petal_width``; ``(Line(4), Column(2, "x"))`` ->
    ``CSV line 4, column 2 (x)``; ``(Tensor("x"), 3)`` -> ``input "x"[3]``."""
    out = []
    for part in loc:
        if isinstance(part, Line):
            out.append("CSV line %d" % part)
        elif isinstance(part, Column):
            position, name = part
            out.append(", column %s" % name if position is None
                       else ", column %d (%s)" % (position, name))
        elif isinstance(part, Position):
            out.append("[%d] (%s)" % part)
        elif isinstance(part, Row):
            out.append("%srow %d" % (", " if out else "", part))
        elif isinstance(part, Tensor):
            out.append("input %s" % json.dumps(str(part)))
        elif isinstance(part, int):
            out.append("[%d]" % part)
        else:
            out.append(("." if out else "") + part)
    return "".join(out)


class ServiceError(Exception):
    """Base class: a failure with a status code and a client-safe message.

    ``loc`` is where in the request the failure is, as data (keys, indexes,
    and the part types above), the way pydantic reports it; ``detail`` is
    what is wrong there. Each protocol may name the place its own way
    (:meth:`relocated`); ``message`` is the place's text and the detail."""

    status = 500
    code = "InternalServerError"

    def __init__(self, detail, loc=()):
        self.detail = detail
        self.loc = tuple(loc)
        super().__init__(self.message)

    @property
    def message(self):
        return "%s: %s" % (place(self.loc), self.detail) if self.loc else self.detail

    def relocated(self, loc):
        """The same error at another place (the client's name for it)."""
        error = type(self)(self.detail, loc)
        error.__dict__.update({k: v for k, v in self.__dict__.items()
                               if k not in ("detail", "loc")})
        return error


class BadRequest(ServiceError):
    """Malformed body or wrong structure (not JSON, wrong keys, wrong types)."""

    status = 400
    code = "BadRequestError"


class NotFound(ServiceError):
    """A model name or version this deployment does not serve, or a path of
    a protocol that names no operation (the protocol routes)."""

    status = 404
    code = "NotFoundError"


class NotAcceptable(ServiceError):
    """An ``Accept`` header asking only for types the endpoint cannot write."""

    status = 406
    code = "NotAcceptable"


class PayloadTooLarge(ServiceError):
    """Too many rows, or a body larger than the limit."""

    status = 413
    code = "RequestEntityTooLargeError"


class UnsupportedMediaType(ServiceError):
    """A Content-Type (or charset) the endpoint does not read."""

    status = 415
    code = "UnsupportedMediaType"


class Unprocessable(ServiceError):
    """Well-formed request whose values do not fit the model."""

    status = 422
    code = "UnprocessableEntityError"


class PredictionFailed(ServiceError):
    """The model itself raised; the detail is logged, never returned."""

    status = 500
    code = "InternalServerError"


class ModelUnavailable(ServiceError):
    """The model could not be loaded (checksum, unpickling, version skew)."""

    status = 503
    code = "ServiceUnavailable"


class DeadlineExceeded(ServiceError):
    """The model did not answer within the request's deadline."""

    status = 504
    code = "GatewayTimeout"


class ModelLoadError(Exception):
    """Raised while loading a model directory; the message is the reason
    (for the log and ``publisher.publish``); ``public`` is the part a client may
    read in the 503: no file path, no runtime library version. ``retryable``:
    the cause may pass on its own (S3 unreachable, throttled, the object not
    uploaded yet), so the load is tried again later in the same process."""

    def __init__(self, message, public=None, retryable=False):
        super().__init__(message)
        self.public = public or message
        self.retryable = retryable
