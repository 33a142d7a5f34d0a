"""Named hostile inputs through the real Lambda handler.

Each case is an API Gateway REST (v1) proxy event handed to ``app.app`` (the
Chalice app object *is* the Lambda handler), and each answer must be the
documented status with exactly ``{"Code": str, "Message": str}`` as the body:
400 malformed or wrong structure, 413 too big, 415 media type, 422 values
that do not fit the model. Never a 5xx, and never a stack trace, file path or
library version in a body.

The statuses seen are written to ``build/harden/hostile.json`` for
``python -m tools.harden``.
"""
import json
import os
import re
import sys
import warnings

import joblib
import numpy as np
import pytest
import sklearn

import app as app_module
from chalicelib.protocols import service
from tests.conftest import BUNDLED_MODEL, FEATURES, IRIS_ROWS
from tests.proxy_event import invoke, json_event, proxy_event

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIGURES = os.path.join(PROJECT_DIR, "build", "harden", "hostile.json")
MIB = 1024 * 1024
CSV = "text/csv"
ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
HEADER = ",".join(FEATURES)

# What no response body may contain: tracebacks, paths, library versions.
_LEAKS = [
    re.compile(r"Traceback \(most recent call last\)"),
    re.compile(r'File "[^"]+", line \d+'),
    re.compile(re.escape(PROJECT_DIR)),
    re.compile(r"site-packages|dist-packages|/var/task|/opt/python|\.py\b"),
    re.compile(r"scikit-learn \d|sklearn \d|numpy \d|Python 3\.\d"),
]
_VERSIONS = {sklearn.__version__, np.__version__, joblib.__version__,
             "%d.%d.%d" % sys.version_info[:3]}

_seen = []  # (case id, status): the figures harden.py prints


def _digits(n):
    return "9" * n


def _padded_json(size):
    """A valid one-row JSON body padded with spaces to exactly ``size`` bytes."""
    core = json.dumps({"instances": [IRIS_ROWS[0]]})
    return core[:-1] + " " * (size - len(core)) + "}"


