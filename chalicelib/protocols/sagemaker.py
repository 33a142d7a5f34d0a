"""SageMaker's inference-container contract: ``GET /ping`` and
``POST /invocations`` with ``text/csv``, ``application/json`` (a JSON array
of rows, or one row) or ``application/x-npy`` (a NumPy ``.npy`` array),
answered in the type the ``Accept`` header asks for: JSON
(``{"predictions": [...]}``, also for ``*/*`` or no ``Accept``), CSV (one
prediction per line) or NPY (the predictions array); 406 for any other.

CSV is read by the app's own CSV parser and its header rule (one row per
line in the card's feature order, or any order under a header line; the
index column pandas' ``to_csv()`` writes is dropped), the rule documented
in docs/csv-headers.md.
"""
import csv
import io

import numpy as np

from chalicelib.http.errors import BadRequest, NotAcceptable, Unprocessable
from chalicelib.schema.features import CSV_NUMBER
from chalicelib.schema.parsing import parse_request
from chalicelib.protocols.common import dumps, predictions_document
from chalicelib.http.reply import Reply

JSON_TYPE = "application/json"
CSV_TYPE = "text/csv"
NPY_TYPE = "application/x-npy"
ANSWER_TYPES = (JSON_TYPE, CSV_TYPE, NPY_TYPE)
# Media ranges of an Accept header -> the answer type they allow.
_RANGES = {"*/*": JSON_TYPE, "application/*": JSON_TYPE, "text/*": CSV_TYPE,
           JSON_TYPE: JSON_TYPE, CSV_TYPE: CSV_TYPE, NPY_TYPE: NPY_TYPE}


def answer_type(accept):
    """The answer's media type for an ``Accept`` header, in the client's
    order of preference (``q`` weights, then position); NotAcceptable when
    it allows none of JSON, CSV and NPY."""
    if not accept or not accept.strip():
        return JSON_TYPE
    choices = []
    for position, item in enumerate(accept.split(",")):
        media, *params = [p.strip() for p in item.split(";")]
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        answer = _RANGES.get(media.lower())
        if answer and q > 0:
            choices.append((-q, position, answer))
    if not choices:
        raise NotAcceptable("cannot answer in %s; ask for one of: %s"
                            % (accept, ", ".join(ANSWER_TYPES)))
    return min(choices)[2]


def csv_rows(body, content_type, schema, max_rows):
    """The matrix of a CSV body, through the app's own CSV parser and its
    header rule (:func:`chalicelib.schema.parsing.parse_csv`): pandas'
    header and index column are read as on ``POST /model``."""
    return parse_request(body, content_type, schema, max_rows).X


def npy_payload(body):
    """The ``instances`` payload of an ``.npy`` body: a 2-D array of rows
    (or 1-D: one row); never unpickled (``allow_pickle=False``)."""
    try:
        array = np.load(io.BytesIO(body), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise BadRequest("not a readable .npy array of numbers: %s"
                         % str(exc)[:200]) from None
    if not isinstance(array, np.ndarray) or array.dtype.names:
        raise BadRequest("expected a plain .npy array of rows")
    if array.ndim == 1:
        array = array.reshape(1, -1)
    if array.ndim != 2:
        raise Unprocessable("npy: expected a 2-D array of rows, got %d dimensions" % array.ndim)
    return {"instances": array.tolist()}


def json_rows_payload(document, schema):
    """SageMaker's JSON: an array of rows, or a single row (an array of
    values or an object keyed by feature name). For an all-number model a
    number written as a string (``[["5.1", "3.5", ...]]``) is that number,
    as the scikit-learn container's numpy conversion reads it."""
    if document and all(type(v) not in (list, dict) for v in document):
        document = [document]
    if schema.numeric:
        document = [[_number_of(v) for v in row] if type(row) is list else
                    {k: _number_of(v) for k, v in row.items()} if type(row) is dict else row
                    for row in document]
    return {"instances": document}


def _number_of(value):
    if type(value) is str and CSV_NUMBER.match(value.strip()):
        return float(value)
    return value


def render(model, predictions, proba, media_type, bare=False):
    """The answer in ``media_type`` (from :func:`answer_type`); ``bare``:
    JSON is the bare array of predictions (the container's answer to an
    array or NPY request) unless probabilities were asked for."""
    if media_type == JSON_TYPE:
        if bare and proba is None:
            return Reply(200, dumps(predictions.tolist()), model.headers)
        return Reply(200, dumps(predictions_document(model, predictions, proba)),
                     model.headers)
    headers = dict(model.headers, **{"Content-Type": media_type})
    if media_type == CSV_TYPE:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        for value in predictions.tolist():
            writer.writerow(value if isinstance(value, list) else [value])
        return Reply(200, out.getvalue(), headers)
    buffer = io.BytesIO()
    array = predictions if predictions.dtype != object else np.asarray(predictions.tolist())
    np.save(buffer, array, allow_pickle=False)
    return Reply(200, buffer.getvalue(), headers)
