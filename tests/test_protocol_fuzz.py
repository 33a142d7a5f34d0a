"""Generated requests to every protocol's prediction route, as API Gateway
``prod``-stage proxy events to the real handler: no answer is a 5xx, every
error is in its protocol's shape with nothing internal in it, and every 200
answers labels the model knows.

Bodies: arbitrary JSON, JSON in each protocol's own structure with
arbitrary leaves, arbitrary bytes under each content type (binary V2 tensor
headers included).
"""
import json
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import app as app_module
from chalicelib.protocols import service
from tests.conftest import BUNDLED_MODEL, FEATURES, PROJECT_DIR
from tests.proxy_event import invoke, proxy_event

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")
NAME = "iris-classifier"
CLASSES = ["setosa", "versicolor", "virginica"]
ROUTES = {
    "mlflow": ("/invocations", "/invocations", None),
    "kserve_v1": ("/v1/models/%s:predict" % NAME, "/v1/models/{segment}",
                  {"segment": NAME + ":predict"}),
    "open_inference": ("/v2/models/%s/infer" % NAME, "/v2/models/{name}/infer", {"name": NAME}),
}
ERROR_KEYS = {"mlflow": {"error_code", "message"}, "kserve_v1": {"error"},
              "open_inference": {"error"}}
_LEAKS = re.compile(r"Traceback|File \"|site-packages|/var/task|" + re.escape(PROJECT_DIR))
SETTINGS = settings(max_examples=150, derandomize=True, database=None, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


@pytest.fixture(scope="module", autouse=True)
def warm_service():
    saved = app_module.SERVICE
    app_module.SERVICE = service.from_environment(
        {"MODEL_DIR": BUNDLED_MODEL, "LOG_REQUESTS": "false"})
    yield
    app_module.SERVICE = saved


def send(protocol, body, content_type="application/json", headers=None):
    path, resource, params = ROUTES[protocol]
    event = proxy_event(body, path=path, content_type=content_type, headers=headers)
    event["resource"] = event["requestContext"]["resourcePath"] = resource
    event["pathParameters"] = params
    status, response_headers, text = invoke(app_module.app, event)
    assert status < 500, (status, text[:500])
    if response_headers.get("Content-Type") != "application/json":
        return status
    answer = json.loads(text)
    if status >= 400:
        assert status in (400, 404, 406, 413, 415, 422), (status, text[:300])
        assert set(answer) == ERROR_KEYS[protocol] and not _LEAKS.search(text), text[:300]
    elif protocol == "open_inference":
        labels = answer["outputs"][0]["data"] if answer["outputs"][0]["name"] == "predictions" \
            else answer["outputs"][1]["data"]
        assert set(labels) <= set(CLASSES)
    else:
        assert set(answer["predictions"]) <= set(CLASSES), text[:300]
    return status


leaves = (st.none() | st.booleans() | st.integers(-10**20, 10**20)
          | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=8))
any_json = st.recursive(leaves, lambda inner: st.lists(inner, max_size=5)
                        | st.dictionaries(st.text(max_size=8) | st.sampled_from(FEATURES), inner,
                                          max_size=5), max_leaves=25)
numbers = st.floats(-10, 10, allow_nan=False) | st.integers(-5, 5)
value = numbers | leaves
rows = st.lists(st.lists(value, min_size=3, max_size=5), min_size=1, max_size=4)


def _dump(payload):
    try:
        return json.dumps(payload)
    except (ValueError, TypeError):
        return "{}"


@SETTINGS
@given(protocol=st.sampled_from(sorted(ROUTES)), payload=any_json)
def test_any_json(protocol, payload):
    send(protocol, _dump(payload))


@SETTINGS
@given(key=st.sampled_from(["inputs", "instances", "dataframe_split", "dataframe_records"]),
       data=rows | any_json, params=st.none() | any_json)
def test_mlflow_structure(key, data, params):
    body = {key: data}
    if key == "dataframe_split":
        body[key] = {"columns": FEATURES, "data": data}
    if params is not None:
        body["params"] = params
    send("mlflow", _dump(body))


@SETTINGS
@given(datatype=st.sampled_from(["FP64", "FP32", "INT64", "UINT8", "BOOL", "BYTES", "FP16", "X"]),
       shape=st.lists(st.integers(0, 5), max_size=3), data=rows | any_json,
       name=st.sampled_from(["rows"] + FEATURES), outputs=st.none() | any_json)
def test_open_inference_structure(datatype, shape, data, name, outputs):
    body = {"inputs": [{"name": name, "shape": shape, "datatype": datatype, "data": data}]}
    if outputs is not None:
        body["outputs"] = outputs
    send("open_inference", _dump(body))


@SETTINGS
@given(protocol=st.sampled_from(sorted(ROUTES)), raw=st.binary(max_size=200),
       content_type=st.sampled_from(["application/json", "text/csv", "application/x-npy",
                                     "application/octet-stream", "text/plain", None]),
       header_length=st.none() | st.integers(-1, 250).map(str) | st.text(max_size=4))
def test_any_bytes(protocol, raw, content_type, header_length):
    headers = {"Accept": "application/json"}
    if header_length is not None:
        headers["Inference-Header-Content-Length"] = header_length
    send(protocol, raw, content_type, headers)


@SETTINGS
@given(text=st.text(alphabet=",\n\"0123456789.e-abcx" + "".join(FEATURES), max_size=120),
       accept=st.sampled_from(["text/csv", "application/x-npy", "*/*", "image/png", ""]))
def test_csv_on_invocations(text, accept):
    send("mlflow", text, "text/csv", {"Accept": accept} if accept else None)
