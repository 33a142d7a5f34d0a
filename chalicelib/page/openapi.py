"""The API's OpenAPI 3.1 document, generated from the model card.

``GET /openapi.json`` serves it. The request schema of ``POST /model`` is
built from the card the app serves: the feature names (in order), their
count, their types, and whether ``null`` (a missing value) is allowed; the
row limit comes from the settings, the security scheme from the stage's
``API_AUTH``. The document describes what the app really does: every status
an operation can answer is listed, with the ``{"Code", "Message"}`` error
body, and schemathesis checks it against a running ``chalice local``.

It is built once per process, on the first request for it, and cached.
Nothing here runs on the prediction path.
"""
import json
import re
import threading

from chalicelib.schema.card import TASKS
from chalicelib.schema.parsing import CSV_TYPE, JSON_TYPE

OPENAPI_VERSION = "3.1.0"
JSON_SCHEMA_DIALECT = "https://spec.openapis.org/oas/3.1/dialect/base"
# The `Code` each status carries (Chalice's error shape; chalicelib/http/errors.py).
ERROR_CODES = {
    "400": ("BadRequestError", "Malformed body or wrong structure: not JSON/CSV, not UTF-8, "
                               "empty, duplicate keys, unknown keys, none or two formats, "
                               "a row that is not a list/object, a bad `probabilities` value."),
    "413": ("RequestEntityTooLargeError",
            "More rows than the limit, or a body over the byte limit."),
    "415": ("UnsupportedMediaType", "Not `application/json` or `text/csv`, or a charset "
                                    "other than UTF-8."),
    "422": ("UnprocessableEntityError", "Values that do not fit the model: wrong feature "
                                        "count, ragged rows, non-numbers, booleans, "
                                        "NaN/Infinity, unknown or missing features, "
                                        "`probabilities` for a model without `predict_proba`."),
    "500": ("InternalServerError", "The model itself raised (the detail is logged only)."),
    "503": ("ServiceUnavailable", "The model is not loaded; the message says why."),
}
# API Gateway answers these itself, before the function runs, when the stage
# requires a key (403: missing/invalid key; 429: usage plan throttle/quota)
# or IAM auth (403: unsigned or not allowed).
GATEWAY_ERRORS = {
    "403": "API Gateway refused the request: missing or invalid API key, or (IAM) "
           "an unsigned or unauthorized request.",
    "429": "API Gateway throttled the request (usage plan rate or quota).",
}
SECURITY_SCHEMES = {
    "api_key": ("api_key", {"type": "apiKey", "in": "header", "name": "x-api-key",
                            "description": "An API Gateway API key attached to a usage plan "
                                           "of this stage (`make api-key`; docs/operate.md)."}),
    # What Chalice's IAMAuthorizer puts in API Gateway's swagger.
    "iam": ("sigv4", {"type": "apiKey", "in": "header", "name": "Authorization",
                      "x-amazon-apigateway-authtype": "awsSigv4",
                      "description": "AWS Signature Version 4 (IAM) signed requests."}),
}

_cache = {}
_lock = threading.Lock()


def document_json(service):
    """The document of ``service`` as JSON text, built once per process."""
    config = service.config
    key = (config.model_dir, config.max_rows, config.max_body_bytes, config.access.auth)
    text = _cache.get(key)
    if text is None:
        with _lock:
            text = _cache.get(key)
            if text is None:
                card, _ = service.displayed_card()
                text = _cache[key] = json.dumps(build_document(
                    card, max_rows=config.max_rows,
                    max_body_bytes=config.max_body_bytes, auth=config.access.auth))
    return text


# --------------------------------------------------------------------------
# Schemas generated from the card.

def _row_schemas(card):
    """(row as a list, row as an object) schemas for ``card``."""
    if card is None:
        return ({"type": "array", "minItems": 1, "items": {"type": ["number", "null"]}},
                {"type": "object", "minProperties": 1,
                 "additionalProperties": {"type": ["number", "null"]}})
    names = list(card.feature_names)
    schema = card.schema
    values = [f.json_schema(schema.takes_missing(j)) for j, f in enumerate(schema.features)]
    n = len(names)
    # Lists carry values by position; the number type is the same for all
    # features unless the card says otherwise.
    if all(v == values[0] for v in values):
        list_row = {"type": "array", "minItems": n, "maxItems": n, "items": values[0]}
    else:
        list_row = {"type": "array", "minItems": n, "maxItems": n,
                    "prefixItems": values, "items": False}
    list_row["description"] = "%d values in the card's feature order: %s" % (n, ", ".join(names))
    object_row = {
        "type": "object",
        "description": "One value per feature, keyed by feature name, in any order.",
        "properties": {name: dict(value, title=name) for name, value in zip(names, values)},
        "required": names,
        "additionalProperties": False,
    }
    return list_row, object_row


