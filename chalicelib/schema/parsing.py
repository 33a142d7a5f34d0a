"""Request parsing: every accepted body format becomes what the estimator
takes, through the one :class:`~chalicelib.schema.features.Schema` of the card, or one
precise client error.

Accepted formats (each a small function below):

* ``{"instances": [[...], ...]}``         rows as lists, in feature order
* ``{"instances": [{"name": v}, ...]}``   rows as objects keyed by feature
* ``{"dataframe_split": {"columns", "data"}}`` and
  ``{"dataframe_records": [{...}]}``      MLflow's scoring-server formats
* ``text/csv``                            rows per line, optional header

Each format function only reshapes: it puts the client's values in the
card's feature order and knows how to name a place. The types are the
schema's. For a model whose features are all numbers (``schema.numeric``)
the float64 fast path runs: numpy converts all rows at once and checks
finiteness in one pass, and only when it sees something wrong does a
row-by-row walk name the exact place (``instances[3].petal_width``). Every
other schema takes the typed path: :meth:`Schema.build` checks and coerces
each column (strings, categories, integers, booleans, texts) and builds a
matrix, a DataFrame or a 1-D array of texts.
"""
import codecs
import contextlib
import csv
import io
import itertools
import json
import math
import re

import numpy as np

from chalicelib.http import media
from chalicelib.http.errors import (BadRequest, Column, Line, PayloadTooLarge, Position,
                                     Unprocessable, UnsupportedMediaType)
from chalicelib.schema.features import CSV_NUMBER as _CSV_NUMBER
from chalicelib.schema.features import MISSING_TOKENS
from chalicelib.schema.features import describe as _describe
from chalicelib.schema.features import Schema  # noqa: F401  (the schema every format goes through)

FORMAT_KEYS = ("instances", "dataframe_split", "dataframe_records")
OPTION_KEYS = ("probabilities",)
ACCEPTED_KEYS_TEXT = ", ".join(FORMAT_KEYS + OPTION_KEYS)
JSON_TYPE = "application/json"
CSV_TYPE = "text/csv"
MEDIA_TYPES = (JSON_TYPE, CSV_TYPE)

# JSON's literals true/false can hide in a numeric matrix (numpy turns them
# into 1.0/0.0); their absence from the raw bytes proves there is none.
_BOOL_TOKENS = (b"true", b"false")


class Parsed:
    __slots__ = ("X", "probabilities")

    def __init__(self, X, probabilities):
        self.X = X
        self.probabilities = probabilities


def parse_request(body, content_type, schema, max_rows, probabilities_param=None):
    """Parse a raw body (bytes) into :class:`Parsed` or raise a ServiceError."""
    media_type, params = _media_type(content_type)
    asked_in_query = media.query_flag(probabilities_param)
    text = decode_utf8(body)
    if media_type == CSV_TYPE:
        return Parsed(parse_csv(text, schema, max_rows, media.csv_header(params)),
                      asked_in_query)
    _refuse_container_floods(text, max_rows)
    payload, numbers_only = _load_json(text, max_rows)
    parsed = parse_payload(payload, schema, max_rows, numbers_only=numbers_only,
                           bools_possible="true" in text or "false" in text)
    parsed.probabilities = parsed.probabilities or asked_in_query
    return parsed


# Containers a valid body may hold besides one per row: the top object, a
# dataframe_split object with its columns/data/index lists, some slack.
_CONTAINER_SLACK = 8
_BRACKETS = frozenset("[]{}")