# (id, event, expected status, a substring the Message must contain or None)
CASES = [
    # --- encodings -----------------------------------------------------------
    ("invalid-utf8", proxy_event(b'{"instances": [[5.1, 3.5, 1.4, \xff]]}'), 400, "not valid UTF-8"),
    ("invalid-utf8-csv", proxy_event(b"5.1,3.5,1.4,\xc3\x28\n", content_type=CSV), 400,
     "not valid UTF-8"),
    ("overlong-utf8", proxy_event(b'{"instances": [[5.1, 3.5, 1.4, "\xc0\xaf"]]}'), 400,
     "not valid UTF-8"),
    ("utf8-bom-json", proxy_event(b"\xef\xbb\xbf" + json.dumps({"instances": IRIS_ROWS}).encode()),
     200, None),
    ("utf8-bom-csv", proxy_event(b"\xef\xbb\xbf" + (HEADER + "\n5.1,3.5,1.4,0.2\n").encode(),
                                 content_type=CSV), 200, None),
    ("lone-surrogate-escape", proxy_event('{"instances": [["\\ud800", 1, 2, 3]]}'), 422,
     "expected a number"),
    ("nul-in-json-string", proxy_event('{"instances": [["\\u0000", 1, 2, 3]]}'), 422,
     "expected a number"),
    ("raw-control-char-in-json", proxy_event('{"instances": [["\x01", 1, 2, 3]]}'), 400,
     "malformed JSON"),
    # --- numbers -------------------------------------------------------------
    ("1e400", proxy_event('{"instances": [[1e400, 3.5, 1.4, 0.2]]}'), 422,
     "instances[0][0] (sepal_length): expected a finite number"),
    ("-1e400-record", proxy_event('{"instances": [{"sepal_length": 5.1, "sepal_width": -1e400, '
                                  '"petal_length": 1.4, "petal_width": 0.2}]}'), 422,
     "instances[0].sepal_width: expected a finite number"),
    ("NaN-literal", proxy_event('{"instances": [[5.1, NaN, 1.4, 0.2]]}'), 422, "got NaN"),
    ("Infinity-literal", proxy_event('{"instances": [[5.1, 3.5, Infinity, 0.2]]}'), 422,
     "got Infinity"),
    ("-Infinity-literal", proxy_event('{"instances": [[5.1, 3.5, 1.4, -Infinity]]}'), 422,
     "got -Infinity"),
    ("NaN-in-split", proxy_event('{"dataframe_split": {"columns": %s, "data": [[NaN, 1, 2, 3]]}}'
                                 % json.dumps(FEATURES)), 422, "expected a finite number"),
    ("NaN-csv", proxy_event("NaN,3.5,1.4,0.2\n", content_type=CSV), 422, "expected a number"),
    ("Infinity-csv", proxy_event("5.1,Infinity,1.4,0.2\n", content_type=CSV), 422,
     "expected a number"),
    ("1e400-csv", proxy_event("5.1,3.5,1e400,0.2\n", content_type=CSV), 422,
     "expected a finite number"),
    ("int-400-digits", proxy_event('{"instances": [[%s, 1, 2, 3]]}' % _digits(400)), 422,
     "out of range"),
    # Python refuses to convert an integer of more than 4,300 digits; whether
    # that is called malformed (400) or unfit (422), it must say "digits".
    ("int-5000-digits", proxy_event('{"instances": [[%s, 1, 2, 3]]}' % _digits(5000)),
     (400, 422), "digits"),
    ("int-5000-digits-record", proxy_event('{"dataframe_records": [{"sepal_length": -%s}]}'
                                           % _digits(5000)), (400, 422), "digits"),
    ("int-5000-digits-csv", proxy_event("%s,1,2,3\n" % _digits(5000), content_type=CSV), 422,
     "expected a finite number"),
    ("int64-overflow", json_event({"instances": [[2 ** 63, 2 ** 64, -(2 ** 63) - 1, 1]]}), 200, None),
    # Finite but extreme values overflow inside the model (StandardScaler
    # divides 1e308 by a scale < 1): the model computes NaN. That is about
    # the client's values, not a server fault: 422, never 500 and never a
    # label computed from NaN.
    ("extreme-finite-values", json_event({"instances": [[1e308, -1e308, 1e308, -1e308]]}),
     422, None),
    ("extreme-finite-values-probabilities",
     json_event({"instances": [[1.7976931348623157e308] * 4], "probabilities": True}), 422, None),
    ("extreme-finite-values-csv", proxy_event("1e308,-1e308,1e308,-1e308\n", content_type=CSV,
                                              query={"probabilities": "true"}), 422, None),
    ("large-but-computable", json_event({"instances": [[1e300, -1e300, 1e300, -1e300]],
                                         "probabilities": True}), 200, None),
    ("subnormals", json_event({"instances": [[5e-324, -5e-324, 1e-310, -0.0]]}), 200, None),
    # --- nesting -------------------------------------------------------------
    ("nesting-100000-lists", proxy_event("[" * 100_000 + "]" * 100_000), 400,
     "nested too deeply"),
    ("nesting-100000-objects", proxy_event('{"a":' * 100_000 + "1" + "}" * 100_000), 400,
     "nested too deeply"),
    ("nesting-100000-unclosed", proxy_event('{"instances": ' + "[" * 100_000), 400,
     "nested too deeply"),
    ("nesting-100000-in-value", proxy_event('{"instances": [[' + "[" * 100_000 + "]" * 100_000
                                            + ", 1, 2, 3]]}"), 400, "nested too deeply"),
    ("nesting-900-in-value", proxy_event('{"instances": [[' + "[" * 900 + "1" + "]" * 900
                                         + ", 1, 2, 3]]}"), 422, "got a list"),
    ("nesting-900-row", proxy_event('{"instances": [' + "[" * 900 + "1" + "]" * 900 + "]}"), 422,
     "expected 4 values"),
    # --- duplicate keys ------------------------------------------------------
    ("duplicate-top-level-key", proxy_event('{"instances": [[1, 2, 3, 4]], "instances": [[1, 2, 3, 4]]}'),
     400, 'duplicate key "instances"'),
    ("duplicate-key-in-row", proxy_event(
        '{"instances": [{"sepal_length": 1, "sepal_length": 2, "sepal_width": 2, '
        '"petal_length": 3, "petal_width": 4}]}'), 400, 'duplicate key "sepal_length"'),
    ("duplicate-key-in-records", proxy_event(
        '{"dataframe_records": [%s, {"petal_width": 1, "petal_width": 1}]}' % json.dumps(ROW)), 400,
     'duplicate key "petal_width"'),
    ("duplicate-key-in-split", proxy_event('{"dataframe_split": {"data": [[1, 2, 3, 4]], '
                                           '"data": [[1, 2, 3, 4]]}}'), 400, 'duplicate key "data"'),
    ("duplicate-probabilities", proxy_event('{"instances": [[1, 2, 3, 4]], "probabilities": true, '
                                            '"probabilities": false}'), 400, "duplicate key"),
    # --- empty and degenerate bodies -----------------------------------------
    ("empty-body", proxy_event(""), 400, "request body is empty"),
    ("absent-body", proxy_event(None), 400, "request body is empty"),
    ("whitespace-body", proxy_event(" \r\n\t "), 400, "request body is empty"),
    ("bom-only", proxy_event(b"\xef\xbb\xbf"), 400, "request body is empty"),
    ("null", proxy_event("null"), 400, "got null"),
    ("empty-list", proxy_event("[]"), 400, "got a list"),
    ("empty-object", proxy_event("{}"), 400, "got none"),
    ("bare-string", proxy_event('"instances"'), 400, "must be a JSON object"),
    ("bare-number", proxy_event("42"), 400, "must be a JSON object"),
    ("bare-true", proxy_event("true"), 400, "must be a JSON object"),
    ("truncated-json", proxy_event('{"instances": [[5.1, 3.5'), 400, "malformed JSON"),
    ("trailing-garbage", proxy_event('{"instances": [[5.1, 3.5, 1.4, 0.2]]} x'), 400,
     "malformed JSON"),
    ("two-documents", proxy_event('{"instances": [[5.1, 3.5, 1.4, 0.2]]}{}'), 400, "malformed JSON"),
    ("single-quotes", proxy_event("{'instances': [[5.1, 3.5, 1.4, 0.2]]}"), 400, "malformed JSON"),
    ("trailing-comma", proxy_event('{"instances": [[5.1, 3.5, 1.4, 0.2],]}'), 400, "malformed JSON"),
    ("empty-instances", json_event({"instances": []}), 400, "at least one row"),
    ("empty-row", json_event({"instances": [[]]}), 422, "expected 4 values"),
    # --- huge things ---------------------------------------------------------
    ("huge-string-value", json_event({"instances": [["x" * MIB, 1, 2, 3]]}), 422,
     'expected a number, got "xxxxxxxx'),
    ("huge-string-key", json_event({"instances": [{"k" * MIB: 1}]}), 422, "unknown feature"),
    ("huge-unknown-top-key", json_event({"x" * MIB: 1}), 400, "unknown key"),
    ("huge-csv-field", proxy_event('"' + "x" * 200_000 + '",1,2,3\n', content_type=CSV), 400,
     "malformed CSV"),
    ("body-exactly-6MiB", proxy_event(_padded_json(6 * MIB)), 200, None),
    ("body-6MiB-plus-1", proxy_event(_padded_json(6 * MIB + 1)), 413, "exceeds the limit"),
    ("body-7MB-json", proxy_event('{"instances": [' + " " * 7_000_000 + "]}"), 413,
     "exceeds the limit"),
    ("body-7MB-csv", proxy_event("5.1,3.5,1.4,0.2\n" * 450_000, content_type=CSV), 413,
     "exceeds the limit"),
    ("body-7MB-base64", proxy_event(b" " * 7_000_000), 413, "exceeds the limit"),
    ("rows-over-MAX_ROWS", json_event({"instances": [IRIS_ROWS[0]] * 10_001}), 413, "10001 rows"),
    ("csv-rows-over-MAX_ROWS", proxy_event("5.1,3.5,1.4,0.2\n" * 10_001, content_type=CSV), 413,
     "more than 10000 rows"),
    ("many-columns", json_event({"instances": [list(range(100_000))]}), 422, "got 100000"),
    # --- wrong types at every level ------------------------------------------
    ("instances-string", json_event({"instances": "5.1,3.5,1.4,0.2"}), 400,
     "instances: expected a list of rows"),
    ("instances-number", json_event({"instances": 5}), 400, "instances: expected a list of rows"),
    ("instances-object", json_event({"instances": ROW}), 400, "instances: expected a list of rows"),
    ("instances-null", json_event({"instances": None}), 400, "instances: expected a list of rows"),
    ("instances-true", json_event({"instances": True}), 400, "instances: expected a list of rows"),
    ("row-bool", json_event({"instances": [True]}), 400, "instances[0]: expected a list"),
    ("row-null", json_event({"instances": [IRIS_ROWS[0], None]}), 400, "instances[1]"),
    ("row-string", json_event({"instances": ["5.1,3.5,1.4,0.2"]}), 400, "instances[0]"),
    ("row-number", json_event({"instances": [5.1, 3.5, 1.4, 0.2]}), 400, "instances[0]"),
    ("row-list-after-object", json_event({"instances": [ROW, IRIS_ROWS[0]]}), 400,
     "instances[1]: expected an object"),
    ("row-object-after-list", json_event({"instances": [IRIS_ROWS[0], ROW]}), 400,
     "instances[1]: expected a list"),
    ("value-bool", json_event({"instances": [[5.1, 3.5, 1.4, False]]}), 422, "got false"),
    ("value-null", json_event({"instances": [[5.1, None, 1.4, 0.2]]}), 422, "got null"),
    ("value-string-number", json_event({"instances": [["5.1", 3.5, 1.4, 0.2]]}), 422, 'got "5.1"'),
    ("value-list", json_event({"instances": [[[5.1], 3.5, 1.4, 0.2]]}), 422, "got a list"),
    ("value-object", json_event({"instances": [[{}, 3.5, 1.4, 0.2]]}), 422, "got an object"),
    ("record-value-list", json_event({"instances": [dict(ROW, petal_width=[0.2])]}), 422,
     "instances[0].petal_width"),
    ("record-value-bool", json_event({"dataframe_records": [dict(ROW, petal_width=True)]}), 422,
     "dataframe_records[0].petal_width: expected a number, got true"),
    ("record-unknown-feature", json_event({"instances": [dict(ROW, colour=1)]}), 422,
     'unknown feature "colour"'),
    ("record-missing-feature", json_event({"instances": [{"sepal_length": 1}]}), 422,
     "missing feature"),
    ("records-not-list", json_event({"dataframe_records": ROW}), 400, "expected a list of rows"),
    ("records-row-list", json_event({"dataframe_records": [IRIS_ROWS[0]]}), 400,
     "dataframe_records[0]: expected an object"),
    ("split-not-object", json_event({"dataframe_split": [[1, 2, 3, 4]]}), 400,
     "dataframe_split: expected an object"),
    ("split-columns-string", json_event({"dataframe_split": {"columns": "sepal_length",
                                                             "data": [[1, 2, 3, 4]]}}), 400,
     "dataframe_split.columns: expected a list"),
    ("split-columns-numbers", json_event({"dataframe_split": {"columns": [0, 1, 2, 3],
                                                              "data": [[1, 2, 3, 4]]}}), 400,
     "dataframe_split.columns"),
    ("split-columns-object", json_event({"dataframe_split": {"columns": ROW,
                                                             "data": [[1, 2, 3, 4]]}}), 400,
     "dataframe_split.columns"),
    ("split-columns-short", json_event({"dataframe_split": {"columns": FEATURES[:2],
                                                            "data": [[1, 2, 3, 4]]}}), 422,
     "missing feature"),
    ("split-columns-duplicate", json_event({"dataframe_split": {"columns": FEATURES[:3] + FEATURES[:1],
                                                                "data": [[1, 2, 3, 4]]}}), 422,
     "appears twice"),
    ("split-data-string", json_event({"dataframe_split": {"columns": FEATURES, "data": "1,2,3,4"}}),
     400, "dataframe_split.data: expected a list of rows"),
    ("split-data-object", json_event({"dataframe_split": {"columns": FEATURES, "data": ROW}}),
     400, "dataframe_split.data: expected a list of rows"),
    ("split-data-rows-objects", json_event({"dataframe_split": {"columns": FEATURES, "data": [ROW]}}),
     400, "dataframe_split.data[0]"),
    ("split-data-missing", json_event({"dataframe_split": {"columns": FEATURES}}), 400,
     "missing key 'data'"),
    ("split-index-string", json_event({"dataframe_split": {"index": "0", "data": [[1, 2, 3, 4]]}}),
     400, "dataframe_split.index"),
    ("split-unknown-key", json_event({"dataframe_split": {"data": [[1, 2, 3, 4]], "dtypes": {}}}),
     400, 'unknown key "dtypes"'),
    ("probabilities-string", json_event({"instances": IRIS_ROWS, "probabilities": "true"}), 400,
     "probabilities: expected true or false"),
    ("probabilities-number", json_event({"instances": IRIS_ROWS, "probabilities": 1}), 400,
     "probabilities: expected true or false"),
    ("probabilities-null", json_event({"instances": IRIS_ROWS, "probabilities": None}), 400,
     "probabilities: expected true or false"),
    ("probabilities-query-bad-csv", proxy_event("5.1,3.5,1.4,0.2\n", content_type=CSV,
                                                query={"probabilities": "maybe"}), 400,
     "probabilities: expected true or false"),
    ("two-formats", json_event({"instances": IRIS_ROWS, "dataframe_records": [ROW]}), 400,
     "instances and dataframe_records"),
    ("only-probabilities", json_event({"probabilities": True}), 400, "got none"),
    ("unknown-top-key", json_event({"rows": IRIS_ROWS}), 400, 'unknown key "rows"'),
    # --- ragged rows ---------------------------------------------------------
    ("ragged-short-second", json_event({"instances": [IRIS_ROWS[0], IRIS_ROWS[1][:3]]}), 422,
     "instances[1]: expected 4 values"),
    ("ragged-long-first", json_event({"instances": [IRIS_ROWS[0] + [1], IRIS_ROWS[1]]}), 422,
     "instances[0]: expected 4 values"),
    ("ragged-split", json_event({"dataframe_split": {"data": [[1, 2, 3, 4], [1, 2]]}}), 422,
     "dataframe_split.data[1]: expected 4 values"),
    ("ragged-csv", proxy_event("5.1,3.5,1.4,0.2\n5.1,3.5\n", content_type=CSV), 422,
     "CSV line 2: expected 4 values"),
    ("all-rows-3-wide", json_event({"instances": [[1, 2, 3]] * 5}), 422, "expected 4 values"),
    # --- base64 bodies (isBase64Encoded) -------------------------------------
    ("base64-valid-json", proxy_event(json.dumps({"instances": IRIS_ROWS}), encode_base64=True),
     200, None),
    ("base64-valid-csv", proxy_event(HEADER + "\n5.1,3.5,1.4,0.2\n", content_type=CSV,
                                     encode_base64=True), 200, None),
    ("base64-invalid-chars", proxy_event("!!!not base64!!!", base64_encoded=True), 400,
     "not valid base64"),
    ("base64-bad-padding", proxy_event("eyJpbnN0YW5jZXMiOg", base64_encoded=True), 400,
     "not valid base64"),
    ("base64-non-ascii", proxy_event("éé==", base64_encoded=True), 400, "not valid base64"),
    ("base64-of-invalid-utf8", proxy_event(b"\xff\xfe\xfd"), 400, "not valid UTF-8"),
    ("base64-of-json-null", proxy_event(b"null"), 400, "got null"),
    ("base64-empty", proxy_event("", base64_encoded=True), 400, "request body is empty"),
    # --- CSV -----------------------------------------------------------------
    ("csv-header-only", proxy_event(HEADER + "\n", content_type=CSV), 400, "no data rows"),
    ("csv-header-only-no-newline", proxy_event(HEADER, content_type=CSV), 400, "no data rows"),
    ("csv-empty", proxy_event("", content_type=CSV), 400, "no data rows"),
    ("csv-only-blank-lines", proxy_event("\n\n\r\n  \n", content_type=CSV), 400, "no data rows"),
    ("csv-quoted-values", proxy_event('"5.1","3.5","1.4","0.2"\n', content_type=CSV), 200, None),
    ("csv-quoted-header", proxy_event('"%s"\n5.1,3.5,1.4,0.2\n' % '","'.join(FEATURES),
                                      content_type=CSV), 200, None),
    ("csv-quoted-comma", proxy_event('"5,1",3.5,1.4,0.2\n', content_type=CSV), 422,
     'got "5,1"'),
    ("csv-unterminated-quote", proxy_event('"5.1,3.5,1.4,0.2\n', content_type=CSV), 400,
     "malformed CSV"),
    ("csv-quote-in-field", proxy_event('5"1,3.5,1.4,0.2\n', content_type=CSV), 422,
     "expected a number"),
    ("csv-blank-lines", proxy_event("\n\n5.1,3.5,1.4,0.2\n\n\n6.2,2.9,4.3,1.3\n\n", content_type=CSV),
     200, None),
    ("csv-extra-column", proxy_event("5.1,3.5,1.4,0.2,9\n", content_type=CSV), 422, "got 5"),
    ("csv-extra-header-column", proxy_event(HEADER + ",colour\n5.1,3.5,1.4,0.2,1\n", content_type=CSV),
     422, 'unknown feature "colour"'),
    ("csv-trailing-comma", proxy_event("5.1,3.5,1.4,0.2,\n", content_type=CSV), 422, "got 5"),
    ("csv-crlf", proxy_event("5.1,3.5,1.4,0.2\r\n6.2,2.9,4.3,1.3\r\n", content_type=CSV), 200, None),
    ("csv-cr-only", proxy_event("5.1,3.5,1.4,0.2\r6.2,2.9,4.3,1.3\r", content_type=CSV), 200, None),
    ("csv-mixed-endings", proxy_event(HEADER + "\r\n5.1,3.5,1.4,0.2\n6.2,2.9,4.3,1.3\r",
                                      content_type=CSV), 200, None),
    ("csv-nul-byte", proxy_event("5.1,3.5,1.4,0\x00.2\n", content_type=CSV), 422, "expected a number"),
    ("csv-bad-value-line-3", proxy_event(HEADER + "\n5.1,3.5,1.4,0.2\n5.1,abc,1.4,0.2\n",
                                         content_type=CSV), 422,
     'CSV line 3, column 2 (sepal_width): expected a number, got "abc"'),
    ("csv-json-body", proxy_event(json.dumps({"instances": IRIS_ROWS}), content_type=CSV), 422, None),
    ("csv-semicolons", proxy_event("5.1;3.5;1.4;0.2\n", content_type=CSV), 422, None),
    # --- Content-Type --------------------------------------------------------
    ("ct-odd-casing-and-charset", json_event({"instances": IRIS_ROWS},
                                             content_type="Application/JSON; Charset=UTF-8"), 200, None),
    ("ct-quoted-charset", json_event({"instances": IRIS_ROWS},
                                     content_type='application/json; charset="utf-8"'), 200, None),
    ("ct-charset-utf8-no-dash", json_event({"instances": IRIS_ROWS},
                                           content_type="application/json;charset=utf8"), 200, None),
    ("ct-csv-charset", proxy_event("5.1,3.5,1.4,0.2\n", content_type="text/csv;charset=utf-8"), 200, None),
    ("ct-CSV-casing", proxy_event("5.1,3.5,1.4,0.2\n", content_type="TEXT/CSV"), 200, None),
    ("ct-charset-latin1", json_event({"instances": IRIS_ROWS},
                                     content_type="application/json; charset=latin-1"), 415,
     "Unsupported charset"),
    ("ct-csv-charset-utf16", proxy_event("5.1,3.5,1.4,0.2\n", content_type="text/csv; charset=utf-16"),
     415, "Unsupported charset"),
    ("ct-two-types", json_event({"instances": IRIS_ROWS}, content_type="application/json, text/html"),
     415, "Unsupported media type"),
    ("ct-missing", json_event({"instances": IRIS_ROWS}, content_type=None), 200, None),
    ("ct-empty", json_event({"instances": IRIS_ROWS}, content_type=""), 415, "Unsupported media type"),
    ("ct-wildcard", json_event({"instances": IRIS_ROWS}, content_type="*/*"), 415,
     "Unsupported media type"),
    ("ct-xml", json_event({"instances": IRIS_ROWS}, content_type="application/xml"), 415,
     "Unsupported media type"),
    ("ct-text-plain", json_event({"instances": IRIS_ROWS}, content_type="text/plain"), 415,
     "Unsupported media type"),
    ("ct-form", proxy_event("instances=1", content_type="application/x-www-form-urlencoded"), 415,
     "Unsupported media type"),
    ("ct-json-suffix", json_event({"instances": IRIS_ROWS}, content_type="application/merge-patch+json"),
     415, "Unsupported media type"),
    ("ct-non-ascii", json_event({"instances": IRIS_ROWS}, content_type="application/json; charset=\u00e9"),
     415, "Unsupported charset"),
]
_ids = [c[0] for c in CASES]
assert len(set(_ids)) == len(_ids), "case ids must be unique"


