"""``POST /invocations``, shared by MLflow's scoring server and SageMaker's
container contract. The content decides, in this order:

1. ``Content-Type`` ``application/x-npy``: SageMaker (an ``.npy`` array of rows);
2. ``text/csv``: rows per line, a header line optional (SageMaker sends
   none, MLflow's clients send pandas' header and index column: both read);
3. ``application/json`` (or no ``Content-Type``): a JSON **object** is
   MLflow's request (``dataframe_split``, ``dataframe_records``,
   ``instances``, ``inputs``, ``params``); a JSON **array** is SageMaker's
   rows (or one row);
4. anything else: 415.

The answer's type follows ``Accept`` (JSON when absent or ``*/*``: what
MLflow's client gets; CSV or NPY on request, 406 otherwise). Errors are in
MLflow's ``{"error_code", "message"}`` shape for both.
"""
from chalicelib.http.errors import BadRequest, UnsupportedMediaType
from chalicelib.protocols import mlflow, sagemaker
from chalicelib.http.reply import Reply
from chalicelib.protocols.common import (MLFLOW, body_bytes, decode_text, handle, load_json,
                                         run_payload)

ROUTE = "POST /invocations"


def _media_type(content_type):
    media, *params = (content_type or sagemaker.JSON_TYPE).split(";")
    media = media.strip().lower()
    for param in params:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset" and \
                value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            raise UnsupportedMediaType("Unsupported charset: %s; send UTF-8" % value.strip())
    return media


def invocations(service, request):
    return handle(service, request, MLFLOW, ROUTE, lambda: _invoke(service, request))


def _invoke(service, request):
    headers = request.headers
    content_type = headers.get("content-type")
    media = _media_type(content_type)
    answer = sagemaker.answer_type(headers.get("accept"))
    body = body_bytes(service, request)
    query = request.query_params or {}
    if media == sagemaker.NPY_TYPE:
        result = run_payload(service, sagemaker.npy_payload(body), _flag(query),
                             ("instances", "npy"))
    elif media == sagemaker.CSV_TYPE:
        model = service.model.ready()
        X = sagemaker.csv_rows(body, content_type, model.schema, service.config.max_rows)
        predictions, proba = model.infer(X, _flag(query))
        result = model, predictions, proba, len(X)
    elif media == sagemaker.JSON_TYPE:
        document = load_json(decode_text(body))
        if type(document) is dict:
            result = mlflow.predict_document(service, document)
        elif type(document) is list:
            result = run_payload(service, sagemaker.json_rows_payload(document), _flag(query),
                                 ("instances", "rows"))
        else:
            raise BadRequest("expected a JSON object (MLflow: dataframe_split, "
                             "dataframe_records, instances, inputs) or an array of rows")
    else:
        raise UnsupportedMediaType("Unsupported media type: %s; send one of: application/json, "
                                   "text/csv, application/x-npy" % content_type)
    model, predictions, proba, rows = result
    return sagemaker.render(model, predictions, proba, answer), rows


def _flag(query):
    """``?probabilities=true``: how CSV, NPY and JSON-array requests ask."""
    value = query.get("probabilities")
    if value is None or value.lower() in ("false", "0"):
        return False
    if value.lower() in ("true", "1"):
        return True
    raise BadRequest("probabilities: expected true or false, got %r" % value)


def ping(service, request):
    """``GET /ping`` (MLflow and SageMaker): 200 once the model is loaded
    (the body is MLflow's ``"\\n"``), else 503 saying why."""
    def work():
        model = service.model.ready()
        return Reply(200, "\n", model.headers), 0
    return handle(service, request, MLFLOW, "GET /ping", work)


def version(service, request):
    """``GET /version`` (MLflow): the served model's version, as text."""
    def work():
        model = service.model.ready()
        return Reply(200, mlflow.version_text(model),
                     dict(model.headers, **{"Content-Type": "text/plain"})), 0
    return handle(service, request, MLFLOW, "GET /version", work)
