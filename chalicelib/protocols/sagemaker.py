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
import math

import numpy as np

from chalicelib.http.errors import BadRequest, NotAcceptable, PayloadTooLarge, Unprocessable
from chalicelib.schema.features import CSV_NUMBER
from chalicelib.schema.parsing import parse_request
from chalicelib.protocols.common import dumps, predictions_document
from chalicelib.http.media import accepted
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
    for position, (media, q) in enumerate(accepted(accept)):
        answer = _RANGES.get(media)
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


# Element kinds an .npy body may hold: booleans, integers, floats, text (text
# is refused per cell with the feature's name, like any other body).
_NPY_KINDS = "biufU"
_NPY_MAX_HEADER = 10_000


def npy_payload(body, max_rows):
    """The ``instances`` payload of an ``.npy`` body: a 2-D array of rows
    (or 1-D: one row); never unpickled. The header is read and checked
    before anything is allocated: the array must be exactly the bytes that
    follow it (``prod(shape) * itemsize``) and hold at most ``max_rows``
    rows, so a 128-byte body cannot declare a 2**36-element array."""
    shape, fortran, dtype, offset = _npy_header(body)
    if len(shape) not in (1, 2):
        raise Unprocessable("npy: expected a 2-D array of rows, got %d dimensions" % len(shape))
    rows = 1 if len(shape) == 1 else shape[0]
    if rows > max_rows:
        raise PayloadTooLarge("npy: %d rows, more than the limit of %d per request"
                              % (rows, max_rows))
    count = math.prod(shape)
    present = len(body) - offset
    if count * dtype.itemsize != present:
        raise BadRequest("npy: the header declares shape %s of %s (%d bytes), the body holds "
                         "%d bytes of data" % (shape, dtype.str, count * dtype.itemsize, present))
    array = np.frombuffer(body, dtype=dtype, count=count, offset=offset)
    array = array.reshape(shape, order="F" if fortran else "C")
    if array.ndim == 1:
        array = array.reshape(1, -1)
    return {"instances": array.tolist()}


def _npy_header(body):
    """(shape, fortran order, dtype, data offset) of an ``.npy`` body,
    read with NumPy's header parser (a literal, never evaluated code)."""
    stream = io.BytesIO(body)
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(
                stream, max_header_size=_NPY_MAX_HEADER)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(
                stream, max_header_size=_NPY_MAX_HEADER)
        else:
            raise ValueError("format version %d.%d is not read here" % version)
    except (ValueError, OSError, EOFError, SyntaxError, TypeError) as exc:
        raise BadRequest("not a readable .npy array of numbers: %s"
                         % str(exc)[:200]) from None
    if any(dimension < 0 for dimension in shape):
        raise BadRequest("not a readable .npy array of numbers: negative dimension in shape %s"
                         % (shape,))
    if dtype.names or dtype.hasobject or dtype.subdtype is not None:
        raise BadRequest("expected a plain .npy array of rows")
    if dtype.kind not in _NPY_KINDS or dtype.itemsize == 0:
        raise BadRequest("npy: expected numbers, got elements of type %s" % dtype.str)
    return shape, fortran, dtype, stream.tell()


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
