"""The peers' protocols in detail, through the real app: Chalice's test
client for each protocol's request shapes, answers and error shapes, and
API Gateway ``prod``-stage proxy events (the deployed function's path) for
the binary bodies: ``.npy`` in and out, V2's binary tensors, and what API
Gateway does to binary bytes sent without a binary media type.

Predictions are compared with ``POST /model``'s for the same rows, computed
in the same run.
"""
import io
import json
import struct

import numpy as np
import pytest

import app as app_module
from chalicelib.protocols.identity import SERVER_VERSION
from tests.conftest import FEATURES, IRIS_ROWS, body_of
from tests.proxy_event import invoke, proxy_event

NAME = "iris-classifier"
JSON = {"Content-Type": "application/json"}


def post(api, path, body, headers=None):
    if not isinstance(body, (str, bytes)):
        body = json.dumps(body)
    return api.client.http.post(path, headers=headers or JSON, body=body)


def model_answer(api, rows=IRIS_ROWS, probabilities=False):
    response = api.post({"instances": rows, "probabilities": probabilities})
    assert response.status_code == 200
    return body_of(response)


def npy(array):
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


# --- MLflow ------------------------------------------------------------------


def test_mlflow_formats_equal_post_model(api):
    expected = model_answer(api, probabilities=True)
    columns = {f: [r[i] for r in IRIS_ROWS] for i, f in enumerate(FEATURES)}
    records = [dict(zip(FEATURES, r)) for r in IRIS_ROWS]
    for body in ({"dataframe_split": {"columns": FEATURES, "data": IRIS_ROWS}},
                 {"dataframe_records": records}, {"instances": IRIS_ROWS},
                 {"inputs": IRIS_ROWS}, {"inputs": records}, {"inputs": columns},
                 {"inputs": IRIS_ROWS, "params": {"temperature": 0.1}}):
        response = post(api, "/invocations", body)
        assert response.status_code == 200, body
        assert body_of(response) == {"predictions": expected["predictions"]}
    one_row = {f: IRIS_ROWS[0][i] for i, f in enumerate(FEATURES)}
    assert body_of(post(api, "/invocations", {"inputs": one_row}))["predictions"] == \
        expected["predictions"][:1]
    answer = body_of(post(api, "/invocations", {"inputs": IRIS_ROWS,
                                                "params": {"probabilities": True}}))
    assert answer == {k: expected[k] for k in ("predictions", "classes", "probabilities")}


@pytest.mark.parametrize("body, status, code, message", [
    ({"inputs": IRIS_ROWS, "instances": IRIS_ROWS}, 400, "BAD_REQUEST", "exactly one of"),
    ({"rows": IRIS_ROWS}, 400, "BAD_REQUEST", 'unknown key "rows"'),
    ({"inputs": IRIS_ROWS, "params": [1]}, 400, "BAD_REQUEST", "params: expected an object"),
    ({"inputs": IRIS_ROWS, "params": {"probabilities": "yes"}}, 400, "BAD_REQUEST",
     "params.probabilities"),
    ({"inputs": {"sepal_length": [1, 2], "sepal_width": [1]}}, 400, "BAD_REQUEST",
     "same number of values"),
    ({"inputs": 5}, 400, "BAD_REQUEST", "inputs: expected a list of rows"),
    ({"inputs": [[1, 2, 3]]}, 400, "INVALID_PARAMETER_VALUE", "inputs[0]: expected 4 values"),
    ({"inputs": {"sepal_length": [1], "bogus": [2]}}, 400, "INVALID_PARAMETER_VALUE",
     'inputs.columns: unknown feature "bogus"'),
    ({"dataframe_records": [{"sepal_length": 1}]}, 400, "INVALID_PARAMETER_VALUE",
     "dataframe_records[0]: missing feature"),
    ({"inputs": [[1, 2, 3, 4]] * 10001}, 413, "RESOURCE_EXHAUSTED", "10001 rows"),
])
def test_mlflow_errors(api, body, status, code, message):
    response = post(api, "/invocations", body)
    assert response.status_code == status
    answer = body_of(response)
    assert set(answer) == {"error_code", "message"} and answer["error_code"] == code
    assert message in answer["message"], answer


