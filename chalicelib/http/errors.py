"""Errors are data: one exception type per kind of failure, each carrying its
HTTP status and the ``Code`` of Chalice's error shape ``{"Code", "Message"}``.

The status codes live here and nowhere else;
:func:`chalicelib.protocols.wrapper.render_error` turns any of these into a
response in each protocol's error shape.
"""


class ServiceError(Exception):
    """Base class: a failure with a status code and a client-safe message."""

    status = 500
    code = "InternalServerError"

    def __init__(self, message):
        super().__init__(message)
        self.message = message


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
