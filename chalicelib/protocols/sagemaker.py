"""SageMaker's inference-container contract: ``GET /ping`` and
``POST /invocations`` with ``text/csv``, ``application/json`` (a JSON array
of rows, or one row) or ``application/x-npy`` (a NumPy ``.npy`` array),
answered in the type the ``Accept`` header asks for: JSON
(``{"predictions": [...]}``, also for ``*/*`` or no ``Accept``), CSV (one
prediction per line) or NPY (the predictions array); 406 for any other.

CSV is read by the app's own CSV parser (one row per line in the card's
feature order, or any order under a header line), after dropping a leading
unnamed column under a header: the index column pandas' ``to_csv()``
writes, which MLflow clients send.
"""
import csv
import io

import numpy as np

from chalicelib.http.errors import BadRequest, NotAcceptable, Unprocessable
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
    """The matrix of a CSV body, through the app's own CSV parser."""
    return parse_request(_drop_index_column(body), content_type, schema, max_rows).X


def _drop_index_column(body):
    """The CSV without pandas' index column: a header line whose first
    field is empty (or pandas' ``Unnamed: 0``) while another names a
    column. Other bodies are returned unchanged."""
    head = body.lstrip(b"\xef\xbb\xbf")
    first = head.split(b"\n", 1)[0].decode("utf-8", "replace").strip()
    if not first.startswith((",", '"",', "Unnamed: 0,")):
        return body
    try:
        reader = csv.reader(io.StringIO(head.decode("utf-8"), newline=""), strict=True)
        lines = [fields[1:] for fields in reader if fields]
    except (UnicodeDecodeError, csv.Error):
        return body  # the app's parser names the problem
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(lines)
    return out.getvalue().encode("utf-8")


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


def json_rows_payload(document):
    """SageMaker's JSON: an array of rows, or a single row (an array of
    values or an object keyed by feature name)."""
    if document and all(type(v) not in (list, dict) for v in document):
        document = [document]
    return {"instances": document}


def render(model, predictions, proba, media_type):
    """The answer in ``media_type`` (from :func:`answer_type`)."""
    if media_type == JSON_TYPE:
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