def _rows(row_ref, max_rows):
    return {"type": "array", "minItems": 1, "maxItems": max_rows, "items": {"$ref": row_ref}}


def _columns_schema(card):
    if card is None:
        return {"type": "array", "items": {"type": "string"}, "uniqueItems": True}
    names = list(card.feature_names)
    return {"type": "array", "items": {"enum": names}, "uniqueItems": True,
            "minItems": len(names), "maxItems": len(names),
            "description": "Every feature name exactly once, in any order; the values of "
                           "`data` rows follow this order. Default: the card's order."}


def _label_schema(card):
    """A prediction: one of the card's classes, or a number (regression)."""
    if card is None:
        return {}
    classes = card.classes
    if card.task == "classification" and isinstance(classes, list) and classes and \
            all(isinstance(c, (str, int, float, bool)) for c in classes):
        return {"enum": classes}
    if card.task in ("multilabel", "multioutput"):
        return {"type": "array", "description": "one value per output"}
    if card.task == "clustering":
        return {"type": "integer", "description": "the cluster"}
    if card.task == "outlier_detection":
        return {"enum": [-1, 1], "description": "-1 for an outlier, 1 for an inlier"}
    if card.task == "regression":
        return {"type": ["number", "array"], "items": {"type": "number"}}
    return {}