def _refuse_container_floods(text, max_rows):
    """A body with at most two strings, neither holding a bracket, has only
    structural brackets, so two C-speed counts give its
    exact number of lists and objects. More than one per allowed row is a
    413 before decoding: millions of ``{}`` or ``[]`` would otherwise cost
    the decoder time and memory out of proportion to their bytes."""
    if text.count('"') > 4 or "\\" in text:
        return
    # The few strings must hold no bracket for the count to be exact (a text
    # value may be all brackets); without a backslash, no quote is escaped.
    if any(_BRACKETS.intersection(string) for string in text.split('"')[1::2]):
        return
    containers = text.count("[") + text.count("{")
    if containers > max_rows + _CONTAINER_SLACK:
        if "[[[" in text:  # no valid body nests lists three deep
            raise BadRequest("malformed JSON: nested too deeply")
        raise PayloadTooLarge("request body holds %d lists and objects: more rows than the "
                              "limit of %d per request" % (containers, max_rows))


def _media_type(content_type):
    """The body's media type and parameters; ``POST /model`` reads JSON and
    CSV and ignores parameters it does not know (MLflow's route is stricter)."""
    media_type, params = media.content_type(content_type, JSON_TYPE)
    if media_type not in MEDIA_TYPES:
        raise UnsupportedMediaType("Unsupported media type: %s; send one of: %s"
                                   % (content_type, ", ".join(MEDIA_TYPES)))
    return media_type, params


def decode_utf8(body):
    """The text of a body: UTF-8, a BOM dropped; else BadRequest."""
    if isinstance(body, str):
        return body[1:] if body.startswith("\ufeff") else body
    if body.startswith(codecs.BOM_UTF8):
        body = body[len(codecs.BOM_UTF8):]
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest("request body is not valid UTF-8 (byte %d)" % exc.start) from None


def _unique_keys(pairs):
    record = dict(pairs)
    if len(record) != len(pairs):
        seen = set()
        for key, _ in pairs:
            if key in seen:
                raise BadRequest("duplicate key %s in a JSON object" % _describe(key))
            seen.add(key)
    return record


def _strict_decoder(max_objects):
    """A decoder that refuses repeated keys and, counting the objects as it
    completes them, stops a body of more objects than rows allowed: a flood
    of tiny records is refused after ``max_objects``, not after decoding
    millions of dicts."""
    count = 0

    def hook(pairs):
        nonlocal count
        count += 1
        if count > max_objects:
            raise PayloadTooLarge("request body holds more than %d objects: more rows than "
                                  "the limit of %d per request"
                                  % (max_objects, max_objects - _CONTAINER_SLACK))
        return _unique_keys(pairs)
    return json.JSONDecoder(object_pairs_hook=hook)


def decode_json(text, max_rows):
    """A JSON document of any shape (the protocols' bodies), decoded under the
    same guards as ``POST /model``'s: floods refused, keys unique."""
    if not text.strip():
        raise BadRequest("request body is empty")
    _refuse_container_floods(text, max_rows)
    with _json_errors():
        return _strict_decoder(max_rows + _CONTAINER_SLACK).decode(text)


def _load_json(text, max_rows=None):
    """The payload, and whether its body holds nothing but numbers besides the
    top-level keys and a boolean ``probabilities`` (then rows can skip the
    per-value type checks: no string, boolean, null or object hides there)."""
    if not text.strip():
        raise BadRequest("request body is empty; send a JSON object with one of: "
                         + ", ".join(FORMAT_KEYS))
    with _json_errors():
        # An object nested near the start (rows as objects, dataframe_split):
        # its keys may repeat, so check them while decoding.
        if text.find("{", text.find("{") + 1, 256) != -1:
            return _checking_decoder(max_rows).decode(text), False
        payload = json.loads(text)
        if type(payload) is not dict:
            return payload, False
        # Each key takes two quotes: more quotes mean strings somewhere, and
        # a duplicated key among them, so decode again, checking keys.
        if text.count('"') != 2 * len(payload):
            return _checking_decoder(max_rows).decode(text), False
        return payload, _no_literals_but_flags(text, payload)


def _checking_decoder(max_rows):
    """The key-checking decoder, made only when a body needs it (a body of
    plain number rows never does: building one costs a micro-second or two
    per request)."""
    return _STRICT_DECODER if max_rows is None else _strict_decoder(max_rows + _CONTAINER_SLACK)


