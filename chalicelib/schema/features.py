"""The typed input schema: what each feature is, how a client's value is
checked and coerced, and what the estimator is handed.

Owned here, for every request format alike:

* the feature types of the card (``number``, ``integer``, ``boolean``,
  ``string`` with its known ``categories``, ``text``) and the errors that
  name the place and the expectation;
* the estimator's input kind: ``matrix`` (a float64 matrix: the fast path in
  :mod:`chalicelib.schema.parsing`; an object matrix when a column holds strings),
  ``dataframe`` (a pandas DataFrame with the card's columns and dtypes,
  category dtype where it was fitted with one) or ``texts`` (1-D strings).

pandas is imported only when a model takes a DataFrame, so a matrix model
never pays its import at cold start (and the build does not ship it).
"""
import json
import math
import operator
import re

import numpy as np

from chalicelib.http.errors import Unprocessable, quoted

TYPES = ("number", "integer", "boolean", "string", "text")
INPUT_KINDS = ("matrix", "dataframe", "texts")
NUMERIC_TYPES = ("number", "integer")
# The pandas dtype a DataFrame column gets when the card does not name one.
DEFAULT_DTYPES = {"number": "float64", "integer": "int64", "boolean": "bool",
                  "string": "object", "text": "object"}
MISSING_TOKENS = ("", "nan", "NaN", "NA")
_NO_MISSING_TOKEN = frozenset(MISSING_TOKENS)
# ASCII only and possessive: linear on any field (see parsing's CSV notes).
CSV_NUMBER = re.compile(r"[+-]?+(?:[0-9]++(?:\.[0-9]*+)?+|\.[0-9]++)(?:[eE][+-]?+[0-9]++)?+\Z",
                        re.ASCII)
CSV_INTEGER = re.compile(r"[+-]?+[0-9]++\Z", re.ASCII)
CSV_BOOLEANS = {"true": True, "True": True, "TRUE": True, "1": True,
                "false": False, "False": False, "FALSE": False, "0": False}


class SchemaError(ValueError):
    """A card's feature list that cannot be served."""


# The JSON type of each card type, and the Open Inference (V2) tensor
# datatype a feature's values travel in.
_JSON_TYPES = {"number": "number", "integer": "integer", "boolean": "boolean",
               "string": "string", "text": "string"}
_TENSOR_DATATYPES = {"number": "FP64", "integer": "INT64", "boolean": "BOOL",
                     "string": "BYTES", "text": "BYTES"}


