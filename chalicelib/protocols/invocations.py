"""``POST /invocations``, shared by MLflow's scoring server and SageMaker's
container contract. The content decides, in this order:

1. ``Content-Type`` ``application/x-npy``: SageMaker (an ``.npy`` array of rows);
2. ``text/csv``: rows per line, a header line optional (SageMaker sends
   none, MLflow's clients send pandas' header and index column: both read);
3. ``application/json`` (or no ``Content-Type``): a JSON **object** is
   MLflow's request (``dataframe_split``, ``dataframe_records``,
   ``instances``, ``inputs``, ``params``); a JSON **array** is SageMaker's
   rows (or one row);
4. anything else: 415, as is a Content-Type parameter other than ``charset``
   (and ``header`` for CSV): MLflow's rule.

``ContentType``, the header some AWS services send, counts when
``Content-Type`` is absent.

The answer's type follows ``Accept`` (JSON when absent or ``*/*``: what
MLflow's client gets; CSV or NPY on request, 406 otherwise); a JSON answer
to SageMaker's array or NPY request is the bare array of predictions, as
the SageMaker scikit-learn container answers. Errors are in MLflow's
``{"error_code", "message"}`` shape for both, with MLflow's statuses (a
value the model cannot take: 400 ``INVALID_PARAMETER_VALUE``).
"""
from chalicelib.http import media
from chalicelib.http.errors import BadRequest, Unprocessable, UnsupportedMediaType
from chalicelib.protocols.identity import SERVER_VERSION
from chalicelib.protocols.mlflow import InvalidParameterValue
from chalicelib.protocols import mlflow, sagemaker
from chalicelib.http.reply import Reply
from chalicelib.protocols.common import body_bytes, decode_text, load_json, renamed, run_payload
from chalicelib.protocols.wrapper import MLFLOW, handle

ROUTE = "POST /invocations"


def _media_type(content_type):
    """The media type; MLflow's rule for its parameters: ``charset``
    (UTF-8 only) and, for ``text/csv``, RFC 4180's ``header``; any other
    parameter (MLflow 1.x's ``format=pandas-split`` among them) is a 415."""
    media_type, params = media.content_type(content_type, sagemaker.JSON_TYPE)
    for key in params:
        if not (key == "header" and media_type == sagemaker.CSV_TYPE):
            raise UnsupportedMediaType(
                "Unrecognized content type parameters: %s. The scoring protocol of MLflow 2.0 "
                "and later takes the format from the body's keys (dataframe_split, "
                "dataframe_records, instances, inputs), not from the Content-Type" % key)
    return media_type


def _content_type(headers):
    """``Content-Type``, or ``ContentType`` as some AWS services send it."""
    return headers.get("content-type") or headers.get("contenttype")


def invocations(service, request):
    return handle(service, request, MLFLOW, ROUTE, lambda: _as_mlflow(_invoke, service, request))


def _as_mlflow(work, service, request):
    """MLflow's statuses for its route: a value the model cannot take is
    ``INVALID_PARAMETER_VALUE``, which MLflow answers with 400."""
    try:
        return work(service, request)
    except Unprocessable as error:
        raise InvalidParameterValue(error.message) from None


def _invoke(service, request):
    headers = request.headers
    content_type = _content_type(headers)
    media_type = _media_type(content_type)
    answer = sagemaker.answer_type(headers.get("accept"))
    body = body_bytes(service, request)
    asked = (request.query_params or {}).get("probabilities")  # MLflow documents: in params
    bare = False  # SageMaker's array requests get a bare array as JSON answer
    if media_type == sagemaker.NPY_TYPE:
        result = run_payload(service, sagemaker.npy_payload(body, service.config.max_rows),
                             media.query_flag(asked),
                             renamed("instances", "npy"))
        bare = True
    elif media_type == sagemaker.CSV_TYPE:
        model = service.model.ready()
        X = sagemaker.csv_rows(body, content_type, model.schema, service.config.max_rows)
        predictions, proba = model.infer(X, media.query_flag(asked))
        result = model, predictions, proba, len(X)
    elif media_type == sagemaker.JSON_TYPE:
        document = load_json(decode_text(body))
        if type(document) is dict:
            result = mlflow.predict_document(service, document)
        elif type(document) is list:
            model = service.model.ready()
            try:
                result = run_payload(service, sagemaker.json_rows_payload(document, model.schema),
                                     media.query_flag(asked), renamed("instances", "rows"))
            except Unprocessable as error:
                # Not rows of this model: MLflow's answer to a JSON array.
                raise BadRequest("%s; MLflow's requests are a JSON object (dataframe_split, "
                                 "dataframe_records, instances, inputs), SageMaker's an "
                                 "array of rows" % error.message) from None
            bare = True
        else:
            raise BadRequest("expected a JSON object (MLflow: dataframe_split, "
                             "dataframe_records, instances, inputs) or an array of rows")
    else:
        raise UnsupportedMediaType("Unsupported media type: %s; send one of: application/json, "
                                   "text/csv, application/x-npy" % content_type)
    model, predictions, proba, rows = result
    return sagemaker.render(model, predictions, proba, answer, bare), rows


def ping(service, request):
    """``GET /ping`` (MLflow and SageMaker): 200 with an empty body (the
    SageMaker contract; MLflow's clients read only the status) once the
    model is loaded, else 503 saying why."""
    def work():
        model = service.model.ready()
        return Reply(200, "", model.headers), 0
    return handle(service, request, MLFLOW, "GET /ping", work)


def version(service, request):
    """``GET /version`` (MLflow): the server's version, as MLflow's server
    answers its own (the model's is in ``X-Model-Version`` and ``GET /model``)."""
    def work():
        model = service.model.ready()
        return Reply(200, SERVER_VERSION,
                     dict(model.headers, **{"Content-Type": "text/plain"})), 0
    return handle(service, request, MLFLOW, "GET /version", work)