@contextlib.contextmanager
def _json_errors():
    """Decoding failures as the client's 400, each saying what is wrong."""
    try:
        yield
    except json.JSONDecodeError as exc:
        raise BadRequest("malformed JSON: %s" % exc) from None
    except RecursionError:
        raise BadRequest("malformed JSON: nested too deeply") from None
    except ValueError:  # e.g. an integer beyond Python's digit limit
        raise BadRequest("malformed JSON: a number has too many digits") from None


def _no_literals_but_flags(text, payload):
    """With no strings but the top-level keys, the only letters a body can
    hold are the keys', exponents, NaN/Infinity and the literals null, true
    and false. Of these only null and true contain "u", only null and false
    contain "l": two character counts prove that no null or boolean hides
    among the rows (each a full scan would cost more)."""
    u = l_ = 0
    for key, value in payload.items():
        u += key.count("u") + (value is True)
        l_ += key.count("l") + (value is False)
    return text.count("u") == u and text.count("l") == l_


_STRICT_DECODER = json.JSONDecoder(object_pairs_hook=_unique_keys)
_FEW_ROWS = 8


def one_format(document, formats, options=()):
    """The one key of ``formats`` a JSON request object holds; a key that is
    neither a format nor an option, or none or two formats, is a 400 naming
    what is accepted. Every protocol's request object is checked here."""
    for key in document:
        if key not in formats and key not in options:
            raise BadRequest("unknown key %s; accepted keys: %s"
                             % (_describe(key), ", ".join(formats + tuple(options))))
    given = [k for k in formats if k in document]
    if len(given) != 1:
        raise BadRequest("expected exactly one of %s; got %s"
                         % (", ".join(formats), " and ".join(given) or "none"))
    return given[0]


def parse_payload(payload, schema, max_rows, numbers_only=False, bools_possible=True):
    """Parse an already-decoded JSON payload (see module docstring)."""
    if type(payload) is not dict:
        raise BadRequest("request body must be a JSON object with exactly one of: %s; got %s"
                         % (", ".join(FORMAT_KEYS), _describe(payload)))
    key = one_format(payload, FORMAT_KEYS, OPTION_KEYS)
    probabilities = payload.get("probabilities", False)
    if type(probabilities) is not bool:
        raise BadRequest("expected true or false, got %s" % _describe(probabilities),
                         ("probabilities",))
    X = _FORMAT_PARSERS[key](payload[key], schema, max_rows, numbers_only, bools_possible)
    return Parsed(X, probabilities)


def _check_rows(rows, path, max_rows):
    if type(rows) is not list:
        raise BadRequest("expected a list of rows, got %s" % _describe(rows), path)
    if not rows:
        raise BadRequest("expected at least one row", path)
    if len(rows) > max_rows:
        raise PayloadTooLarge("%d rows exceed the limit of %d per request"
                              % (len(rows), max_rows), path)


def parse_instances(rows, schema, max_rows, numbers_only=False, bools_possible=True):
    path = ("instances",)
    _check_rows(rows, path, max_rows)
    if type(rows[0]) is dict:
        return _records_to_matrix(rows, path, schema, bools_possible)
    if schema.input_kind == "texts" and type(rows[0]) is not list:
        return _texts(rows, path, schema)  # a null or a number is a text missing, not a row
    return _lists_to_matrix(rows, path, schema, bools_possible, numbers_only)


def parse_dataframe_records(rows, schema, max_rows, numbers_only=False, bools_possible=True):
    path = ("dataframe_records",)
    _check_rows(rows, path, max_rows)
    return _records_to_matrix(rows, path, schema, bools_possible)


