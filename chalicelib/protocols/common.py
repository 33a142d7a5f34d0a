"""What the peers' protocol modules share: decoding a JSON body, running a
payload through the app's own parsing and model, and writing JSON. Running
a request and rendering its errors is :mod:`.wrapper`'s."""
import json

from chalicelib.http.config import MAX_ROWS
from chalicelib.http.errors import NotFound, ServiceError
from chalicelib.http.reply import JSON_HEADERS, Reply
from chalicelib.runtimes.answer_json import encode as dumps  # noqa: F401  (the protocols' name)
from chalicelib.runtimes.answer_json import probability_rows
from chalicelib.schema.parsing import decode_json, parse_payload
from chalicelib.schema.parsing import decode_utf8 as decode_text  # noqa: F401  (the protocols' name)


def body_bytes(service, request):
    """The raw body (bytes), within the app's size limit."""
    return service.read_body(request)


def load_json(text, max_rows=MAX_ROWS.default):
    """The decoded JSON document, or BadRequest saying what is wrong; floods
    of lists and objects are refused as on ``POST /model``."""
    return decode_json(text, max_rows)


def check_model_name(model, name, version=None):
    """NotFound unless ``name`` (and ``version``, if given) is the served model."""
    if name != model.card.name:
        raise NotFound("model %s not found; this deployment serves %s"
                       % (json.dumps(name), json.dumps(model.card.name)))
    if version is not None and version != model.card.version:
        raise NotFound("model %s has no version %s; it serves version %s"
                       % (json.dumps(name), json.dumps(version), json.dumps(model.card.version)))


def run_payload(service, payload, probabilities=False, relocate=None):
    """Parse ``payload`` (a ``POST /model`` JSON payload as Python objects)
    with the app's parser and run the model: ``(model, predictions,
    probabilities or None, rows)``. ``relocate`` maps an error's location in
    ``payload`` to its place in the client's own request (see
    :func:`renamed`)."""
    model = service.model.ready()
    try:
        parsed = parse_payload(payload, model.schema, service.config.max_rows)
    except ServiceError as error:
        if relocate is None or not error.loc:
            raise
        raise error.relocated(relocate(error.loc)) from None
    want = parsed.probabilities or probabilities
    predictions, proba = model.infer(parsed.X, want)
    return model, predictions, proba, len(parsed.X)


def renamed(ours, theirs):
    """The relocation for a payload key ``ours`` that the client called
    ``theirs``: ``("instances", 3, "x")`` -> ``("inputs", 3, "x")``."""
    def relocate(loc):
        return (theirs,) + loc[1:] if loc[:1] == (ours,) else loc
    return relocate


def predictions_document(model, predictions, proba):
    """``{"predictions": [...]}`` plus, when asked, ``classes`` and
    ``probabilities``: the keys and values ``POST /model`` answers."""
    document = {"predictions": predictions.tolist()}
    if proba is not None:
        document["classes"] = model.classes
        document["probabilities"] = probability_rows(proba, len(predictions))
    return document


def json_reply(model, document, status=200):
    return Reply(status, dumps(document), model.headers if model is not None else JSON_HEADERS)


def with_model(service, render):
    """``(Reply, 0)`` of ``render(model)`` (a JSON-able object) for the
    loaded model; ModelUnavailable (503) propagates."""
    model = service.model.ready()
    return json_reply(model, render(model)), 0
