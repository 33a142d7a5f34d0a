"""Property-based fuzzing of POST /model through the real Lambda handler.

Every generated request is an API Gateway REST (v1) proxy event given to
``app.app``. Properties, for every request:

* never a 5xx;
* every error body is exactly ``{"Code": str, "Message": str}``, with no
  traceback, file path or library version;
* every valid request answers 200 with predictions equal to the served
  runtime's own bare ``predict()`` on the same rows (and probabilities equal
  to its ``predict_proba``): the ONNX graph through onnxruntime for the
  bundled model, the pickle through scikit-learn under
  ``FUZZ_RUNTIME=scikit-learn`` (``tools.harden`` runs both).

Example counts: ``FUZZ_EXAMPLES`` is the total number of generated requests
to aim for across this module (default 1,200: well under a minute on two
cores). ``python -m tools.harden`` runs it with ``FUZZ_EXAMPLES=12000``.
Generation is derandomized and the example database is off, so a run is
reproducible (CI sees the same cases every time). The figures are written to
``build/harden/fuzz.json``.
"""
import base64
import collections
import json
import os
import re
import string

import joblib
import numpy as np
import pytest
import sklearn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import app as app_module
from chalicelib.protocols import service
from chalicelib.runtimes.choice import load_model_dir
from tests.conftest import BUNDLED_MODEL, FEATURES
from tests.proxy_event import invoke, proxy_event

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIGURES = os.path.join(PROJECT_DIR, "build", "harden", "fuzz%s.json"
                       % ("-" + os.environ["FUZZ_RUNTIME"] if os.environ.get("FUZZ_RUNTIME") else ""))
RUNTIME = os.environ.get("FUZZ_RUNTIME") or None  # None: the card's
# The oracle: the runtime's own model object, called bare in this process.
ESTIMATOR = load_model_dir(BUNDLED_MODEL, RUNTIME).estimator
CLASSES = np.asarray(ESTIMATOR.classes_).tolist()
TOTAL = int(os.environ.get("FUZZ_EXAMPLES", "1200"))

# Share of TOTAL per property; the weights sum to 1.
_WEIGHTS = {
    "valid": 0.25,
    "valid_any_finite": 0.10,
    "json_any": 0.15,
    "json_in_format": 0.10,
    "mutated": 0.20,
    "random_bytes": 0.07,
    "csv_text": 0.08,
    "headers": 0.05,
}


def _settings(name, **extra):
    return settings(max_examples=max(10, int(TOTAL * _WEIGHTS[name])), derandomize=True,
                    database=None, deadline=None, print_blob=True, **extra)


STATS = {"requests": 0, "server_errors": 0, "valid_checked": 0,
         "statuses": collections.Counter(), "by_property": collections.Counter()}

_LEAKS = re.compile(r"Traceback \(most recent call last\)|File \"[^\"]+\", line \d+|"
                    r"site-packages|dist-packages|/var/task|" + re.escape(PROJECT_DIR))
_VERSIONS = (sklearn.__version__, np.__version__, joblib.__version__)


@pytest.fixture(scope="module", autouse=True)
def warm_service():
    """One warm service for the whole module, request logging off."""
    saved = app_module.SERVICE
    app_module.SERVICE = service.from_environment(
        {"MODEL_DIR": BUNDLED_MODEL, "LOG_REQUESTS": "false", "MODEL_RUNTIME": RUNTIME or ""})
    yield
    app_module.SERVICE = saved
    os.makedirs(os.path.dirname(FIGURES), exist_ok=True)
    with open(FIGURES, "w") as f:
        json.dump({"runtime": RUNTIME or "the card's",
                   "requests": STATS["requests"], "server_errors": STATS["server_errors"],
                   "valid_checked": STATS["valid_checked"], "target": TOTAL,
                   "statuses": dict(STATS["statuses"]),
                   "by_property": dict(STATS["by_property"])}, f, indent=1)