def test_mlflow_malformed_bodies(api):
    for body, message in (('{"inputs": [[1, 2', "malformed JSON"),
                          ('{"inputs": [], "inputs": []}', "duplicate key"),
                          ("", "empty"), ("5", "expected a JSON object")):
        response = post(api, "/invocations", body)
        assert response.status_code == 400 and message in body_of(response)["message"]
    response = post(api, "/invocations", "{}", {"Content-Type": "application/json; charset=latin-1"})
    assert response.status_code == 415 and body_of(response)["error_code"] == "BAD_REQUEST"


def test_ping_version_and_csv_with_pandas_index(api):
    assert api.get("/ping").status_code == 200
    response = api.get("/version")
    # MLflow's server answers its own version; the model's is in X-Model-Version.
    assert (response.status_code, response.body) == (200, SERVER_VERSION.encode())
    assert response.headers["X-Model-Version"] == "1.0.0"
    expected = model_answer(api)["predictions"]
    rows = "\n".join("%d,%s" % (i, ",".join(map(str, r))) for i, r in enumerate(IRIS_ROWS))
    for header in ("," + ",".join(FEATURES), "Unnamed: 0," + ",".join(FEATURES)):
        response = post(api, "/invocations", header + "\n" + rows + "\n", {"Content-Type": "text/csv"})
        assert body_of(response) == {"predictions": expected}, response.body
    bad = "," + ",".join(FEATURES) + "\n0,1,2,x,4\n"
    response = post(api, "/invocations", bad, {"Content-Type": "text/csv"})
    # MLflow answers INVALID_PARAMETER_VALUE with 400.
    assert response.status_code == 400 and "petal_length" in body_of(response)["message"]


# --- SageMaker ---------------------------------------------------------------


@pytest.mark.parametrize("accept, answer_type", [
    (None, "application/json"), ("*/*", "application/json"), ("text/*", "text/csv"),
    ("application/x-npy;q=0.5, text/csv", "text/csv"),
    ("text/csv;q=0.2, application/x-npy", "application/x-npy"),
    ("image/png, application/json;q=0.1", "application/json"),
])
def test_sagemaker_accept_decides_the_answer(api, accept, answer_type):
    expected = model_answer(api)["predictions"]
    headers = {"Content-Type": "application/x-npy"}
    if accept:
        headers["Accept"] = accept
    response = post(api, "/invocations", npy(np.array(IRIS_ROWS)), headers)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == answer_type
    if answer_type == "application/json":  # the container's bare array
        assert body_of(response) == expected
    elif answer_type == "text/csv":
        assert response.body.decode().splitlines() == expected
    else:
        assert np.load(io.BytesIO(response.body)).tolist() == expected


def test_sagemaker_bodies(api):
    expected = model_answer(api, probabilities=True)
    one = post(api, "/invocations", npy(np.array(IRIS_ROWS[0])), {"Content-Type": "application/x-npy"})
    # The SageMaker scikit-learn container answers an array request with a bare array.
    assert body_of(one) == expected["predictions"][:1]
    as_ints = post(api, "/invocations", npy(np.array([[5, 3, 1, 0]])),
                   {"Content-Type": "application/x-npy"})
    assert body_of(as_ints) == model_answer(api, [[5, 3, 1, 0]])["predictions"]
    assert body_of(post(api, "/invocations", IRIS_ROWS[0])) == expected["predictions"][:1]
    # A JSON object is MLflow's request, never a SageMaker row.
    record = post(api, "/invocations", dict(zip(FEATURES, IRIS_ROWS[0])))
    assert record.status_code == 400 and 'unknown key "sepal_length"' in \
        body_of(record)["message"]
    answer = body_of(post(api, "/invocations?probabilities=true", IRIS_ROWS))
    assert answer == {k: expected[k] for k in ("predictions", "classes", "probabilities")}
    cube = post(api, "/invocations", npy(np.ones((2, 2, 2))), {"Content-Type": "application/x-npy"})
    assert cube.status_code == 400 and "2-D" in body_of(cube)["message"]
    strings = post(api, "/invocations", npy(np.array([["a", "b", "c", "d"]])),
                   {"Content-Type": "application/x-npy"})
    assert strings.status_code == 400 and "npy[0][0] (sepal_length)" in body_of(strings)["message"]
    bad_flag = post(api, "/invocations?probabilities=maybe", IRIS_ROWS)
    assert bad_flag.status_code == 400


# --- KServe V1 ---------------------------------------------------------------