def finite(value):
    """A JSON number that is finite (a boolean is not a number here)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and \
        math.isfinite(value)


def usable_range(spec):
    """``(low, high)`` of a card feature's ``range`` when it is usable (two
    finite numbers, low < high), else None. Read leniently: a range is a
    hint for readers (the form, the OpenAPI description), never a check."""
    bounds = spec.get("range") if isinstance(spec, dict) else None
    if isinstance(bounds, list) and len(bounds) == 2 and all(map(finite, bounds)) \
            and bounds[0] < bounds[1]:
        return bounds[0], bounds[1]
    return None


class Feature:
    """One card feature: its type and categories (what parsing checks), and
    what every reader shows of it: the training range, the JSON Schema of a
    value (OpenAPI) and the tensor datatype (Open Inference metadata)."""

    __slots__ = ("name", "type", "categories", "unknown", "dtype", "missing", "range",
                 "_allowed")

    def __init__(self, spec):
        if not isinstance(spec, dict):
            raise SchemaError("every card feature must be an object")
        self.name = spec.get("name")
        self.type = spec.get("type", "number")
        if self.type not in TYPES:
            raise SchemaError("feature %s: type must be one of %s, got %r"
                              % (self.name, ", ".join(TYPES), self.type))
        categories = spec.get("categories")
        if categories is not None and (not isinstance(categories, list) or not all(
                isinstance(c, (str, int, float)) and not isinstance(c, bool) for c in categories)):
            raise SchemaError("feature %s: categories must be a list of strings or numbers"
                              % self.name)
        self.categories = tuple(categories) if categories is not None else None
        self.unknown = spec.get("unknown_categories", "error")
        if self.unknown not in ("error", "ignore"):
            raise SchemaError("feature %s: unknown_categories must be error or ignore" % self.name)
        self.dtype = spec.get("dtype") or DEFAULT_DTYPES[self.type]
        # A column that takes missing values when the model as a whole does
        # not (a string column with its own imputer before the encoder).
        self.missing = spec.get("accepts_missing_values", False)
        if type(self.missing) is not bool:
            raise SchemaError("feature %s: accepts_missing_values must be true or false"
                              % self.name)
        self.range = usable_range(spec)
        self._allowed = (frozenset(self.categories)
                         if self.categories is not None and self.unknown == "error" else None)

    @property
    def datatype(self):
        """The Open Inference (V2) tensor datatype of this feature's values."""
        return _TENSOR_DATATYPES[self.type]

    def json_schema(self, accepts_missing):
        """The JSON Schema of one value: numbers (with the training range as
        a description), integers, booleans, strings (an enum of the known
        categories when unknown ones are refused), texts; null too when
        ``accepts_missing``."""
        json_type = _JSON_TYPES[self.type]
        schema = {"type": [json_type, "null"] if accepts_missing else json_type}
        if self.categories and self.unknown == "error":
            schema["enum"] = list(self.categories) + ([None] if accepts_missing else [])
        elif self.categories:
            schema["examples"] = list(self.categories)[:20]
        if self.range:
            schema["description"] = "seen in training: %s to %s" % self.range
        if self.type == "text":
            schema["description"] = "a text (one document per row)"
        return schema

    def describe_categories(self):
        shown = [json.dumps(c) for c in self.categories[:20]]
        more = len(self.categories) - len(shown)
        return ", ".join(shown) + (" (and %d more)" % more if more > 0 else "")


class Columns:
    """The card's columns, each a 1-D array in card order: what a runtime
    fed column by column takes (a DataFrame model compiled to ONNX), built
    without pandas."""

    __slots__ = ("arrays", "n_rows")

    def __init__(self, arrays, n_rows):
        self.arrays = arrays
        self.n_rows = n_rows

    def __len__(self):
        return self.n_rows