def send(event, prop):
    """Invoke the handler; check the properties every answer must have."""
    status, headers, text = invoke(app_module.app, event)
    STATS["requests"] += 1
    STATS["statuses"][status] += 1
    STATS["by_property"][prop] += 1
    if status >= 500:
        STATS["server_errors"] += 1
    assert status < 500, "server error %d: %s" % (status, text[:500])
    body = json.loads(text)
    if status >= 400:
        assert status in (400, 405, 413, 415, 422), (status, text[:500])
        assert type(body) is dict and set(body) == {"Code", "Message"}, text[:500]
        assert type(body["Code"]) is str and type(body["Message"]) is str, text[:500]
        assert not _LEAKS.search(text), text[:500]
    else:
        assert status == 200
        assert set(body) >= {"predictions", "model"}, text[:500]
        assert all(label in CLASSES for label in body["predictions"]), text[:500]
    return status, body


def expected_answer(rows, probabilities):
    """What the estimator itself says for ``rows``: ``(predictions,
    probabilities)``, or None when scikit-learn refuses the values (its own
    input validation finds them infinite after float conversion, or its
    arithmetic overflows)."""
    X = np.asarray(rows, dtype=np.float64)
    try:
        with np.errstate(over="raise", invalid="raise"):
            predictions = ESTIMATOR.predict(X).tolist()
            proba = ESTIMATOR.predict_proba(X).tolist() if probabilities else None
    except (ValueError, FloatingPointError):
        return None
    return predictions, proba


def check_matches_estimator(status, body, rows, probabilities):
    expected = expected_answer(rows, probabilities)
    if expected is None:
        assert status == 422, "the estimator refuses these values, the service answered %d: %s" % (
            status, json.dumps(body)[:300])
        return
    assert status == 200, body
    assert body["predictions"] == expected[0]
    if probabilities:
        assert body["classes"] == CLASSES
        assert body["probabilities"] == expected[1]
    else:
        assert "probabilities" not in body
    STATS["valid_checked"] += 1


# --- strategies ---------------------------------------------------------------

moderate = st.one_of(
    st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
    st.integers(-10 ** 6, 10 ** 6),
    st.sampled_from([0, 0.0, -0.0, 5e-324, 1e-300, 5.1, 3.5, 1.4, 0.2]),
)
any_finite = st.one_of(st.floats(allow_nan=False, allow_infinity=False),
                       st.integers(-(2 ** 70), 2 ** 70))


def rows_of(values, max_rows=12):
    return st.lists(st.lists(values, min_size=4, max_size=4), min_size=1, max_size=max_rows)


json_content_types = st.sampled_from([
    "application/json", "application/json; charset=utf-8", "Application/JSON; Charset=UTF-8",
    'application/json;charset="UTF-8"', "APPLICATION/JSON", None])
csv_content_types = st.sampled_from([
    "text/csv", "text/csv; charset=utf-8", "TEXT/CSV;CHARSET=UTF8", "Text/Csv"])


def _num_text(v):
    return repr(float(v)) if type(v) is float else str(v)


@st.composite
def valid_request(draw, values=moderate):
    """A valid request in any accepted format; returns (event, rows, probabilities)."""
    rows = draw(rows_of(values))
    fmt = draw(st.sampled_from(["lists", "objects", "split", "records", "csv"]))
    probabilities = draw(st.booleans())
    order = draw(st.permutations(range(4)))
    query = None
    if fmt == "csv":
        header = draw(st.sampled_from(["none", "ordered", "permuted", "quoted"]))
        eol = draw(st.sampled_from(["\n", "\r\n", "\r"]))
        cols = list(range(4)) if header in ("none", "ordered") else order
        lines = []
        if header != "none":
            names = [FEATURES[j] for j in cols]
            lines.append(",".join('"%s"' % n for n in names) if header == "quoted" else ",".join(names))
        quote = draw(st.booleans())
        for row in rows:
            fields = [_num_text(row[j]) for j in cols]
            if quote:
                fields = ['"%s"' % f for f in fields]
            lines.append(",".join(fields))
            if draw(st.integers(0, 9)) == 0:
                lines.append("")  # a blank line
        text = eol.join(lines) + draw(st.sampled_from(["", eol, eol + eol]))
        if draw(st.booleans()):
            query = {"probabilities": draw(st.sampled_from(["true", "True", "1", "TRUE"]))
                     if probabilities else draw(st.sampled_from(["false", "0", "FALSE"]))}
        else:
            probabilities = False
        body, ctype = text, draw(csv_content_types)
    else:
        if fmt == "lists":
            payload = {"instances": rows}
        elif fmt in ("objects", "records"):
            records = [{FEATURES[j]: row[j] for j in order} for row in rows]
            payload = {"instances" if fmt == "objects" else "dataframe_records": records}
        else:
            split = {"columns": [FEATURES[j] for j in order],
                     "data": [[row[j] for j in order] for row in rows]}
            if draw(st.booleans()):
                split["index"] = list(range(len(rows)))
            if order == list(range(4)) and draw(st.booleans()):
                del split["columns"]
            payload = {"dataframe_split": split}
        if probabilities or draw(st.booleans()):
            payload["probabilities"] = probabilities
        keys = list(payload)
        payload = {k: payload[k] for k in draw(st.permutations(keys))}
        body = json.dumps(payload, indent=draw(st.sampled_from([None, None, 1])))
        ctype = draw(json_content_types)
    if draw(st.integers(0, 9)) == 0:
        body = "\ufeff" + body  # a UTF-8 BOM
    transport = draw(st.sampled_from(["str", "str", "base64"]))
    event = proxy_event(body.encode("utf-8") if transport == "base64" else body,
                        content_type=ctype, query=query)
    return event, rows, probabilities