def test_kserve_v1_routes(api):
    expected = model_answer(api, probabilities=True)
    assert body_of(api.get("/v1/models")) == {"models": [NAME]}
    assert body_of(api.get("/v1/models/" + NAME)) == {"name": NAME, "ready": True}
    predict = "/v1/models/%s:predict" % NAME
    assert body_of(post(api, predict, {"instances": IRIS_ROWS})) == \
        {"predictions": expected["predictions"]}
    answer = body_of(post(api, predict, {"inputs": IRIS_ROWS, "probabilities": True}))
    assert answer == {k: expected[k] for k in ("predictions", "classes", "probabilities")}


@pytest.mark.parametrize("method, path, body, status, message", [
    ("GET", "/v1/models/other", None, 404, 'model "other" not found'),
    ("GET", "/v1/models/%s:predict" % NAME, None, 404, "no such operation"),
    ("POST", "/v1/models/%s" % NAME, {"instances": IRIS_ROWS}, 404, ":predict"),
    ("POST", "/v1/models/%s:explain" % NAME, {"instances": IRIS_ROWS}, 404, ":predict"),
    ("POST", "/v1/models/other:predict", {"instances": IRIS_ROWS}, 404, "not found"),
    ("POST", "/v1/models/%s:predict" % NAME, {"rows": []}, 400, 'unknown key "rows"'),
    ("POST", "/v1/models/%s:predict" % NAME, {"instances": [], "inputs": []}, 400,
     "exactly one of"),
    ("POST", "/v1/models/%s:predict" % NAME, [1], 400, "JSON object"),
    ("POST", "/v1/models/%s:predict" % NAME, {"inputs": [[1, 2, 3, None]]}, 422,
     "inputs[0][3] (petal_width)"),
])
def test_kserve_v1_errors(api, method, path, body, status, message):
    if method == "GET":
        response = api.get(path)
    else:
        response = post(api, path, body)
    assert response.status_code == status
    assert set(body_of(response)) == {"error"} and message in body_of(response)["error"]


# --- Open Inference Protocol (V2) --------------------------------------------


def infer(api, body, path="/v2/models/%s/infer" % NAME, headers=None):
    return post(api, path, body, headers)


def test_v2_health_and_metadata(api):
    assert body_of(api.get("/v2/health/live")) == {"live": True}
    assert body_of(api.get("/v2/health/ready")) == {"ready": True}
    assert body_of(api.get("/v2"))["extensions"] == ["binary_tensor_data", "classification",
                                                     "model_configuration", "statistics"]
    meta = body_of(api.get("/v2/models/" + NAME))
    assert meta == body_of(api.get("/v2/models/%s/versions/1.0.0" % NAME))
    assert meta["versions"] == ["1.0.0"]
    assert [(i["name"], i["datatype"]) for i in meta["inputs"]] == [(f, "FP64") for f in FEATURES]
    assert meta["outputs"] == [{"name": "predictions", "datatype": "BYTES", "shape": [-1]},
                               {"name": "probabilities", "datatype": "FP64", "shape": [-1, 3]}]
    assert api.get("/v2/models/%s/versions/2.0.0" % NAME).status_code == 404
    assert api.get("/v2/models/other/ready").status_code == 404


def test_v2_layouts_and_datatypes_equal_post_model(api):
    expected = model_answer(api, probabilities=True)
    n = len(IRIS_ROWS)
    flat = [v for r in IRIS_ROWS for v in r]
    bodies = [
        {"inputs": [{"name": "x", "shape": [n, 4], "datatype": "FP64", "data": IRIS_ROWS}]},
        {"inputs": [{"name": "x", "shape": [n, 4], "datatype": "FP64", "data": flat}]},
        {"inputs": [{"name": f, "shape": [n, 1], "datatype": "FP32",
                     "data": [[r[i]] for r in IRIS_ROWS]} for i, f in enumerate(FEATURES)]},
        {"inputs": [{"name": f, "shape": [n], "datatype": "FP64", "data": [r[i] for r in IRIS_ROWS]}
                    for i, f in reversed(list(enumerate(FEATURES)))]},
    ]
    for body in bodies:
        answer = body_of(infer(api, dict(body, id="abc", parameters={"any": 1})))
        assert answer["id"] == "abc" and answer["model_name"] == NAME
        outputs = {o["name"]: o for o in answer["outputs"]}
        assert outputs["predictions"]["data"] == expected["predictions"]
        assert outputs["predictions"]["shape"] == [n]
        assert outputs["probabilities"]["shape"] == [n, 3]
        assert outputs["probabilities"]["data"] == [p for r in expected["probabilities"] for p in r]
    ints = [[5, 3, 1, 0], [6, 3, 5, 2]]
    answer = body_of(infer(api, {"inputs": [{"name": "x", "shape": [2, 4], "datatype": "INT32",
                                             "data": ints}], "outputs": [{"name": "predictions"}]}))
    assert [o["name"] for o in answer["outputs"]] == ["predictions"]
    assert answer["outputs"][0]["data"] == model_answer(api, ints)["predictions"]