def parse_dataframe_split(split, schema, max_rows, numbers_only=False, bools_possible=True):
    path = ("dataframe_split",)
    if type(split) is not dict:
        raise BadRequest("expected an object with columns and data, got %s"
                         % _describe(split), path)
    unknown = [k for k in split if k not in ("columns", "data", "index")]
    if unknown:
        raise BadRequest("unknown key %s; accepted keys: columns, data, index"
                         % _describe(unknown[0]), path)
    if "data" not in split:
        raise BadRequest("missing key 'data'", path)
    columns = split.get("columns")
    if columns is None:
        columns = list(schema.feature_names)
    elif type(columns) is not list or not all(type(c) is str for c in columns):
        raise BadRequest("expected a list of feature names, got %s" % _describe(columns),
                         path + ("columns",))
    order = _column_order(columns, path + ("columns",), schema)
    rows = split["data"]
    _check_rows(rows, path + ("data",), max_rows)
    index = split.get("index")
    if index is not None and (type(index) is not list or len(index) != len(rows)):
        raise BadRequest("expected a list with one label per row", path + ("index",))
    return _lists_to_matrix(rows, path + ("data",), schema, bools_possible,
                            columns=columns, order=order)


def _column_order(columns, path, schema):
    """Positions that put ``columns`` into the card's order (None: already)."""
    seen = set()
    for column in columns:
        if column not in schema.index:
            raise Unprocessable("unknown feature %s; expected: %s"
                                % (_describe(column), ", ".join(schema.feature_names)), path)
        if column in seen:
            raise Unprocessable("feature %s appears twice" % _describe(column), path)
        seen.add(column)
    missing = [n for n in schema.feature_names if n not in seen]
    if missing:
        raise Unprocessable("missing feature %s" % _describe(missing[0]), path)
    if tuple(columns) == schema.feature_names:
        return None
    return [columns.index(name) for name in schema.feature_names]


def _records_to_matrix(rows, path, schema, bools_possible):
    names = schema.feature_names
    n = len(names)
    values = []
    append = values.append
    keys = schema.index.keys()
    for i, record in enumerate(rows):
        if type(record) is not dict:
            raise BadRequest("expected an object keyed by feature name, got %s"
                             % _describe(record), path + (i,))
        if len(record) != n or record.keys() != keys:
            _explain_record_keys(record, path + (i,), schema)
        append(schema.ordered_values(record))
    if not schema.numeric:
        return schema.build(values, lambda i, j: path + (i, names[j]))
    return _to_matrix(values, schema, bools_possible,
                      lambda i, j: path + (i, names[j]),
                      lambda i: path + (i,))


def _explain_record_keys(record, where, schema):
    unknown = [k for k in record if k not in schema.index]
    if unknown:
        raise Unprocessable("unknown feature %s; expected: %s"
                            % (_describe(unknown[0]), ", ".join(schema.feature_names)), where)
    missing = [n for n in schema.feature_names if n not in record]
    raise Unprocessable("missing feature %s" % _describe(missing[0]), where)


def _lists_to_matrix(rows, path, schema, bools_possible, numbers_only=False,
                     columns=None, order=None):
    names = columns or schema.feature_names

    def where(i, j):
        return path + (i, Position(j, names[j]))

    if not schema.numeric:
        return _typed_lists(rows, path, schema, order)
    X = _numbers_to_matrix(rows, schema.n_features) if numbers_only else None
    if X is None:
        X = _to_matrix(rows, schema, bools_possible, where, lambda i: path + (i,))
    elif len(rows) > _FEW_ROWS or not _sum_is_finite(rows):
        _check_finite(X, schema, where)
    return X if order is None else np.ascontiguousarray(X[:, order])


def _typed_lists(rows, path, schema, order):
    n = schema.n_features
    names = schema.feature_names
    for i, row in enumerate(rows):
        if type(row) is not list:
            raise BadRequest("expected a list of %d values, got %s" % (n, _describe(row)),
                             path + (i,))
        if len(row) != n:
            raise Unprocessable("expected %d values (%s), got %d"
                                % (n, ", ".join(names), len(row)), path + (i,))
    if order is not None:
        rows = [[row[k] for k in order] for row in rows]
    # The place is the client's: the value's index in its row as sent.
    return schema.build(rows, lambda i, j: path + (
        i, Position(j if order is None else order[j], names[j])))


