"""KServe's V1 protocol (TensorFlow Serving's REST shape), what KServe's
``InferenceRESTClient`` speaks with ``protocol="v1"``:

* ``GET /v1/models`` ``{"models": [name]}``;
* ``GET /v1/models/{name}`` readiness ``{"name", "ready"}``;
* ``POST /v1/models/{name}:predict`` with ``{"instances": [...]}`` or
  ``{"inputs": [...]}`` (rows as lists or objects; optionally the app's
  ``"probabilities": true``), answered ``{"predictions": [...]}``.

API Gateway allows a path variable only as a whole path segment, so
``{name}:predict`` cannot be a route: the route is ``/v1/models/{model}``
and the segment (``iris-classifier:predict``) is split here. Any other
name, or a verb other than ``:predict``, is a 404 in KServe's
``{"error": ...}`` shape. V1's liveness probe, ``GET`` of the base URL,
shares ``GET /`` with the try-it page: content negotiation gives a
browser (``Accept`` naming ``text/html``) the page and any other client
``{"status": "alive"}``.
"""

from chalicelib.http.errors import BadRequest, NotFound
from chalicelib.http.media import accepted
from chalicelib.protocols.common import (body_bytes, check_model_name, decode_text, json_reply,
                                         load_json, predictions_document, renamed, run_payload,
                                         with_model)
from chalicelib.protocols.wrapper import KSERVE_V1, handle
from chalicelib.schema.parsing import one_format

FORMATS = ("instances", "inputs")
OPTIONS = ("probabilities",)


def wants_html(accept):
    """Whether ``Accept`` prefers HTML to JSON (a browser's does; KServe's
    client, curl and the peers' probes send none, ``*/*`` or JSON)."""
    best = {}
    for media, q in accepted(accept):
        if media in ("text/html", "application/xhtml+xml", "application/json"):
            best[media] = max(q, best.get(media, 0.0))
    html = max(best.get("text/html", 0.0), best.get("application/xhtml+xml", 0.0))
    return html > 0 and html >= best.get("application/json", 0.0)


def root(service, request):
    """``GET /``: the try-it page for a browser, KServe's liveness
    ``{"status": "alive"}`` for any other client."""
    if wants_html(request.headers.get("accept")):
        from chalicelib.protocols import model_api
        return model_api.page(service, request)
    return handle(service, request, KSERVE_V1, "GET /",
                  lambda: (json_reply(None, {"status": "alive"}), 0))


def models(service, request):
    return handle(service, request, KSERVE_V1, "GET /v1/models",
                  lambda: with_model(service, lambda m: {"models": [m.card.name]}))


def model_ready(service, request, segment):
    def work():
        name, verb = _split(segment)
        if verb is not None:
            raise NotFound("GET %s: no such operation; POST to :predict" % segment)
        model = service.model.ready()
        check_model_name(model, name)
        return json_reply(model, {"name": name, "ready": True}), 0
    return handle(service, request, KSERVE_V1, "GET /v1/models/{name}", work)


def predict(service, request, segment):
    def work():
        name, verb = _split(segment)
        if verb != "predict":
            raise NotFound("POST /v1/models/%s: not an operation of this server; "
                           "POST /v1/models/{name}:predict" % segment)
        model = service.model.ready()
        check_model_name(model, name)
        document = load_json(decode_text(body_bytes(service, request)))
        payload, relocate = _payload(document)
        model, predictions, proba, rows = run_payload(service, payload, relocate=relocate)
        return json_reply(model, predictions_document(model, predictions, proba)), rows
    return handle(service, request, KSERVE_V1, "POST /v1/models/{name}:predict", work)


def _split(segment):
    """``("iris-classifier", "predict")`` of ``iris-classifier:predict``;
    the verb is None when the segment has none."""
    name, colon, verb = segment.rpartition(":")
    return (name, verb) if colon else (segment, None)


def _payload(document):
    if type(document) is not dict:
        raise BadRequest("expected a JSON object with instances or inputs")
    if one_format(document, FORMATS, OPTIONS) == "inputs":
        payload = dict(document)
        payload["instances"] = payload.pop("inputs")
        return payload, renamed("instances", "inputs")
    return document, None