@pytest.mark.parametrize("body, status, message", [
    ({"inputs": []}, 400, "non-empty list"),
    ({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP128", "data": [1, 2, 3, 4]}]},
     400, "datatype"),
    ({"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP64", "data": [1, 2, 3, 4]}]},
     400, "holds 8 values, data has 4"),
    ({"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]}]},
     422, "shape [n, 4]"),
    ({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "INT64", "data": [1, 2, 3.5, 4]}]},
     422, "x).data[2]: expected a INT64 value"),
    ({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "BOOL",
                  "data": [True, False, True, True]}]}, 422, "x[0][0] (sepal_length)"),
    ({"inputs": [{"name": "sepal_length", "shape": [1], "datatype": "FP64", "data": [1]},
                 {"name": "bogus", "shape": [1], "datatype": "FP64", "data": [1]}]},
     422, 'unknown input "bogus"'),
    ({"inputs": [{"name": f, "shape": [1], "datatype": "FP64", "data": [1]}
                 for f in FEATURES[:3]]}, 422, 'missing feature "petal_width"'),
    ({"inputs": [{"name": f, "shape": [1], "datatype": "BYTES" if f == "petal_length" else "FP64",
                  "data": ["x" if f == "petal_length" else 1]} for f in FEATURES]},
     422, 'input "petal_length"[0]: expected a number'),
    ({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [1, 2, 3, 4]}],
      "outputs": [{"name": "scores"}]}, 400, "outputs[0].name"),
    ({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [1, 2, 3, 4]}],
      "id": 5}, 400, "id: expected a string"),
    ({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [1, 2, 3, 4]}],
      "extra": 1}, 400, 'unknown key "extra"'),
])
def test_v2_errors(api, body, status, message):
    response = infer(api, body)
    assert response.status_code == status
    answer = body_of(response)
    assert set(answer) == {"error"} and message in answer["error"], answer


def test_v2_unknown_model_or_version_is_404(api):
    body = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [1, 2, 3, 4]}]}
    for path in ("/v2/models/other/infer", "/v2/models/%s/versions/9/infer" % NAME):
        response = infer(api, body, path)
        assert response.status_code == 404 and set(body_of(response)) == {"error"}
    assert infer(api, body, "/v2/models/%s/versions/1.0.0/infer" % NAME).status_code == 200


# --- A model that did not load -------------------------------------------------


def test_a_model_that_did_not_load_is_503_in_each_protocols_shape(serve, pickled_model_copy):
    (pickled_model_copy / "model.joblib").write_bytes(b"not a pickle")
    api = serve(MODEL_DIR=pickled_model_copy)
    assert api.get("/v2/health/live").status_code == 200  # the process is alive
    for response, shape in (
            (api.get("/ping"), {"error_code", "message"}),
            (post(api, "/invocations", {"inputs": IRIS_ROWS}), {"error_code", "message"}),
            (api.get("/v1/models/" + NAME), {"error"}),
            (post(api, "/v1/models/%s:predict" % NAME, {"instances": IRIS_ROWS}), {"error"}),
            (api.get("/v2/health/ready"), {"error"}),
            (infer(api, {"inputs": []}), {"error"})):
        assert response.status_code == 503
        assert set(body_of(response)) == shape
    assert body_of(api.get("/ping"))["error_code"] == "TEMPORARILY_UNAVAILABLE"


def test_each_protocol_request_writes_one_log_line(serve, capsys):
    api = serve(LOG_REQUESTS="true")
    capsys.readouterr()
    post(api, "/v1/models/%s:predict" % NAME, {"instances": IRIS_ROWS})
    post(api, "/invocations", "x", {"Content-Type": "text/plain"})
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(x["route"], x["status"], x["rows"]) for x in lines] == [
        ("POST /v1/models/{name}:predict", 200, 3), ("POST /invocations", 415, 0)]