def _texts(rows, path, schema):
    """A text model's instances as plain strings: one text per row."""
    for i, row in enumerate(rows):
        if type(row) is not str:
            raise Unprocessable("expected a text (a string), got %s" % _describe(row),
                                path + (i,))
    return schema.build([(row,) for row in rows], lambda i, j: path + (i,))


def _numbers_to_matrix(rows, n_features):
    """The fast path for rows of a body proven to hold only numbers: one
    ``numpy.fromiter`` over all values, no intermediate nested array. None
    when any row is not a list of ``n_features`` numbers: the general path
    then finds and names the problem."""
    try:
        if len(rows) <= _FEW_ROWS:  # numpy's nested-list path costs less here
            X = np.array(rows, dtype=np.float64)
            return X if X.ndim == 2 and X.shape[1] == n_features else None
        if set(map(len, rows)) != {n_features}:
            return None
        values = np.fromiter(itertools.chain.from_iterable(rows), np.float64,
                             len(rows) * n_features)
    except (TypeError, ValueError, OverflowError):
        return None
    return values.reshape(len(rows), n_features)


def _sum_is_finite(rows):
    """True proves every value finite (NaN and infinities survive a sum); a
    False may come from finite values whose sum overflows, so it only sends
    the matrix to the exact check. For a few rows this beats numpy's calls."""
    try:
        return math.isfinite(sum(map(sum, rows)))
    except (TypeError, OverflowError):
        return False


def _to_matrix(rows, schema, bools_possible, where, row_where):
    """Rows of plain numbers -> (n_rows, n_features) float64, or a precise error.

    One ``numpy.asarray`` both converts and proves the shape and types: a
    string, null, object or ragged row makes it fail or give a non-numeric
    dtype, and then :func:`_explain_rows` walks the rows to name the first
    bad value.
    """
    try:
        X = np.asarray(rows)
    except (ValueError, TypeError, OverflowError):
        X = None
    if (X is None or X.ndim != 2 or X.dtype.kind not in "fi"
            or X.shape[1] != schema.n_features
            or (bools_possible and bool in set(map(type, itertools.chain.from_iterable(rows))))):
        return _explain_rows(rows, schema, where, row_where)
    if X.dtype.kind != "f" or X.dtype.itemsize != 8:
        X = X.astype(np.float64)
    _check_finite(X, schema, where)
    return X


def _check_finite(X, schema, where):
    finite = np.isfinite(X)
    if finite.all():
        return
    bad = ~finite
    if schema.accepts_missing:
        bad &= ~np.isnan(X)
        if not bad.any():
            return
    i, j = np.argwhere(bad)[0]
    raise Unprocessable("expected a finite number, got %s" % _describe(float(X[i, j])),
                        where(int(i), int(j)))


def _explain_rows(rows, schema, where, row_where):
    """The slow path: find the first bad row or value and say where it is."""
    n = schema.n_features
    out = np.empty((len(rows), n), dtype=np.float64)
    for i, row in enumerate(rows):
        if type(row) not in (list, tuple):
            raise BadRequest("expected a list of %d numbers, got %s" % (n, _describe(row)),
                             row_where(i))
        if len(row) != n:
            raise Unprocessable("expected %d values (%s), got %d"
                                % (n, ", ".join(schema.feature_names), len(row)), row_where(i))
        for j, value in enumerate(row):
            out[i, j] = _number(value, schema, where, i, j)
    return out


def _number(value, schema, where, i, j):
    kind = type(value)
    if kind is float:
        if math.isfinite(value) or (value != value and schema.accepts_missing):
            return value
        raise Unprocessable("expected a finite number, got %s" % _describe(value), where(i, j))
    if kind is int:
        try:
            return float(value)
        except OverflowError:
            raise Unprocessable("number out of range", where(i, j)) from None
    if value is None and schema.accepts_missing:
        return math.nan
    raise Unprocessable("expected a number, got %s" % _describe(value), where(i, j))


