"""The prediction service behind the routes: settings, the one place where
errors become responses, and one structured log line per request.

``app.py`` hands each Chalice request to a :class:`Service` method and gets a
:class:`Reply` back; nothing here imports Chalice.
"""
import binascii
import json
import os
import sys
import time

from chalicelib.ops import metrics
from chalicelib.ops import tracing
from chalicelib.http.errors import BadRequest, PayloadTooLarge, ServiceError, error_body
from chalicelib.schema.parsing import parse_request
from chalicelib.runtimes.served_model import ServedModel

# The project root: chalicelib/protocols/ is two levels below it.
BUNDLED_MODEL_DIR = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "model", "iris")
DEFAULT_MAX_ROWS = 10_000
# Lambda refuses synchronous invocations over 6 MB; refuse earlier and say so.
DEFAULT_MAX_BODY_BYTES = 6 * 1024 * 1024
JSON_HEADERS = {"Content-Type": "application/json"}


def _positive_int(env, name, default):
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise ValueError("%s must be a positive integer, got %r" % (name, raw))
    return value


class Settings:
    def __init__(self, model_dir, max_rows, max_body_bytes, log_requests, model_runtime=None):
        self.model_dir = model_dir
        self.model_runtime = model_runtime
        self.max_rows = max_rows
        self.max_body_bytes = max_body_bytes
        self.log_requests = log_requests

    @classmethod
    def from_env(cls, env=None):
        env = os.environ if env is None else env
        return cls(
            model_dir=env.get("MODEL_DIR") or BUNDLED_MODEL_DIR,
            max_rows=_positive_int(env, "MAX_ROWS", DEFAULT_MAX_ROWS),
            max_body_bytes=_positive_int(env, "MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES),
            log_requests=env.get("LOG_REQUESTS", "true").lower() not in ("0", "false", "no"),
            model_runtime=env.get("MODEL_RUNTIME"),
        )


class Reply:
    __slots__ = ("status", "body", "headers")

    def __init__(self, status, body, headers):
        self.status = status
        self.body = body
        self.headers = headers


class Service:
    def __init__(self, settings):
        self.settings = settings
        self.model = ServedModel(settings.model_dir, settings.model_runtime)

    def predict(self, request):
        """POST /model: ``request`` has ``raw_body``, ``headers``,
        ``query_params`` and ``context`` like a Chalice request."""
        started = time.perf_counter()
        rows = 0
        try:
            model = self.model.ready()
            body = _raw_body(request, self.settings.max_body_bytes)
            headers = request.headers
            query = request.query_params or {}
            parsed = parse_request(body, headers.get("content-type"), model.schema,
                                   self.settings.max_rows, query.get("probabilities"))
            rows = len(parsed.X)
            reply = Reply(200, model.predict(parsed.X, parsed.probabilities), model.headers)
        except ServiceError as error:
            # Errors name the model too, as every response does (once loaded).
            reply = Reply(error.status, error_body(error), self.model.headers or JSON_HEADERS)
        if self.settings.log_requests:
            self._log(request, reply.status, started, rows)
        return reply

    def card(self):
        """GET /model: the model card as written."""
        return self._with_model(lambda model: json.dumps(model.card.raw))

    def health(self):
        """GET /health: 200 when the model is loaded and usable, else 503."""
        return self._with_model(lambda model: json.dumps(dict(status="ok", **model.identity)))

    def _with_model(self, render):
        """200 with ``render(model)`` as body, or the error of a model that is
        not available."""
        try:
            model = self.model.ready()
        except ServiceError as error:
            return Reply(error.status, error_body(error), JSON_HEADERS)
        return Reply(200, render(model), model.headers)

    def openapi(self):
        """GET /openapi.json: the API's OpenAPI 3.1 document, its request
        schema generated from the model card (built once per process)."""
        from chalicelib.page.openapi import document_json
        return Reply(200, document_json(self), JSON_HEADERS)

    def page(self):
        """GET /: the try-it page, generated from the model card once per
        process; imported here so that nothing of it loads before the first
        GET / (it never touches the prediction path)."""
        from chalicelib.page.page import page_of
        return Reply(*page_of(self))

    def _log(self, request, status, started, rows, route="POST /model"):
        """One log line and EMF record; the protocol routes name theirs."""
        context = getattr(request, "context", None) or {}
        elapsed = time.perf_counter() - started
        log = _ROUTE_LOGS.get(route) or _ROUTE_LOGS.setdefault(route, metrics.RequestLog(route))
        sys.stdout.write(log.line(self.model, json.dumps(context.get("requestId")),
                                  status, elapsed * 1000, rows))
        if tracing.DAEMON is not None:  # X-Ray on (the stage's xray setting)
            card = self.model.card
            tracing.record_request(route, status, elapsed,
                                   card.name if card else metrics.UNAVAILABLE,
                                   card.version if card else metrics.UNAVAILABLE)


# One JSON object per line, as CloudWatch shows it, which is also its EMF
# record (chalicelib/ops/metrics.py): formatted, not built with json.dumps,
# because it is written for every request. One format per route.
_ROUTE_LOGS = {"POST /model": metrics.RequestLog("POST /model")}


def _raw_body(request, limit):
    try:
        body = request.raw_body
    except (binascii.Error, ValueError):
        if _marked_base64(request):
            raise BadRequest("request body is marked base64-encoded but is not valid base64") \
                from None
        raise BadRequest("request body is not valid UTF-8") from None
    if body is None:
        return b""
    if len(body) > limit:
        raise PayloadTooLarge("request body of %d bytes exceeds the limit of %d"
                              % (len(body), limit))
    return body


def _marked_base64(request):
    original = getattr(request, "to_original_event", None)
    event = original() if callable(original) else None
    return bool((event or {}).get("isBase64Encoded"))


def from_environment(env=None):
    """The service the Lambda runs, with its model loaded now (the init
    phase) unless Chalice's CLI is only importing the app (it sets
    AWS_CHALICE_CLI_MODE for every command, ``chalice local`` included, which
    then loads on the first request)."""
    env = os.environ if env is None else env
    try:
        settings = Settings.from_env(env)
        problem = None
    except ValueError as exc:
        settings = Settings(BUNDLED_MODEL_DIR, DEFAULT_MAX_ROWS, DEFAULT_MAX_BODY_BYTES, True)
        problem = "configuration error: %s" % exc
    service = Service(settings)
    if problem:
        service.model.fail(problem)
    elif not env.get("AWS_CHALICE_CLI_MODE"):
        service.model.load()
    if service.model.error:  # counted by the init-failure alarm
        sys.stdout.write(metrics.init_failure_line(service.model.error))
    return service