json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(),
                         st.text(max_size=20), st.sampled_from(FEATURES + ["instances", "data"]))
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=6),
        st.dictionaries(st.one_of(st.text(max_size=12), st.sampled_from(
            FEATURES + ["instances", "dataframe_split", "dataframe_records", "probabilities",
                        "columns", "data", "index"])), children, max_size=6)),
    max_leaves=40)


def _dump(value):
    """JSON text; NaN/Infinity literals stay in, as a client could send them."""
    return json.dumps(value, allow_nan=True)


def _paths(value, prefix=()):
    """Every path into a JSON value (the empty path is the value itself)."""
    yield prefix
    if type(value) is dict:
        for k, v in value.items():
            yield from _paths(v, prefix + (k,))
    elif type(value) is list:
        for i, v in enumerate(value):
            yield from _paths(v, prefix + (i,))


def _get(value, path):
    for step in path:
        value = value[step]
    return value


@st.composite
def mutated_payload(draw):
    """A valid JSON payload with 1-3 mutations at random paths: a value
    replaced by any JSON value, a key dropped, a key added, an element
    dropped or duplicated."""
    event, rows, probabilities = draw(valid_request())
    if (event["headers"].get("Content-Type") or "").lower().startswith("text/csv"):
        payload = {"instances": rows}
    else:
        raw = event["body"]
        if event["isBase64Encoded"]:
            raw = base64.b64decode(raw).decode("utf-8")
        payload = json.loads(raw.lstrip("\ufeff"))
    for _ in range(draw(st.integers(1, 3))):
        paths = list(_paths(payload))
        path = draw(st.sampled_from(paths))
        op = draw(st.sampled_from(["replace", "replace", "drop", "add", "duplicate"]))
        if path == ():
            payload = draw(json_values) if op == "replace" else payload
            if type(payload) is not dict and type(payload) is not list:
                break
            continue
        parent = _get(payload, path[:-1])
        key = path[-1]
        if op == "replace":
            parent[key] = draw(json_values)
        elif op == "drop":
            del parent[key]
        elif op == "add":
            if type(parent) is dict:
                parent[draw(st.text(max_size=12))] = draw(json_values)
            else:
                parent.insert(key, draw(json_values))
        elif type(parent) is list:
            parent.insert(key, parent[key])
        else:
            parent[draw(st.sampled_from(FEATURES + ["probabilities", "columns"]))] = parent[key]
    return payload


# --- properties ---------------------------------------------------------------

@_settings("valid")
@given(valid_request())
def test_valid_requests_match_the_estimator(request_):
    event, rows, probabilities = request_
    status, body = send(event, "valid")
    check_matches_estimator(status, body, rows, probabilities)