def parse_csv(text, schema, max_rows, header=None):
    """CSV: one row per line in feature order, or any order under a header.

    The header rule, the same on every CSV route: ``header`` (RFC 4180's
    ``header=present|absent`` parameter, see :func:`chalicelib.http.media.csv_header`)
    wins. Without it, the first line is a header when it is the card's
    feature names (any order) or the positional names pandas writes for
    unnamed columns (``0,1,...,n-1``), each optionally after the empty first
    field of the index column ``DataFrame.to_csv()`` writes; a first line
    naming some feature, or (all-number models) holding no value at all, is
    a header whose error names its wrong column. Any other first line is
    data. pandas' index column is dropped under such a header, and without
    one when every line has one field more than the card's features and
    starts with the row numbers ``0, 1, ...`` (``to_csv(header=False)``).
    """
    n = schema.n_features
    keep_spaces = schema.input_kind == "texts"
    lines = []
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        for fields in reader:
            if fields and (len(fields) > 1 or fields[0].strip()):
                if len(fields) > n + 1:
                    # Refused before any per-field work: a line of millions
                    # of empty fields costs only the C reader's pass. A too
                    # long header still names its first wrong column, found
                    # within the first n + 2 fields.
                    if not lines and header is not False:
                        head = [f.strip() for f in fields[:n + 2]]
                        if header or _header_attempt(head, schema):
                            _column_order(head[1:] if head[0] == "" else head,
                                          _CSV_HEADER, schema)
                    raise Unprocessable("expected %d values (%s), got %d"
                                        % (n, ", ".join(schema.feature_names), len(fields)),
                                        (Line(reader.line_num),))
                # A text keeps its spaces; numbers and categories lose theirs.
                lines.append((reader.line_num, fields if keep_spaces else [f.strip() for f in fields]))
                if len(lines) > max_rows + 1:
                    break
    except csv.Error as exc:
        raise BadRequest("malformed CSV: %s" % exc, (Line(reader.line_num),)) from None
    names = schema.feature_names
    order = None
    indexed = False
    if lines and header is not False:
        first = [f.strip() for f in lines[0][1]] if keep_spaces else lines[0][1]
        columns = _header_columns(first, schema)
        if columns is None and (header or _header_attempt(first, schema)):
            # A header that is not one: its error names the wrong column.
            _column_order(first[1:] if len(first) == n + 1 and first[0] in _INDEX_NAMES
                          else first, _CSV_HEADER, schema)
        if columns is not None:
            lines.pop(0)
            indexed, names = columns
            order = _column_order(list(names), _CSV_HEADER, schema)
            if order is not None or names != schema.feature_names:
                names = tuple(names)
    if not lines:
        raise BadRequest("CSV body has no data rows")
    if len(lines) > max_rows:
        raise PayloadTooLarge("CSV body: more than %d rows, the limit per request" % max_rows)
    if not indexed and _row_numbered(lines, n):
        indexed = True
    width = n + indexed
    for line_num, fields in lines:
        if len(fields) != width:
            raise Unprocessable("expected %d values (%s%s), got %d"
                                % (width, "index, " if indexed else "", ", ".join(names),
                                   len(fields)), (Line(line_num),))
    if indexed:
        lines = [(line_num, fields[1:]) for line_num, fields in lines]
    if not schema.numeric:
        rows = [fields if order is None else [fields[k] for k in order] for _, fields in lines]
        return schema.build(rows, lambda i, j: (
            Line(lines[i][0]), Column(None, schema.feature_names[j])), from_csv=True)
    X = _csv_matrix(lines, n)
    if X is None:  # something to refuse or a missing value: field by field
        X = np.empty((len(lines), n), dtype=np.float64)
        for i, (line_num, fields) in enumerate(lines):
            for j, field in enumerate(fields):
                X[i, j] = _csv_number(field, schema, line_num, j + 1 + indexed, names[j])
    return X if order is None else np.ascontiguousarray(X[:, order])