class Schema:
    """Feature order, types, missing values and the estimator's input kind."""

    def __init__(self, features, accepts_missing=False, input_kind="matrix"):
        self.features = tuple(f if isinstance(f, Feature) else
                              Feature(f if isinstance(f, dict) else {"name": f}) for f in features)
        if input_kind not in INPUT_KINDS:
            raise SchemaError("input must be one of %s, got %r" % (", ".join(INPUT_KINDS), input_kind))
        if input_kind == "texts" and (len(self.features) != 1 or self.features[0].type != "text"):
            raise SchemaError('a "texts" model takes exactly one feature of type text')
        self.input_kind = input_kind
        self.accepts_missing = accepts_missing
        self.feature_names = tuple(f.name for f in self.features)
        self.index = {name: i for i, name in enumerate(self.feature_names)}
        # The column names pandas gives a DataFrame built without names.
        self.positional_names = [str(i) for i in range(len(self.feature_names))]
        self._getter = operator.itemgetter(*self.feature_names)
        # The float64 fast path: every value a number, handed over as a matrix.
        self.numeric = input_kind == "matrix" and all(
            f.type == "number" and f._allowed is None for f in self.features)
        self.as_columns = False

    def fed_by_columns(self):
        """This schema, building :class:`Columns` instead of a DataFrame:
        the same checks and errors, for a runtime that takes one input per
        column (ONNX Runtime serving a compiled DataFrame model)."""
        copy = Schema(self.features, self.accepts_missing, self.input_kind)
        copy.as_columns = True
        return copy

    @property
    def n_features(self):
        return len(self.feature_names)

    def ordered_values(self, record):
        values = self._getter(record)
        return values if self.n_features > 1 else (values,)

    # -- the typed path ----------------------------------------------------

    def build(self, rows, where, from_csv=False):
        """Rows of client values in card order -> what the estimator takes.

        ``where(i, j)`` is the location (``ServiceError.loc``) of row ``i``,
        feature ``j`` in the client's request.
        """
        columns = [self._column(j, [row[j] for row in rows], where, from_csv)
                   for j in range(self.n_features)]
        if self.as_columns:
            return Columns(columns, len(rows))
        if self.input_kind == "texts":
            return np.asarray(columns[0], dtype=object)
        if self.input_kind == "dataframe":
            return self._dataframe(columns)
        if all(c.dtype.kind in "fiub" for c in columns):
            return np.column_stack([c.astype(np.float64) for c in columns])
        X = np.empty((len(rows), self.n_features), dtype=object)
        for j, column in enumerate(columns):
            X[:, j] = column
        return X

    def _dataframe(self, columns):
        import pandas as pd
        data = {}
        for feature, column in zip(self.features, columns):
            if feature.dtype == "category":
                data[feature.name] = pd.Categorical(column, categories=list(feature.categories or ())
                                                    or None)
            elif column.dtype.kind == "f" and feature.dtype not in ("float64", "float32", "object"):
                data[feature.name] = column  # missing values in an integer/bool column
            else:
                data[feature.name] = column.astype(feature.dtype, copy=False)
        # The dict's keys are the card's columns in order (names are unique):
        # ``columns=`` would only make pandas reindex them (~150 us a request).
        return pd.DataFrame(data)

    def _column(self, j, values, where, from_csv):
        feature = self.features[j]
        out = self._unchanged(feature, values, from_csv)
        if out is None:
            coerce = _COERCERS[feature.type]
            out = [coerce(self, feature, v, from_csv, where, i, j) for i, v in enumerate(values)]
        allowed = feature._allowed
        if allowed is not None and not allowed.issuperset(out):
            for i, v in enumerate(out):
                if v not in allowed and not (v is None or v != v):
                    raise Unprocessable("expected one of %s, got %s"
                                        % (feature.describe_categories(), describe(v)), where(i, j))
        if feature.type == "number":
            return np.asarray(out, dtype=np.float64)
        if feature.type in ("integer", "boolean"):
            if any(v is None for v in out):
                return np.asarray([math.nan if v is None else v for v in out], dtype=np.float64)
            return np.asarray(out, dtype=np.int64 if feature.type == "integer" else bool)
        column = np.empty(len(out), dtype=object)
        column[:] = [np.nan if v is None else v for v in out]
        return column

    def _unchanged(self, feature, values, from_csv):
        """``values`` when its coercer would return every one of them as it
        is (a column of plain JSON floats, ints, booleans or strings), found
        with a few C-speed passes instead of one call per value; else None,
        and the per-value coercers decide (and name the place of an error)."""
        types = set(map(type, values))
        if len(types) != 1:
            return None
        kind = types.pop()
        if kind is str:
            if feature.type == "text" or (feature.type == "string" and not (
                    from_csv and not _NO_MISSING_TOKEN.isdisjoint(values))):
                return values
        elif from_csv:
            return None
        elif kind is float:
            # A finite sum proves no NaN or infinity among them.
            if feature.type == "number" and math.isfinite(sum(values)):
                return values
        elif kind is int:
            if feature.type == "integer" and -2**63 <= min(values) and max(values) < 2**63:
                return values
        elif kind is bool:
            if feature.type == "boolean":
                return values
        return None

    @property
    def takes_any_missing(self):
        """Whether any column takes a missing value."""
        return self.accepts_missing or any(f.missing for f in self.features)

    def takes_missing(self, j):
        """Whether feature ``j`` takes a missing value (null, NaN, an empty
        CSV field): the model's rule, or the column's own."""
        return self.accepts_missing or self.features[j].missing

    def _missing(self, where, i, j, what):
        if self.takes_missing(j):
            return None
        raise Unprocessable("expected %s, got a missing value" % what, where(i, j))