# --- The deployed function: API Gateway proxy events of the prod stage -----------


def event(path, body, content_type, resource, params=None, headers=None):
    e = proxy_event(body, path=path, content_type=content_type, headers=headers)
    e["resource"] = e["requestContext"]["resourcePath"] = resource
    e["pathParameters"] = params
    return e


@pytest.fixture
def handler(serve):
    serve()  # a fresh service for app_module.SERVICE
    return app_module.app


def test_npy_through_api_gateway(handler, api):
    expected = model_answer(api)["predictions"]
    e = event("/invocations", npy(np.array(IRIS_ROWS)), "application/x-npy", "/invocations",
              headers={"Accept": "application/x-npy"})
    assert e["isBase64Encoded"]
    response = handler(e, None)
    assert response["statusCode"] == 200 and response["isBase64Encoded"]
    import base64
    assert np.load(io.BytesIO(base64.b64decode(response["body"]))).tolist() == expected
    status, _, body = invoke(handler, event("/invocations", "\n".join(
        ",".join(map(str, r)) for r in IRIS_ROWS), "text/csv", "/invocations",
        headers={"Accept": "text/csv"}))
    assert (status, body.splitlines()) == (200, expected)


def _binary_v2(rows):
    raw = np.array(rows, dtype=np.float32).tobytes()
    head = json.dumps({"inputs": [{"name": "x", "shape": [len(rows), 4], "datatype": "FP32",
                                   "parameters": {"binary_data_size": len(raw)}}]}).encode()
    return head, raw


def test_v2_binary_tensors_through_api_gateway(handler, api):
    head, raw = _binary_v2(IRIS_ROWS)
    rows32 = np.array(IRIS_ROWS, dtype=np.float32).astype(float).tolist()
    expected = model_answer(api, rows32)["predictions"]
    path, resource, params = "/v2/models/%s/infer" % NAME, "/v2/models/{name}/infer", {"name": NAME}
    headers = {"Inference-Header-Content-Length": str(len(head))}
    status, _, body = invoke(handler, event(path, head + raw, "application/octet-stream",
                                            resource, params, headers))
    assert status == 200
    assert json.loads(body)["outputs"][0]["data"] == expected
    # Without a binary media type API Gateway hands the function text: the
    # bytes that are not UTF-8 are replaced, the sizes no longer add up, and
    # the client is told what to send.
    mangled = (head + raw).decode("utf-8", "replace")
    status, _, body = invoke(handler, event(path, mangled, None, resource, params, headers))
    assert status == 400 and "application/octet-stream" in json.loads(body)["error"]


def test_v1_segment_through_api_gateway(handler, api):
    expected = model_answer(api)["predictions"]
    e = event("/v1/models/%s:predict" % NAME, json.dumps({"instances": IRIS_ROWS}),
              "application/json", "/v1/models/{segment}", {"segment": NAME + ":predict"})
    status, _, body = invoke(handler, e)
    assert (status, json.loads(body)) == (200, {"predictions": expected})


def test_binary_tensor_sizes_are_checked(api):
    head, raw = _binary_v2(IRIS_ROWS)
    headers = {"Content-Type": "application/octet-stream",
               "Inference-Header-Content-Length": str(len(head))}
    for body, message in ((head + raw + b"xx", "not claimed"),
                          (head + raw[:-1], "does not fit")):
        response = infer(api, body, headers=headers)
        assert response.status_code == 400 and message in body_of(response)["error"]
    bad_length = dict(headers, **{"Inference-Header-Content-Length": "999999"})
    response = infer(api, head + raw, headers=bad_length)
    assert response.status_code == 400 and "Inference-Header-Content-Length" in \
        body_of(response)["error"]
    text = struct.pack("<I", 2) + b"ab"
    head2 = json.dumps({"inputs": [{"name": f, "shape": [1], "datatype": "BYTES",
                                    "parameters": {"binary_data_size": len(text)}}
                                   for f in FEATURES]}).encode()
    response = infer(api, head2 + text * 4, headers=dict(
        headers, **{"Inference-Header-Content-Length": str(len(head2))}))
    assert response.status_code == 422 and 'input "sepal_length"[0]' in body_of(response)["error"]


# --- Typed models (the model-families cards) speak the protocols too ----------------