@pytest.fixture(scope="module")
def handler():
    """The real Lambda handler with one warm service (LOG_REQUESTS off)."""
    saved = app_module.SERVICE
    app_module.SERVICE = service.from_environment(
        {"MODEL_DIR": BUNDLED_MODEL, "LOG_REQUESTS": "false"})
    yield lambda event: invoke(app_module.app, event)
    app_module.SERVICE = saved


@pytest.fixture(scope="module", autouse=True)
def _write_figures():
    yield
    os.makedirs(os.path.dirname(FIGURES), exist_ok=True)
    with open(FIGURES, "w") as f:
        json.dump({"cases": len(_seen),
                   "server_errors": sum(1 for _, status in _seen if status >= 500),
                   "statuses": {case: status for case, status in _seen}}, f, indent=1)


def check_body(status, headers, text):
    """Shape and hygiene of any answer; returns the parsed body."""
    assert status < 500, "server error %d: %s" % (status, text[:300])
    body = json.loads(text)
    for pattern in _LEAKS:
        assert not pattern.search(text), "leak (%s) in %s" % (pattern.pattern, text[:300])
    if status >= 400:
        # Chalice's own 405/415 answers carry no Content-Type; API Gateway
        # then sends its default, application/json.
        assert headers.get("Content-Type", "application/json").startswith("application/json")
        assert set(body) == {"Code", "Message"}, text[:300]
        assert type(body["Code"]) is str and type(body["Message"]) is str
        for version in _VERSIONS:
            assert version not in body["Message"], "library version in %s" % text[:300]
    return body


