"""The app's own protocol, one among the others: ``POST /model`` (JSON
payloads or CSV, see :mod:`chalicelib.schema.parsing`), ``GET /model`` (the
model card), ``GET /health``, and the documents a person reads, ``GET /``
(the try-it page) and ``GET /openapi.json``. Errors are Chalice's
``{"Code", "Message"}``."""
import json

from chalicelib.http.errors import UnsupportedMediaType
from chalicelib.http.reply import JSON_HEADERS, Reply
from chalicelib.protocols.wrapper import MODEL, handle
from chalicelib.schema.parsing import MEDIA_TYPES, parse_request


def predict(service, request):
    """``POST /model``: ``request`` has ``raw_body``, ``headers``,
    ``query_params`` and ``context`` like a Chalice request."""
    def work():
        model = service.model.ready()
        body = service.read_body(request)
        query = request.query_params or {}
        content_type = request.headers.get("content-type")
        # No header is JSON (as Chalice reads it); an empty one names no type.
        if content_type is not None and not content_type.strip():
            raise UnsupportedMediaType("Unsupported media type: empty; send one of: %s"
                                       % ", ".join(MEDIA_TYPES))
        parsed = parse_request(body, content_type, model.schema,
                               service.config.max_rows, query.get("probabilities"))
        return Reply(200, model.answer_json(parsed.X, parsed.probabilities), model.headers), \
            len(parsed.X)
    return handle(service, request, MODEL, "POST /model", work)


def card(service, request):
    """``GET /model``: the model card as written."""
    return handle(service, request, MODEL, "GET /model",
                  lambda: _with_model(service, lambda model: json.dumps(model.card.raw)))


def health(service, request):
    """``GET /health``: 200 when the model is loaded and usable, else 503."""
    return handle(service, request, MODEL, "GET /health",
                  lambda: _with_model(service, lambda model: json.dumps(
                      dict(status="ok", **model.identity))))


def _with_model(service, render):
    model = service.model.ready()
    return Reply(200, render(model), model.headers), 0


def openapi(service, request):
    """``GET /openapi.json``: the OpenAPI document, its request schema
    generated from the model card (built once per process; imported here so
    that nothing of it loads before the first request for it)."""
    from chalicelib.page.openapi import document_json
    return handle(service, request, MODEL, "GET /openapi.json",
                  lambda: (Reply(200, document_json(service), JSON_HEADERS), 0))


def page(service, request):
    """``GET /``: the try-it page, generated from the model card once per
    process; nothing of it loads before the first ``GET /``."""
    from chalicelib.page.page import page_of
    return handle(service, request, MODEL, "GET /", lambda: (Reply(*page_of(service)), 0))