# Every field a plain finite-looking number: one regex pass over all of them
# (joined by a newline, which a field of a number cannot hold) proves it.
_CSV_NUMBERS = re.compile(r"(?:%s\n)*+%s\Z" % ((_CSV_NUMBER.pattern[:-2],) * 2), re.ASCII)


def _csv_matrix(lines, n):
    """The fast path for CSV rows of numbers: the float64 matrix when every
    field is a number (:data:`CSV_NUMBER`) and finite, else None."""
    fields = [field for _, line in lines for field in line]
    if not _CSV_NUMBERS.match("\n".join(fields)):
        return None
    try:
        X = np.fromiter(map(float, fields), np.float64, len(fields)).reshape(len(lines), n)
    except ValueError:  # a quoted field holding a newline
        return None
    return X if np.isfinite(X).all() else None


# The header pandas writes above its index column: an empty field (an
# unnamed index), or the name pandas gives it when it reads one back.
_INDEX_NAMES = ("", "Unnamed: 0")
_CSV_HEADER = ("CSV header",)


def _header_columns(fields, schema):
    """``(indexed, names)`` when ``fields`` is a header by the rule of
    :func:`parse_csv` (``names`` in the card's terms: positional names
    become the card's names), else None."""
    n = schema.n_features
    indexed = len(fields) == n + 1 and fields[0] in _INDEX_NAMES
    if indexed:
        fields = fields[1:]
    if len(fields) != n:
        return None
    if fields == schema.positional_names:
        return indexed, schema.feature_names
    if set(fields) == set(schema.feature_names):
        return indexed, tuple(fields)
    return None


def _header_attempt(fields, schema):
    """A first line meant as a header although it is not one: it names a
    feature, or, for an all-number model, holds no number and no missing
    value (it cannot be data). A data line with one bad value stays data,
    so that its error names the value."""
    if any(f in schema.index for f in fields):
        return True
    return schema.numeric and any(fields) and not any(
        _CSV_NUMBER.match(f) or f in MISSING_TOKENS for f in fields)


def _row_numbered(lines, n):
    """Every line has one field more than the card's features and starts
    with its row number (0, 1, ...): pandas' index column, without header."""
    return all(len(fields) == n + 1 and fields[0] == str(i)
               for i, (_, fields) in enumerate(lines))


def is_csv_header(fields, schema):
    """The header rule of :func:`parse_csv` for a first line alone (split
    into fields): a header (or a line meant as one) rather than data."""
    fields = [f.strip() for f in fields]
    return _header_columns(fields, schema) is not None or _header_attempt(fields, schema)


def csv_header(fields, schema):
    """The header ``fields`` (stripped) when :func:`parse_csv` reads them as
    one, or Unprocessable naming its first wrong column (unknown, repeated,
    missing)."""
    fields = [f.strip() for f in fields]
    if _header_columns(fields, schema) is None:
        n = schema.n_features
        _column_order(fields[1:] if len(fields) == n + 1 and fields[0] in _INDEX_NAMES
                      else fields, _CSV_HEADER, schema)
    return fields


def _csv_number(field, schema, line_num, position, name):
    if _CSV_NUMBER.match(field):
        value = float(field)
        if math.isfinite(value):
            return value
        raise Unprocessable("expected a finite number, got %s" % field,
                            (Line(line_num), Column(position, name)))
    if schema.accepts_missing and field in MISSING_TOKENS:
        return math.nan
    raise Unprocessable("expected a number, got %s" % _describe(field),
                        (Line(line_num), Column(position, name)))


_FORMAT_PARSERS = {
    "instances": parse_instances,
    "dataframe_split": parse_dataframe_split,
    "dataframe_records": parse_dataframe_records,
}
