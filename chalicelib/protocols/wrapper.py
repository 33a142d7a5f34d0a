"""The one request wrapper every route goes through, ``/model`` included:
it runs the protocol's work, turns any :class:`ServiceError` into that
protocol's error body (the status always comes from the error's type), and
writes one log line (and metrics record) per request.

A protocol is a name here; :func:`render_error` is the only place that
knows each protocol's error shape.
"""
import json
import sys
import time

from chalicelib.http.errors import ServiceError
from chalicelib.http.reply import JSON_HEADERS, Reply
from chalicelib.ops import metrics, tracing

MODEL = "model"
MLFLOW = "mlflow"
SAGEMAKER = "sagemaker"
KSERVE_V1 = "kserve_v1"
OPEN_INFERENCE = "open_inference"

# MLflow's error codes (mlflow.exceptions, databricks_pb2.ErrorCode) for the
# statuses this app answers; MLflow's own server uses BAD_REQUEST for any
# input it cannot read.
_MLFLOW_CODES = {
    400: "BAD_REQUEST", 404: "RESOURCE_DOES_NOT_EXIST", 406: "BAD_REQUEST",
    413: "RESOURCE_EXHAUSTED", 415: "BAD_REQUEST", 422: "INVALID_PARAMETER_VALUE",
    500: "INTERNAL_ERROR", 503: "TEMPORARILY_UNAVAILABLE",
}


def render_error(protocol, error, headers=JSON_HEADERS):
    """The :class:`Reply` of ``error`` in ``protocol``'s error shape:
    ``/model`` ``{"Code", "Message"}`` (Chalice's own error shape); MLflow
    (and SageMaker, which shares its ``/invocations``) ``{"error_code",
    "message"}``; KServe V1 and V2 ``{"error": message}``."""
    if protocol == MODEL:
        body = {"Code": error.code, "Message": error.message}
    elif protocol in (MLFLOW, SAGEMAKER):
        # An error may carry MLflow's own code (INVALID_PARAMETER_VALUE at 400).
        body = {"error_code": getattr(error, "mlflow_code", None)
                or _MLFLOW_CODES.get(error.status, "INTERNAL_ERROR"),
                "message": error.message}
    else:
        body = {"error": error.message}
    return Reply(error.status, json.dumps(body), headers)


def handle(service, request, protocol, route, work):
    """Run ``work()`` -> ``(Reply, rows)``; a ServiceError becomes the
    protocol's error reply (naming the model, as every answer does once it
    is loaded); one log line per request when the stage logs requests."""
    started = time.perf_counter()
    rows = 0
    try:
        reply, rows = work()
    except ServiceError as error:
        reply = render_error(protocol, error, service.model.headers or JSON_HEADERS)
    if service.config.log_requests:
        _log(service.model, request, route, reply.status, time.perf_counter() - started, rows)
    return reply


# One JSON object per line, as CloudWatch shows it, which is also its EMF
# record (chalicelib/ops/metrics.py): formatted, not built with json.dumps,
# because it is written for every request. One format per route.
_ROUTE_LOGS = {}


def _log(model, request, route, status, elapsed, rows):
    context = getattr(request, "context", None) or {}
    log = _ROUTE_LOGS.get(route) or _ROUTE_LOGS.setdefault(route, metrics.RequestLog(route))
    sys.stdout.write(log.line(model, json.dumps(context.get("requestId")),
                              status, elapsed * 1000, rows))
    if tracing.DAEMON is not None:  # X-Ray on (the stage's xray setting)
        card = model.card
        tracing.record_request(route, status, elapsed,
                               card.name if card else metrics.UNAVAILABLE,
                               card.version if card else metrics.UNAVAILABLE)