def test_typed_dataframe_model_in_every_protocol(serve, tmp_path):
    from tests.test_model_families import published, records_of
    model, notebook, card, model_dir = published(tmp_path, "tabular_pipeline")
    api = serve(MODEL_DIR=model_dir)
    records = records_of(notebook)
    expected = model_answer(api, records, probabilities=True)
    assert expected["predictions"] == model.predict(notebook).tolist()
    name = card["name"]
    names = [f["name"] for f in card["features"]]
    assert body_of(post(api, "/invocations", {"dataframe_records": records})) == \
        {"predictions": expected["predictions"]}
    columns = {c: [r[c] for r in records] for c in names}
    assert body_of(post(api, "/invocations", {"inputs": columns}))["predictions"] == \
        expected["predictions"]
    assert body_of(post(api, "/v1/models/%s:predict" % name, {"instances": records})) == \
        {"predictions": expected["predictions"]}
    meta = body_of(api.get("/v2/models/" + name))
    datatypes = {i["name"]: i["datatype"] for i in meta["inputs"]}
    assert datatypes == {"color": "BYTES", "city": "BYTES", "age": "FP64", "income": "FP64"}
    tensors = [{"name": c, "shape": [len(records)], "datatype": datatypes[c],
                "data": columns[c]} for c in names]
    answer = body_of(infer(api, {"inputs": tensors}, "/v2/models/%s/infer" % name))
    outputs = {o["name"]: o for o in answer["outputs"]}
    assert outputs["predictions"]["data"] == expected["predictions"]
    assert outputs["probabilities"]["data"] == [p for r in expected["probabilities"] for p in r]
    tensors[0]["data"][2] = "purple"
    refused = infer(api, {"inputs": tensors}, "/v2/models/%s/infer" % name)
    assert refused.status_code == 422
    assert body_of(refused)["error"].startswith('input "color"[2]: expected one of "blue"')
    csv = notebook.to_csv()  # MLflow's CSV: header and index column
    assert body_of(post(api, "/invocations", csv, {"Content-Type": "text/csv"})) == \
        {"predictions": expected["predictions"]}


def test_text_model_in_every_protocol(serve, tmp_path):
    from tests.test_model_families import published
    model, texts, card, model_dir = published(tmp_path, "text_pipeline")
    api = serve(MODEL_DIR=model_dir)
    expected = model.predict(texts).tolist()
    assert model_answer(api, texts)["predictions"] == expected
    name = card["name"]
    assert body_of(post(api, "/invocations", {"inputs": texts}))["predictions"] == expected
    assert body_of(post(api, "/v1/models/%s:predict" % name, {"instances": texts})) == \
        {"predictions": expected}
    for tensor in ({"name": "text", "shape": [len(texts)], "datatype": "BYTES", "data": texts},
                   {"name": "rows", "shape": [len(texts), 1], "datatype": "BYTES",
                    "data": texts}):
        answer = body_of(infer(api, {"inputs": [tensor]}, "/v2/models/%s/infer" % name))
        assert answer["outputs"][0]["data"] == expected


def test_multilabel_model_outputs_are_tensors(serve, tmp_path):
    from tests.test_model_families import published
    model, X, card, model_dir = published(tmp_path, "multilabel_forest")
    api = serve(MODEL_DIR=model_dir)
    expected = model_answer(api, X.tolist(), probabilities=True)
    name = card["name"]
    meta = body_of(api.get("/v2/models/" + name))
    assert meta["outputs"] == [
        {"name": "predictions", "datatype": "INT64", "shape": [-1, 3]},
        {"name": "probabilities", "datatype": "FP64", "shape": [-1, 3, 2]}]
    answer = body_of(infer(api, {"inputs": [{"name": "rows", "shape": list(X.shape),
                                             "datatype": "FP64", "data": X.tolist()}]},
                           "/v2/models/%s/infer" % name))
    outputs = {o["name"]: o for o in answer["outputs"]}
    assert outputs["predictions"]["shape"] == [len(X), 3]
    assert np.reshape(outputs["predictions"]["data"], (len(X), 3)).tolist() == \
        expected["predictions"]
    assert np.allclose(np.reshape(outputs["probabilities"]["data"], (len(X), 3, 2)),
                       expected["probabilities"], rtol=0, atol=0)
    response = post(api, "/invocations", npy(X), {"Content-Type": "application/x-npy",
                                                  "Accept": "text/csv"})
    assert [list(map(int, line.split(","))) for line in response.body.decode().splitlines()] \
        == expected["predictions"]