@pytest.mark.parametrize("case_id, event, expected, fragment", CASES, ids=_ids)
def test_named_case(handler, case_id, event, expected, fragment):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        status, headers, text = handler(event)
    _seen.append((case_id, status))
    body = check_body(status, headers, text)
    allowed = expected if isinstance(expected, tuple) else (expected,)
    assert status in allowed, "%s: expected %s, got %d: %s" % (case_id, expected, status, text[:300])
    if fragment is not None:
        assert fragment in body["Message"], body["Message"][:300]
    if status == 200:
        assert body["model"] == {"name": "iris-classifier", "version": "1.0.0"}
        assert body["predictions"], body


def test_valid_answers_match_the_estimator(handler, iris_model):
    """The cases that succeed answer exactly what the estimator predicts."""
    cases = [
        (proxy_event(b"\xef\xbb\xbf" + json.dumps({"instances": IRIS_ROWS}).encode()), IRIS_ROWS),
        (proxy_event("\n\n5.1,3.5,1.4,0.2\n\n\n6.2,2.9,4.3,1.3\n\n", content_type=CSV), IRIS_ROWS[:2]),
        (proxy_event('"%s"\r\n"5.1","3.5","1.4","0.2"\r\n' % '","'.join(reversed(FEATURES)),
                     content_type=CSV), [[0.2, 1.4, 3.5, 5.1]]),
        (proxy_event(json.dumps({"dataframe_split": {"columns": FEATURES[::-1],
                                                     "data": [r[::-1] for r in IRIS_ROWS]}}),
                     encode_base64=True), IRIS_ROWS),
        (json_event({"instances": [[2 ** 63, 1, 2, 3]]}), [[float(2 ** 63), 1, 2, 3]]),
    ]
    for event, rows in cases:
        status, headers, text = handler(event)
        _seen.append(("valid-equals-estimator", status))
        body = check_body(status, headers, text)
        assert status == 200, text
        assert body["predictions"] == iris_model.predict(np.asarray(rows, dtype=float)).tolist()


