"""MLflow's scoring-server protocol (what ``mlflow models serve`` speaks and
``mlflow.pyfunc.scoring_server.client.ScoringServerClient`` calls).

A JSON object with exactly one of ``dataframe_split``, ``dataframe_records``,
``instances`` or ``inputs`` (rows as a list, or columns as an object of
lists), and optionally ``params``. ``inputs`` is translated into the app's
own ``instances`` / ``dataframe_split`` payload; the others already are
payloads of ``POST /model``. Of ``params`` the app acts on one key,
``probabilities`` (true: add ``classes`` and ``probabilities`` to the
answer); any other key is accepted and ignored, as MLflow ignores params a
model does not declare. CSV bodies are read by :mod:`.sagemaker`'s CSV
reader (a pandas ``to_csv()`` header and index column included).

A DataFrame without column names (``0..n-1``) is read positionally, in
the card's feature order, as MLflow serves it.

The answer is MLflow's ``{"predictions": [...]}``; errors are
``{"error_code", "message"}`` (see :func:`.wrapper.render_error`).
"""
from chalicelib.http.errors import BadRequest
from chalicelib.protocols.common import renamed, run_payload
from chalicelib.schema.parsing import one_format


class InvalidParameterValue(BadRequest):
    """A value the model cannot take, on MLflow's route: MLflow's
    ``INVALID_PARAMETER_VALUE``, which its server answers with 400."""

    mlflow_code = "INVALID_PARAMETER_VALUE"

FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
OPTIONS = ("params", "probabilities")


def read_params(params):
    """``probabilities`` from MLflow's ``params`` (None or an object)."""
    if params is None:
        return False
    if type(params) is not dict:
        raise BadRequest("expected an object, got %s" % type(params).__name__, ("params",))
    probabilities = params.get("probabilities", False)
    if type(probabilities) is not bool:
        raise BadRequest("expected true or false", ("params", "probabilities"))
    return probabilities


def to_payload(document):
    """``(payload for parse_payload, probabilities, relocate)`` from MLflow's
    JSON request object."""
    key = one_format(document, FORMATS, OPTIONS)
    probabilities = read_params(document.get("params"))
    payload = {k: v for k, v in document.items() if k != "params"}
    if key != "inputs":
        return payload, probabilities, None
    inputs = payload.pop("inputs")
    if type(inputs) is dict:
        payload["dataframe_split"] = _columns_to_split(inputs)
        return payload, probabilities, renamed("dataframe_split", "inputs")
    if type(inputs) is not list:
        raise BadRequest("expected a list of rows or an object of columns, got %s"
                         % type(inputs).__name__, ("inputs",))
    payload["instances"] = inputs
    return payload, probabilities, renamed("instances", "inputs")


def _columns_to_split(columns):
    """MLflow's columnar ``inputs`` ({name: [values]} or {name: value} for
    one row) as a ``dataframe_split``."""
    names = list(columns)
    values = [columns[n] if type(columns[n]) is list else [columns[n]] for n in names]
    lengths = {len(v) for v in values}
    if len(lengths) > 1:
        raise BadRequest("every column needs the same number of values; got %s"
                         % ", ".join("%s: %d" % (n, len(v)) for n, v in zip(names, values)),
                         ("inputs",))
    return {"columns": names, "data": [list(row) for row in zip(*values)]}


def predict_document(service, document):
    """``(model, predictions, probabilities, rows)`` for a JSON request object."""
    payload, probabilities, relocate = to_payload(document)
    model = service.model.ready()
    _positional_columns(payload, model.schema)
    return run_payload(service, payload, probabilities, relocate)


def _positional_columns(payload, schema):
    """A DataFrame built without column names (``pd.DataFrame(X)``, as
    MLflow's own client tests send it) has the names ``0..n-1``: MLflow
    serves it positionally, in the card's feature order; so does this app,
    when none of the card's names is such a number."""
    positional = schema.positional_names
    if set(positional) & set(schema.feature_names):
        return
    split = payload.get("dataframe_split")
    if type(split) is dict and type(split.get("columns")) is list and \
            [str(c) if type(c) is int else c for c in split["columns"]] == positional:
        payload["dataframe_split"] = dict(split, columns=list(schema.feature_names))
    records = payload.get("dataframe_records")
    if type(records) is list and records and all(
            type(r) is dict and len(r) == len(positional) and
            all(k in r for k in positional) for r in records):
        names = schema.feature_names
        payload["dataframe_records"] = [{name: r[k] for name, k in zip(names, positional)}
                                        for r in records]