def _number(schema, feature, v, from_csv, where, i, j):
    kind = type(v)
    if from_csv:
        if CSV_NUMBER.match(v):
            v = float(v)
        elif v in MISSING_TOKENS:
            schema._missing(where, i, j, "a number")  # raises unless missing values are accepted
            return math.nan
        else:
            raise Unprocessable("expected a number, got %s" % describe(v), where(i, j))
    elif kind is int:
        try:
            v = float(v)
        except OverflowError:
            raise Unprocessable("number out of range", where(i, j)) from None
    elif v is None:
        schema._missing(where, i, j, "a number")
        return math.nan
    elif kind is not float:
        raise Unprocessable("expected a number, got %s" % describe(v), where(i, j))
    if math.isfinite(v) or (v != v and schema.accepts_missing):
        return v
    raise Unprocessable("expected a finite number, got %s" % describe(v), where(i, j))


def _integer(schema, feature, v, from_csv, where, i, j):
    if from_csv:
        if CSV_INTEGER.match(v):
            # Checked for range below like a JSON integer (int64 has at most
            # 19 digits; int() refuses strings past 4,300 digits).
            if len(v.lstrip("+-0")) > 19:
                raise Unprocessable("integer out of range", where(i, j))
            v = int(v)
        elif v in MISSING_TOKENS:
            return schema._missing(where, i, j, "an integer")
        elif CSV_NUMBER.match(v):
            v = float(v)
    if type(v) is int:
        if -2**63 <= v < 2**63:
            return v
        raise Unprocessable("integer out of range", where(i, j))
    if v is None:
        return schema._missing(where, i, j, "an integer")
    if type(v) is float and v.is_integer() and abs(v) < 2**53:
        return int(v)
    raise Unprocessable("expected an integer, got %s" % describe(v), where(i, j))


def _boolean(schema, feature, v, from_csv, where, i, j):
    if from_csv:
        if v in CSV_BOOLEANS:
            return CSV_BOOLEANS[v]
        if v in MISSING_TOKENS:
            return schema._missing(where, i, j, "true or false")
    elif type(v) is bool:
        return v
    elif v is None:
        return schema._missing(where, i, j, "true or false")
    raise Unprocessable("expected true or false, got %s" % describe(v), where(i, j))


def _string(schema, feature, v, from_csv, where, i, j):
    if type(v) is str:
        # pandas' read_csv reads an empty field as NaN: so does a string
        # column here (missing, or a 422 naming it), never as "", unless ""
        # is one of the column's categories. The other tokens are missing
        # only where missing values are taken, else the strings they spell.
        if from_csv and feature.type == "string" and v in MISSING_TOKENS:
            if v == "" and not (feature.categories and "" in feature.categories):
                return schema._missing(where, i, j, "a string")
            if schema.takes_missing(j):
                return None
        return v
    if v is None:
        return schema._missing(where, i, j, "a string")
    raise Unprocessable("expected a string, got %s" % describe(v), where(i, j))


_COERCERS = {"number": _number, "integer": _integer, "boolean": _boolean,
             "string": _string, "text": _string}


def describe(value):
    """A short, JSON-like rendering of a client's value for an error message."""
    if value is None:
        return "null"
    if type(value) is bool:
        return "true" if value else "false"
    if type(value) is str:
        return quoted(value)
    if type(value) is float:
        if value != value:
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return repr(value)
    if type(value) is int:
        return str(value) if value.bit_length() < 200 else "a %d-bit integer" % value.bit_length()
    if type(value) in (list, tuple):
        return "a list"
    if type(value) is dict:
        return "an object"
    return type(value).__name__
