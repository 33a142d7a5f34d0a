"""The typed path's shortcut for plain columns (``Schema._unchanged``: a
column of JSON floats, ints, booleans or strings checked in a few C-speed
passes) must give exactly what the per-value coercers give: the same
DataFrame or matrix (values, dtypes, columns) and the same error message,
for any mix of values, in JSON and CSV, with and without missing values."""
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chalicelib.http.errors import ServiceError
from chalicelib.schema.features import Schema

FEATURES = [
    {"name": "color", "type": "string", "categories": ["blue", "green", "red"]},
    {"name": "city", "type": "string", "categories": ["Oslo", "Rome"], "unknown_categories": "ignore"},
    {"name": "code", "type": "number", "categories": [1, 2.5]},
    {"name": "age", "type": "number"},
    {"name": "rooms", "type": "integer"},
    {"name": "member", "type": "boolean"},
    {"name": "note", "type": "string"},
]

JSON_VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(min_value=-2**70, max_value=2**70),
    st.sampled_from([0, 1, 2, 1.0, 2.5, 2**63 - 1, 2**63, -2**63, -2**63 - 1, 1e308, -1e308]),
    st.booleans(), st.none(), st.sampled_from(["blue", "red", "purple", "Oslo", "Paris", ""]),
    st.text(max_size=5))
CSV_VALUES = st.one_of(
    st.sampled_from(["blue", "red", "purple", "Oslo", "", "nan", "NA", "NaN", "1", "0", "2.5",
                     "true", "False", "1e400", "-3", "9223372036854775808", "x"]),
    st.text(max_size=5))


def _column_strategy(values):
    """A column: the same kind of value throughout (the shortcut's case)
    more often than a mix of anything."""
    return st.one_of(st.lists(values, min_size=1, max_size=6),
                     values.flatmap(lambda v: st.lists(st.just(v), min_size=1, max_size=6)),
                     st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=6),
                     st.lists(st.integers(-10, 10), min_size=1, max_size=6),
                     st.lists(st.booleans(), min_size=1, max_size=6),
                     st.lists(st.sampled_from(["blue", "green", "red", "Oslo"]), min_size=1,
                              max_size=6))


def _outcome(schema, rows, from_csv):
    try:
        return "ok", schema.build(rows, lambda i, j: "instances[%d].%s"
                                  % (i, schema.feature_names[j]), from_csv)
    except ServiceError as exc:
        return "error", (type(exc).__name__, str(exc))


def _same(a, b):
    if a[0] != b[0]:
        return False
    if a[0] == "error":
        return a[1] == b[1]
    x, y = a[1], b[1]
    if isinstance(x, pd.DataFrame):
        pd.testing.assert_frame_equal(x, y, check_exact=True)
        return list(x.columns) == list(y.columns)
    def cells(X):  # NaN is not equal to itself: compare it by name
        return [(type(v), "NaN" if v != v else v) for v in X.ravel().tolist()]
    return x.dtype == y.dtype and x.shape == y.shape and cells(x) == cells(y)


def _check(feature, column, input_kind, accepts_missing, from_csv, monkeypatch):
    schema = Schema([feature, {"name": "other", "type": "number"}], accepts_missing, input_kind)
    rows = [(v, 1.0 if not from_csv else "1.0") for v in column]
    fast = _outcome(schema, rows, from_csv)
    with monkeypatch.context() as m:
        m.setattr(Schema, "_unchanged", lambda self, feature, values, from_csv: None)
        slow = _outcome(schema, rows, from_csv)
    assert _same(fast, slow), (feature, column, fast, slow)


SETTINGS = settings(max_examples=150, derandomize=True, database=None, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.mark.parametrize("input_kind", ["dataframe", "matrix"])
@pytest.mark.parametrize("accepts_missing", [False, True])
@pytest.mark.parametrize("feature", FEATURES, ids=[f["name"] for f in FEATURES])
@SETTINGS
@given(column=_column_strategy(JSON_VALUES))
def test_json_columns_shortcut_equals_per_value_path(feature, accepts_missing, input_kind,
                                                     column, monkeypatch):
    _check(feature, column, input_kind, accepts_missing, False, monkeypatch)


@pytest.mark.parametrize("accepts_missing", [False, True])
@pytest.mark.parametrize("feature", FEATURES, ids=[f["name"] for f in FEATURES])
@SETTINGS
@given(column=st.lists(CSV_VALUES, min_size=1, max_size=6))
def test_csv_columns_shortcut_equals_per_value_path(feature, accepts_missing, column, monkeypatch):
    _check(feature, column, "dataframe", accepts_missing, True, monkeypatch)


def test_the_shortcut_is_taken_for_plain_columns_and_refused_otherwise():
    schema = Schema(FEATURES, False, "dataframe")
    by_name = {f.name: f for f in schema.features}
    plain = {"color": ["red", "blue"], "city": ["Paris", "Oslo"], "code": [1.0, 2.5],
             "age": [42.0, 18.5], "rooms": [3, 2**63 - 1], "member": [True, False],
             "note": ["", "x"]}
    for name, values in plain.items():
        assert schema._unchanged(by_name[name], values, False) is values, name
    refused = {"age": [[1.0, math.inf], [1.0, math.nan], [1.0, 2], [1e308, 1e308], [True]],
               "rooms": [[2**63], [1, 2.0], [False]], "member": [[1, 0]],
               "color": [["red", None], [1.5]]}
    for name, cases in refused.items():
        for values in cases:
            assert schema._unchanged(by_name[name], values, False) is None, (name, values)
    # CSV: strings stay strings; numbers, integers and booleans are read per value.
    assert schema._unchanged(by_name["note"], ["a", "b"], True) == ["a", "b"]
    # A missing-value token (an empty field is one) is read per value: it may be a 422.
    assert schema._unchanged(by_name["note"], ["a", "nan"], True) is None
    assert schema._unchanged(by_name["age"], ["1.5"], True) is None
    missing = Schema(FEATURES, True, "dataframe")
    assert missing._unchanged(missing.features[6], ["a", "NA"], True) is None