def build_document(card, *, max_rows, max_body_bytes, auth="none"):
    """The OpenAPI 3.1 document (a dict) for a model ``card`` (a
    :class:`~chalicelib.schema.card.ModelCard`, or None when it cannot be read)."""
    list_row, object_row = _row_schemas(card)
    label = _label_schema(card)
    texts = card is not None and card.raw.get("input") == "texts"
    multi_output = card is not None and card.task in ("multilabel", "multioutput")
    probabilities = {"type": "boolean", "default": False,
                     "description": "Add `classes` and `probabilities` (one list per row, in "
                                    "`classes` order); 422 for a model without `predict_proba`."}
    if card is None:
        title, version, summary = "sklearn-serverless", "0", "model card unavailable"
    else:
        title, version = "%s (sklearn-serverless)" % card.name, card.version
        summary = "%s model, %d features: %s" % (card.task, card.n_features,
                                                 ", ".join(card.feature_names))

    def with_options(required_key, value):
        return {"type": "object", "required": [required_key], "additionalProperties": False,
                "properties": {required_key: value, "probabilities": probabilities}}

    schemas = {
        "Row": list_row,
        "Record": object_row,
        "InstancesLists": with_options("instances", _rows("#/components/schemas/Row", max_rows)),
        "InstancesObjects": with_options("instances", _rows("#/components/schemas/Record",
                                                            max_rows)),
        "DataframeSplit": with_options("dataframe_split", {
            "type": "object", "required": ["data"], "additionalProperties": False,
            "properties": {
                "columns": _columns_schema(card),
                "data": _rows("#/components/schemas/Row", max_rows),
                "index": {"type": "array", "description": "One label per row (ignored)."},
            }}),
        "DataframeRecords": with_options("dataframe_records",
                                         _rows("#/components/schemas/Record", max_rows)),
        "InstancesTexts": with_options("instances", {
            "type": "array", "minItems": 1, "maxItems": max_rows, "items": {"type": "string"},
            "description": "A text model's rows as plain strings, one text per row."}),
        "PredictRequest": {
            "description": "Exactly one of `instances` (rows as lists or as objects%s), "
                           "`dataframe_split`, `dataframe_records`; optionally `probabilities`."
                           % (", or texts" if texts else ""),
            "oneOf": [{"$ref": "#/components/schemas/" + name} for name in
                      ("InstancesLists", "InstancesObjects", "DataframeSplit",
                       "DataframeRecords") + (("InstancesTexts",) if texts else ())],
        },
        "ModelIdentity": {
            "type": "object", "required": ["name", "version"], "additionalProperties": False,
            "properties": {"name": {"type": "string"}, "version": {"type": "string"}},
        },
        "Prediction": {
            "type": "object", "required": ["predictions", "model"], "additionalProperties": False,
            "dependentRequired": {"classes": ["probabilities"], "probabilities": ["classes"]},
            "properties": {
                "predictions": {"type": "array", "minItems": 1, "maxItems": max_rows,
                                "items": label,
                                "description": "One per row, labels exactly as trained."},
                "model": {"$ref": "#/components/schemas/ModelIdentity"},
                "classes": {"type": ["array", "null"], "items": label},
                "probabilities": {"type": "array", "items": {"type": "array"}} if multi_output
                else {"type": "array", "items": {
                    "type": "array", "items": {"type": "number", "minimum": 0, "maximum": 1}}},
            },
        },
        "ModelCard": {
            "type": "object", "required": ["name", "version", "task", "features", "sha256",
                                           "versions"],
            "properties": {
                "task": {"enum": list(TASKS)},
                "features": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "required": ["name"],
                    "properties": {"name": {"type": "string"}, "type": {"type": "string"}}}},
                "classes": {"type": ["array", "null"]},
                "accepts_missing_values": {"type": "boolean"},
                "sha256": {"type": "string"},
                "versions": {"type": "object"},
            },
        },
        "Health": {
            "type": "object", "required": ["status", "name", "version"],
            "additionalProperties": False,
            "properties": {"status": {"const": "ok"}, "name": {"type": "string"},
                           "version": {"type": "string"}},
        },
        "Error": {
            "type": "object", "required": ["Code", "Message"], "additionalProperties": False,
            "properties": {"Code": {"type": "string"}, "Message": {"type": "string"}},
        },
        "GatewayError": {"type": "object", "properties": {"message": {"type": "string"}}},
        "OpenAPI": {"type": "object", "required": ["openapi", "info", "paths"]},
    }
    model_headers = {
        "X-Model-Name": {"required": True, "schema": {"type": "string"},
                         "description": "The served model's name (its card)."},
        "X-Model-Version": {"required": True, "schema": {"type": "string"},
                            "description": "The served model's version (its card)."},
        "X-Model-Runtime": {"required": True, "schema": {"type": "string",
                                                         "enum": ["onnxruntime", "scikit-learn"]},
                            "description": "The runtime that answered: the card's ONNX graph "
                                           "through ONNX Runtime, or its pickle through "
                                           "scikit-learn."},
    }

    def ok(description, schema_name):
        return {"description": description, "headers": model_headers,
                "content": {JSON_TYPE: {"schema": {"$ref": "#/components/schemas/"
                                                             + schema_name}}}}

    def error(status):
        code, description = ERROR_CODES[status]
        return {"description": description, "content": {JSON_TYPE: {"schema": {
            "allOf": [{"$ref": "#/components/schemas/Error"}],
            "properties": {"Code": {"const": code}}}}}}

    def gateway(status):
        return {"description": GATEWAY_ERRORS[status],
                "content": {JSON_TYPE: {"schema": {"$ref": "#/components/schemas/GatewayError"}}}}

    secured = auth in SECURITY_SCHEMES

    def operation(op_id, summary_, responses, protected, **extra):
        op = {"operationId": op_id, "summary": summary_}
        op.update(extra)
        responses = dict(responses)
        if protected and secured:
            op["security"] = [{SECURITY_SCHEMES[auth][0]: []}]
            responses.update({s: gateway(s) for s in GATEWAY_ERRORS})
        op["responses"] = dict(sorted(responses.items()))
        return op

    predict = operation(
        "predict", "Predict for a batch of rows",
        {"200": ok("Predictions for every row, in order.", "Prediction"),
         **{s: error(s) for s in ("400", "413", "415", "422", "500", "503")}},
        protected=True,
        description="Rows as JSON (four shapes) or CSV (one row per line in feature order, "
                    "or any order under a header line). At most %d rows and %d bytes per "
                    "request." % (max_rows, max_body_bytes),
        parameters=[{
            "name": "probabilities", "in": "query", "required": False,
            "schema": {"type": "boolean"},
            "description": "For `text/csv` bodies: add class probabilities (`true`/`false`, "
                           "`1`/`0`); a JSON body says it in its `probabilities` key.",
        }],
        requestBody={"required": True, "content": {
            JSON_TYPE: dict({"schema": {"$ref": "#/components/schemas/PredictRequest"}},
                            **({"example": card.raw["example"]}
                               if card is not None and isinstance(card.raw.get("example"), dict)
                               else {})),
            CSV_TYPE: {"schema": {
                "type": "string",
                "description": "UTF-8 CSV: one row per line in the card's feature order, or "
                               "a header line naming every feature, in any order.%s"
                               % (" Empty fields, `NaN` and `NA` mean missing."
                                  if card is not None and card.accepts_missing else ""),
            }},
        }},
    )
    paths = {
        "/model": {
            "post": predict,
            "get": operation("modelCard", "The model card (model.json)",
                             {"200": ok("The card as written.", "ModelCard"),
                              "503": error("503")}, protected=True),
        },
        "/health": {"get": operation(
            "health", "Is the model loaded and usable?",
            {"200": ok("The model is loaded.", "Health"), "503": error("503")},
            protected=False)},
        "/openapi.json": {"get": operation(
            "openapi", "This document",
            {"200": {"description": "The OpenAPI 3.1 document of this API.",
                     "content": {JSON_TYPE: {"schema": {"$ref": "#/components/schemas/OpenAPI"}}}}},
            protected=False)},
    }
    paths.update(_protocol_paths(operation))
    schemas.update(PROTOCOL_ERROR_SCHEMAS)
    document = {
        "openapi": OPENAPI_VERSION,
        "jsonSchemaDialect": JSON_SCHEMA_DIALECT,
        "info": {"title": title, "version": version, "summary": summary},
        "paths": paths,
        "components": {"schemas": schemas},
    }
    if secured:
        name, scheme = SECURITY_SCHEMES[auth]
        document["components"]["securitySchemes"] = {name: scheme}
    return document


