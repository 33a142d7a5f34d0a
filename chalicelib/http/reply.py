"""What every route answers and reads: the :class:`Reply` (status, body,
headers) a protocol returns, and the request body read within the size limit
with the two ways it can be unreadable named."""
import binascii

from chalicelib.http.errors import BadRequest, PayloadTooLarge

JSON_HEADERS = {"Content-Type": "application/json"}


class Reply:
    __slots__ = ("status", "body", "headers")

    def __init__(self, status, body, headers):
        self.status = status
        self.body = body
        self.headers = headers


def read_body(request, limit):
    """The request's body as bytes (``b""`` when it has none), or
    BadRequest / PayloadTooLarge."""
    try:
        body = request.raw_body
    except (binascii.Error, ValueError):
        if _marked_base64(request):
            raise BadRequest("request body is marked base64-encoded but is not valid base64") \
                from None
        raise BadRequest("request body is not valid UTF-8") from None
    if body is None:
        return b""
    if not isinstance(body, bytes):
        body = body.encode("utf-8")
    if len(body) > limit:
        raise PayloadTooLarge("request body of %d bytes exceeds the limit of %d"
                              % (len(body), limit))
    return body


def _marked_base64(request):
    original = getattr(request, "to_original_event", None)
    event = original() if callable(original) else None
    return bool((event or {}).get("isBase64Encoded"))