def test_large_bodies_under_a_lower_limit(monkeypatch):
    """MAX_BODY_BYTES is honoured at any size, decoded base64 included."""
    monkeypatch.setattr(app_module, "SERVICE", service.from_environment(
        {"MODEL_DIR": BUNDLED_MODEL, "LOG_REQUESTS": "false", "MAX_BODY_BYTES": "1000"}))
    for event, expected in [
        (proxy_event(_padded_json(1000)), 200),
        (proxy_event(_padded_json(1001)), 413),
        (proxy_event(_padded_json(1001).encode()), 413),
        (proxy_event("5.1,3.5,1.4,0.2\n" * 100, content_type=CSV), 413),
    ]:
        status, headers, text = invoke(app_module.app, event)
        _seen.append(("max-body-bytes-1000", status))
        check_body(status, headers, text)
        assert status == expected, text


def test_non_utf8_str_body_is_not_called_base64(handler):
    """A str body that cannot be UTF-8 encoded (a lone surrogate, which the
    Lambda runtime's JSON decoder can produce from ``"\\ud800"``) with
    ``isBase64Encoded: false`` must not be reported as bad base64."""
    status, headers, text = handler(proxy_event('{"instances": [["\ud800", 1, 2, 3]]}'))
    _seen.append(("surrogate-str-body", status))
    body = check_body(status, headers, text)
    assert status == 400
    assert "base64" not in body["Message"], body["Message"]


def test_other_methods_and_routes_answer_cleanly(handler):
    for event, expected in [
        (proxy_event("{}", method="PUT"), 405),
        (proxy_event("{}", method="DELETE"), 405),
        (proxy_event("{}", method="POST", path="/health"), 405),
        (proxy_event(None, method="GET", content_type=None), 200),
        (proxy_event(None, method="GET", path="/health", content_type=None), 200),
    ]:
        status, headers, text = handler(event)
        _seen.append(("method-%s-%s" % (event["httpMethod"], event["path"]), status))
        check_body(status, headers, text)
        assert status == expected, text