# The peers' protocols (chalicelib/protocols), one operation per route of
# app.PROTOCOL_ROUTES plus GET /: (protocol, summary, protected, request
# body types or None, 200 answer types, error statuses).
_JSON_ONLY = (JSON_TYPE,)
PROTOCOL_OPERATIONS = {
    ("get", "/"): ("kserve_v1", "The try-it page for a browser (`Accept: text/html`); KServe "
                   "V1's liveness `{\"status\": \"alive\"}` for any other client", False, None,
                   (JSON_TYPE, "text/html"), ("503",)),
    ("get", "/ping"): ("mlflow", "MLflow and SageMaker: 200 (empty body) once the model is "
                       "loaded", False, None, ("text/plain",), ("503",)),
    ("get", "/version"): ("mlflow", "MLflow: the server's version, as text", False, None,
                          ("text/plain",), ("503",)),
    ("post", "/invocations"): ("mlflow", "MLflow's scoring protocol (JSON object: "
                               "dataframe_split, dataframe_records, instances, inputs; CSV) and "
                               "SageMaker's contract (JSON array of rows, CSV, NPY)", True,
                               (JSON_TYPE, "text/csv", "application/x-npy"),
                               (JSON_TYPE, "text/csv", "application/x-npy"),
                               ("400", "406", "413", "415", "503")),
    ("get", "/v1/models"): ("kserve_v1", "KServe V1: the served model's name", False, None,
                            _JSON_ONLY, ("503",)),
    ("get", "/v1/models/{segment}"): ("kserve_v1", "KServe V1: is the model `{segment}` ready",
                                      False, None, _JSON_ONLY, ("404", "503")),
    ("post", "/v1/models/{segment}"): ("kserve_v1", "KServe V1: `POST /v1/models/{name}:predict` "
                                       "with instances or inputs", True, _JSON_ONLY, _JSON_ONLY,
                                       ("400", "404", "413", "415", "422", "503")),
    ("get", "/v2"): ("open_inference", "Open Inference: server metadata", False, None,
                     _JSON_ONLY, ()),
    ("get", "/v2/health/live"): ("open_inference", "Open Inference: server liveness", False,
                                 None, _JSON_ONLY, ()),
    ("get", "/v2/health/ready"): ("open_inference", "Open Inference: server readiness", False,
                                  None, _JSON_ONLY, ("503",)),
    ("get", "/v2/models"): ("open_inference", "KServe V2: the list of served models", False,
                            None, _JSON_ONLY, ("503",)),
    ("get", "/v2/models/{name}"): ("open_inference", "Open Inference: model metadata", True,
                                   None, _JSON_ONLY, ("404", "503")),
    ("get", "/v2/models/{name}/ready"): ("open_inference", "Open Inference: model readiness",
                                         False, None, _JSON_ONLY, ("404", "503")),
    ("post", "/v2/models/{name}/infer"): ("open_inference", "Open Inference: inference (JSON "
                                          "tensors or the binary tensor data extension)", True,
                                          (JSON_TYPE, "application/octet-stream"),
                                          (JSON_TYPE, "application/octet-stream"),
                                          ("400", "404", "413", "415", "422", "503")),
    ("get", "/v2/models/{name}/config"): ("open_inference", "Triton: model configuration",
                                          True, None, _JSON_ONLY, ("404", "503")),
    ("get", "/v2/models/{name}/stats"): ("open_inference", "Triton: this instance's inference "
                                         "statistics", True, None, _JSON_ONLY, ("404", "503")),
    ("get", "/v2/models/{name}/versions/{version}"): (
        "open_inference", "Open Inference: model metadata of a version", True, None,
        _JSON_ONLY, ("404", "503")),
    ("get", "/v2/models/{name}/versions/{version}/ready"): (
        "open_inference", "Open Inference: readiness of a version", False, None, _JSON_ONLY,
        ("404", "503")),
    ("post", "/v2/models/{name}/versions/{version}/infer"): (
        "open_inference", "Open Inference: inference on a version", True,
        (JSON_TYPE, "application/octet-stream"), (JSON_TYPE, "application/octet-stream"),
        ("400", "404", "413", "415", "422", "503")),
    ("get", "/v2/models/{name}/versions/{version}/config"): (
        "open_inference", "Triton: model configuration of a version", True, None, _JSON_ONLY,
        ("404", "503")),
    ("get", "/v2/models/{name}/versions/{version}/stats"): (
        "open_inference", "Triton: statistics of a version", True, None, _JSON_ONLY,
        ("404", "503")),
    ("post", "/v2/repository/index"): ("open_inference", "Triton: the model repository index",
                                       True, _JSON_ONLY, _JSON_ONLY, ("400", "503")),
}
# Each protocol's error body: MLflow's (SageMaker shares /invocations) and
# KServe's (V1 and the Open Inference Protocol).
PROTOCOL_ERROR_SCHEMAS = {
    "MLflowError": {"type": "object", "required": ["error_code", "message"],
                    "properties": {"error_code": {"type": "string"},
                                   "message": {"type": "string"}}},
    "KServeError": {"type": "object", "required": ["error"],
                    "properties": {"error": {"type": "string"}}},
}
_PROTOCOL_ERRORS = {"mlflow": "MLflowError", "kserve_v1": "KServeError",
                    "open_inference": "KServeError"}


def _protocol_paths(operation):
    """The OpenAPI paths of the peers' protocol routes."""
    paths = {}
    for (method, path), (protocol, summary_, protected, request_types, answer_types,
                         errors) in PROTOCOL_OPERATIONS.items():
        error_ref = {"$ref": "#/components/schemas/" + _PROTOCOL_ERRORS[protocol]}
        responses = {"200": {"description": "Success.",
                             "content": {t: {"schema": {}} for t in answer_types}}}
        for status in errors:
            responses[status] = {"description": "An error in %s's shape." % protocol,
                                 "content": {JSON_TYPE: {"schema": error_ref}}}
        extra = {"tags": [protocol]}
        parameters = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                      for name in re.findall(r"{(\w+)}", path)]
        if parameters:
            extra["parameters"] = parameters
        if request_types:
            extra["requestBody"] = {"required": True,
                                    "content": {t: {"schema": {}} for t in request_types}}
        op_id = method + re.sub(r"\W+", "_", path).rstrip("_")
        paths.setdefault(path, {})[method] = operation(op_id, summary_, responses, protected,
                                                       **extra)
    return paths
