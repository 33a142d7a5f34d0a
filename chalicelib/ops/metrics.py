"""CloudWatch metrics without an API call: the request log line is also a
CloudWatch Embedded Metric Format (EMF) record.

Lambda sends stdout to CloudWatch Logs, and CloudWatch Logs turns every line
carrying an ``_aws`` member into metrics (no PutMetricData call, no client, no
added latency). This module owns the names: the namespace, the dimensions and
the metrics (the alarms of ``deploy/merge-prod.json`` and the tests read them
from here), the per-request line, the init-failure record, and the one piece
of per-process state, "has this execution environment served a request yet"
(the SnapStart after-restore hook resets it: every restored copy of a snapshot
has its own first request).

The line is written for every request, so it is one ``%`` format whose
constant parts (namespace, dimension values, the metric directive) are
rendered once per model and function, not per request. Under ``chalice
local`` (no Lambda, nobody turns the line into metrics) it is a short line
for a person at a terminal instead.
"""
import json
import os
import time

from chalicelib.http.config import METRICS_NAMESPACE

NAMESPACE_ENV = METRICS_NAMESPACE.name
DEFAULT_NAMESPACE = METRICS_NAMESPACE.default
#: What dimension values say when no model is loaded (EMF requires strings).
UNAVAILABLE = "unavailable"

# Dimension names (members of the line, snake_case like its other keys).
FUNCTION = "function"          # AWS_LAMBDA_FUNCTION_NAME; "local" outside Lambda
MODEL_NAME = "model_name"
MODEL_VERSION = "model_version"
ROUTE = "route"
STATUS_CLASS = "status_class"  # "2xx", "4xx", "5xx"
#: Each set is its own metric series in CloudWatch (and billed as such):
#: per function (stable across model versions: what the alarms watch), per
#: model version (latency percentiles of one version), and the full breakdown.
DIMENSION_SETS = (
    (FUNCTION,),
    (FUNCTION, MODEL_NAME, MODEL_VERSION),
    (FUNCTION, MODEL_NAME, MODEL_VERSION, ROUTE, STATUS_CLASS),
)
#: (metric name, CloudWatch unit) of every request record.
REQUEST_METRICS = (
    ("requests", "Count"),
    ("latency_ms", "Milliseconds"),
    ("rows", "Count"),
    ("errors_4xx", "Count"),
    ("errors_5xx", "Count"),
)
#: Written once, at init, when the model did not load.
INIT_FAILURE_METRIC = "model_load_failures"
INIT_FAILURE_DIMENSIONS = ((FUNCTION,),)


def namespace():
    return METRICS_NAMESPACE.get()


def function_name():
    return os.environ.get("AWS_LAMBDA_FUNCTION_NAME") or "local"


def chalice_local():
    """Served by a Chalice command (``chalice local``) rather than by Lambda:
    Chalice's CLI sets AWS_CHALICE_CLI_MODE; Lambda sets its function name."""
    return (os.environ.get("AWS_CHALICE_CLI_MODE") == "true"
            and not os.environ.get("AWS_LAMBDA_FUNCTION_NAME"))


def _directive(names_units, dimension_sets):
    return json.dumps([{
        "Namespace": namespace(),
        "Dimensions": [list(dims) for dims in dimension_sets],
        "Metrics": [{"Name": name, "Unit": unit} for name, unit in names_units],
    }])


class _Process:
    """Per execution environment: has it answered a request yet?"""
    cold = True


PROCESS = _Process()


def reset_process():
    """A restored snapshot is a new execution environment: its first request
    is a cold start again (called by the SnapStart after-restore hook)."""
    PROCESS.cold = True


class RequestLog:
    """The log line of one route: ``line(model, ...)`` is one JSON object,
    the request's log entry and its EMF record at once."""

    def __init__(self, route):
        self.route = route
        self._card = self._format = None

    def line(self, model, request_id_json, status, latency_ms, rows):
        """``model``: the ServedModel (its card names the model, or no card
        when it did not load); ``request_id_json``: the request id as JSON."""
        if model.card is not self._card or self._format is None:
            self._format = self._render(model)
            self._card = model.card
        cold = PROCESS.cold
        if cold:
            PROCESS.cold = False
        if chalice_local():
            return "%s -> %d, %d row%s, %.1f ms%s\n" % (
                self.route, status, rows, "" if rows == 1 else "s", latency_ms,
                " (first request)" if cold else "")
        status_class = status // 100
        return self._format % (request_id_json, status, latency_ms, rows, status_class,
                               status_class == 4, status_class == 5,
                               "true" if cold else "false", time.time() * 1000)

    def _render(self, model):
        """The line's format with everything constant filled in; ``%``
        escaped in those values so the per-request format sees only its own
        placeholders."""
        card = model.card
        constants = {
            "route": json.dumps(self.route),
            "model_name": json.dumps(card.name if card else UNAVAILABLE),
            "model_version": json.dumps(card.version if card else UNAVAILABLE),
            "function": json.dumps(function_name()),
            "directive": _directive(REQUEST_METRICS, DIMENSION_SETS),
        }
        constants = {k: v.replace("%", "%%") for k, v in constants.items()}
        # request_id stays first: it is how a reader (and the package test)
        # finds the request lines among the others.
        return ('{"request_id": %%s, "route": %(route)s, "status": %%d, '
                '"latency_ms": %%.3f, "rows": %%d, "model_version": %(model_version)s, '
                '"model_name": %(model_name)s, "function": %(function)s, '
                '"status_class": "%%dxx", "requests": 1, "errors_4xx": %%d, '
                '"errors_5xx": %%d, "cold_start": %%s, '
                '"_aws": {"Timestamp": %%d, "CloudWatchMetrics": %(directive)s}}\n'
                % constants)


def init_failure_line(reason):
    """The record of a model that did not load at init: one
    ``model_load_failures`` count per function (what the init-failure alarm
    watches), and the reason for a reader of the log."""
    return json.dumps({
        "event": "model_load_failed",
        "reason": reason,
        FUNCTION: function_name(),
        INIT_FAILURE_METRIC: 1,
        "_aws": {"Timestamp": int(time.time() * 1000),
                 "CloudWatchMetrics": json.loads(_directive(
                     [(INIT_FAILURE_METRIC, "Count")], INIT_FAILURE_DIMENSIONS))},
    }) + "\n"