@_settings("valid_any_finite")
@given(valid_request(values=any_finite))
def test_any_finite_values_never_fail_the_server(request_):
    """Any finite float64 (and integers beyond int64) is well-formed: the
    answer is the estimator's, or 422 when the values overflow the model's
    arithmetic (scikit-learn's own validation would refuse them); never a
    5xx, and never a label computed from overflowed values."""
    event, rows, probabilities = request_
    status, body = send(event, "valid_any_finite")
    check_matches_estimator(status, body, rows, probabilities)


@_settings("json_any")
@given(json_values, json_content_types)
def test_any_json_value(value, content_type):
    send(proxy_event(_dump(value), content_type=content_type), "json_any")


@_settings("json_in_format")
@given(st.sampled_from(["instances", "dataframe_split", "dataframe_records"]), json_values,
       st.one_of(st.none(), json_values))
def test_any_json_value_under_a_format_key(key, value, probabilities):
    payload = {key: value}
    if probabilities is not None:
        payload["probabilities"] = probabilities
    send(proxy_event(_dump(payload)), "json_in_format")


@_settings("mutated")
@given(mutated_payload(), st.booleans())
def test_mutated_valid_payloads(payload, as_base64):
    body = _dump(payload)
    send(proxy_event(body.encode() if as_base64 else body), "mutated")


@_settings("random_bytes", suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600), st.sampled_from(["application/json", "text/csv", None]),
       st.sampled_from(["plain", "base64", "marked-base64"]))
def test_random_bytes(data, content_type, transport):
    if transport == "base64":
        event = proxy_event(data, content_type=content_type)
    elif transport == "marked-base64":
        # arbitrary (mostly invalid) text claimed to be base64
        event = proxy_event(data.decode("latin-1"), content_type=content_type,
                            base64_encoded=True)
    else:
        # API Gateway hands a non-binary body over as text: undecodable
        # bytes become U+FFFD
        event = proxy_event(data.decode("utf-8", "replace"), content_type=content_type)
    send(event, "random_bytes")


csv_fields = st.one_of(
    moderate.map(_num_text), st.sampled_from(FEATURES + ["", " ", "NaN", "inf", "-Infinity",
                                                         "1e400", "nan", "NA", "true", "null"]),
    st.text(alphabet=string.printable, max_size=8),
    st.text(max_size=5))


@_settings("csv_text")
@given(st.lists(st.lists(csv_fields, min_size=0, max_size=6), max_size=8),
       st.sampled_from([",", ";", "\t", ", "]), st.sampled_from(["\n", "\r\n", "\r"]),
       st.booleans(), st.one_of(st.none(), st.text(max_size=6)))
def test_csv_text(lines, sep, eol, header, probabilities):
    text = eol.join(sep.join(fields) for fields in lines)
    if header:
        text = ",".join(FEATURES) + eol + text
    query = None if probabilities is None else {"probabilities": probabilities}
    send(proxy_event(text, content_type="text/csv", query=query), "csv_text")


@_settings("headers")
@given(st.one_of(
    st.none(),
    st.text(max_size=40),
    st.builds(lambda t, p: t + p,
              st.sampled_from(["application/json", "text/csv", "Application/Json", "text/CSV",
                               "application/xml", "*/*", "text/*", ""]),
              st.text(alphabet=string.printable, max_size=30)),
), st.sampled_from(['{"instances": [[5.1, 3.5, 1.4, 0.2]]}', "5.1,3.5,1.4,0.2\n"]),
   st.one_of(st.none(), st.lists(st.text(max_size=8), min_size=1, max_size=3)))
def test_content_type_and_query_headers(content_type, body, probabilities):
    query = None if probabilities is None else {"probabilities": probabilities}
    status, answer = send(proxy_event(body, content_type=content_type, query=query), "headers")
    if status == 200:
        assert answer["predictions"] == ["setosa"]


def test_the_fuzz_reached_its_target():
    """Runs last in this module: the properties above sent at least ~90% of
    TOTAL requests (hypothesis may stop early once a small space is
    exhausted), with no server error."""
    if not STATS["requests"]:
        pytest.skip("run together with the properties above")
    assert STATS["server_errors"] == 0
    assert STATS["requests"] >= 0.9 * TOTAL, dict(STATS["by_property"])
    assert STATS["valid_checked"] > 0
