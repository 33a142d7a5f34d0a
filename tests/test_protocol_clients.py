"""The peers' own client libraries, unchanged, against a real ``chalice
local`` serving the bundled model: MLflow's ``ScoringServerClient``, KServe's
``InferenceRESTClient`` (V1 and V2), Triton's ``tritonclient.http`` and
SageMaker-style CSV / JSON / NPY requests over plain HTTP with the content
types of SageMaker's contract. Every prediction is compared with what
``POST /model`` answers for the same rows on the same server in the same run.

The same clients are pointed once more at the server through a stand-in for
API Gateway's stage path (``/prod``, stripped by a loopback proxy): the
clients that take a base URL keep its path.
"""
import asyncio
import io
import json
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

import numpy as np
import pytest

from chalicelib.protocols.identity import SERVER_VERSION
from tests.conftest import FEATURES, IRIS_ROWS

NAME, VERSION = "iris-classifier", "1.0.0"
ROWS = IRIS_ROWS + [[5.9, 3.0, 5.1, 1.8], [4.9, 3.1, 1.5, 0.1]]


def http(url, body=None, content_type=None, accept=None, method=None):
    """(status, headers, body bytes) of one plain HTTP request."""
    data = body.encode() if isinstance(body, str) else body
    request = urllib.request.Request(url, data=data, method=method or ("POST" if data else "GET"))
    if content_type:
        request.add_header("Content-Type", content_type)
    if accept:
        request.add_header("Accept", accept)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


@pytest.fixture(scope="module")
def reference(local_url):
    """What POST /model answers for ROWS, from the same server."""
    status, _, body = http(local_url + "/model", json.dumps({"instances": ROWS,
                                                              "probabilities": True}),
                           "application/json")
    assert status == 200
    return json.loads(body)


class _StageProxy(BaseHTTPRequestHandler):
    """API Gateway's stage path, and nothing else of it: ``/prod/x`` is
    forwarded to the server as ``/x``; any other path is API Gateway's 403."""

    target = None
    seen = None  # (method, path, Content-Type) of each request

    def _forward(self):
        self.seen.append((self.command, self.path, self.headers.get("Content-Type")))
        if not (self.path == "/prod" or self.path.startswith(("/prod/", "/prod?"))):
            self._send(403, {"Content-Type": "application/json"},
                       b'{"message":"Missing Authentication Token"}')
            return
        path = self.path[len("/prod"):] or "/"
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        request = urllib.request.Request(self.target + path, data=body, method=self.command)
        for key, value in self.headers.items():
            if key.lower() not in ("host", "content-length", "connection"):
                request.add_header(key, value)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                self._send(response.status, response.headers, response.read())
        except urllib.error.HTTPError as error:
            self._send(error.code, error.headers, error.read())

    def _send(self, status, headers, body):
        self.send_response(status)
        for key, value in headers.items():
            if key.lower() not in ("content-length", "connection", "transfer-encoding",
                                   "server", "date"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _forward

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def prod_url(local_url):
    """``http://127.0.0.1:PORT/prod``: the server behind a stage path."""
    handler = type("Proxy", (_StageProxy,), {"target": local_url, "seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = "http://127.0.0.1:%d/prod" % server.server_address[1]
    url_seen = type("URL", (str,), {})(url)
    url_seen.seen = handler.seen
    yield url_seen
    server.shutdown()
    server.server_close()


# --- MLflow ------------------------------------------------------------------


def _mlflow_client(base_url):
    from mlflow.pyfunc.scoring_server.client import ScoringServerClient
    parsed = urlparse(base_url)
    # The client builds "http://{host}:{port}" and nothing else; a stage
    # path can only ride along in the port string.
    return ScoringServerClient(parsed.hostname, str(parsed.port) + parsed.path)


def test_mlflow_scoring_server_client(local_url, reference):
    import pandas as pd
    client = _mlflow_client(local_url)
    client.ping()
    client.wait_server_ready(timeout=10)
    assert client.get_version() == SERVER_VERSION  # the server's, as MLflow's server answers
    frame = pd.DataFrame(ROWS, columns=FEATURES)
    expected = reference["predictions"]
    # A DataFrame goes as dataframe_split (with its index), an array as
    # "inputs". (Its dict of columns fails inside the client itself, in
    # mlflow 3.17.2's dump_input_data; the columnar "inputs" is sent by hand.)
    assert client.invoke(frame).get_predictions(predictions_format="ndarray").tolist() == expected
    assert client.invoke(np.array(ROWS))["predictions"] == expected
    columns = {name: [row[i] for row in ROWS] for i, name in enumerate(FEATURES)}
    status, _, body = http(local_url + "/invocations", json.dumps({"inputs": columns}),
                           "application/json")
    assert (status, json.loads(body)) == (200, {"predictions": expected})
    reordered = frame[list(reversed(FEATURES))]
    assert client.invoke(reordered)["predictions"] == expected
    answer = client.invoke(frame, params={"probabilities": True, "ignored": 1})
    assert answer["classes"] == reference["classes"]
    np.testing.assert_array_equal(answer["probabilities"], reference["probabilities"])


def test_mlflow_errors_are_mlflow_shaped(local_url):
    client = _mlflow_client(local_url)
    # MLflow answers INVALID_PARAMETER_VALUE with 400 on its route.
    with pytest.raises(Exception, match=r"error code 400.*INVALID_PARAMETER_VALUE"):
        client.invoke(np.array([[1.0, 2.0, 3.0]]))
    status, _, body = http(local_url + "/invocations", json.dumps({"inputs": [[1, "x", 3, 4]]}),
                           "application/json")
    assert status == 400 and json.loads(body) == {
        "error_code": "INVALID_PARAMETER_VALUE",
        "message": 'inputs[0][1] (sepal_width): expected a number, got "x"'}
    status, _, body = http(local_url + "/invocations", json.dumps({"inputs": ROWS, "params": 3}),
                           "application/json")
    assert status == 400 and json.loads(body)["error_code"] == "BAD_REQUEST"


def test_mlflow_csv_as_pandas_writes_it(local_url, reference):
    import pandas as pd
    frame = pd.DataFrame(ROWS, columns=FEATURES)
    for text in (frame.to_csv(), frame.to_csv(index=False),
                 frame[list(reversed(FEATURES))].to_csv()):
        status, _, body = http(local_url + "/invocations", text, "text/csv")
        assert status == 200, body
        assert json.loads(body) == {"predictions": reference["predictions"]}


# --- KServe ------------------------------------------------------------------


def _kserve(protocol):
    from kserve import InferenceRESTClient, RESTConfig
    return InferenceRESTClient(RESTConfig(protocol=protocol, timeout=30, retries=0))


def test_kserve_v1_client(local_url, reference):
    import httpx

    async def calls():
        client = _kserve("v1")
        try:
            ready = await client.is_model_ready(local_url, NAME)
            answer = await client.infer(local_url, {"instances": ROWS}, model_name=NAME)
            as_inputs = await client.infer(local_url, {"inputs": ROWS}, model_name=NAME)
            with pytest.raises(httpx.HTTPStatusError) as missing:
                await client.infer(local_url, {"instances": ROWS}, model_name="other")
            return ready, answer, as_inputs, missing.value.response
        finally:
            await client.close()

    ready, answer, as_inputs, missing = asyncio.run(calls())
    assert ready is True
    assert answer == as_inputs == {"predictions": reference["predictions"]}
    assert missing.status_code == 404 and set(missing.json()) == {"error"}


def _kserve_v2_request(binary):
    from kserve import InferInput, InferRequest
    tensor = InferInput("input-0", [len(ROWS), len(FEATURES)], "FP64")
    tensor.set_data_from_numpy(np.array(ROWS, dtype=np.float64), binary_data=binary)
    return InferRequest(model_name=NAME, infer_inputs=[tensor], request_id="req-7")


def test_kserve_v2_client(local_url, reference):
    async def calls():
        client = _kserve("v2")
        try:
            return (await client.is_server_live(local_url),
                    await client.is_server_ready(local_url),
                    await client.is_model_ready(local_url, NAME),
                    await client.infer(local_url, _kserve_v2_request(False), model_name=NAME),
                    await client.infer(local_url, _kserve_v2_request(True), model_name=NAME))
        finally:
            await client.close()

    live, ready, model_ready, as_json, as_binary = asyncio.run(calls())
    assert live is True and ready is True and model_ready is True
    for response in (as_json, as_binary):
        assert response.id == "req-7"
        outputs = {o.name: o for o in response.outputs}
        assert outputs["predictions"].datatype == "BYTES"
        assert [str(v) for v in outputs["predictions"].data] == reference["predictions"]
        np.testing.assert_array_equal(outputs["probabilities"].as_numpy(),
                                      np.array(reference["probabilities"]))


# --- Triton ------------------------------------------------------------------


def _triton(base_url):
    import tritonclient.http as triton
    return triton.InferenceServerClient(url=base_url.split("://", 1)[1], network_timeout=30)


def _triton_rows(binary):
    import tritonclient.http as triton
    tensor = triton.InferInput("input__0", [len(ROWS), len(FEATURES)], "FP32")
    tensor.set_data_from_numpy(np.array(ROWS, dtype=np.float32), binary_data=binary)
    return [tensor]


def _triton_columns():
    import tritonclient.http as triton
    inputs = []
    for i, name in enumerate(FEATURES):
        tensor = triton.InferInput(name, [len(ROWS)], "FP64")
        tensor.set_data_from_numpy(np.array([row[i] for row in ROWS]), binary_data=False)
        inputs.append(tensor)
    return inputs


def test_triton_client(local_url, reference):
    import tritonclient.http as triton
    from tritonclient.utils import InferenceServerException
    client = _triton(local_url)
    try:
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready(NAME) and client.is_model_ready(NAME, VERSION)
        assert not client.is_model_ready("other")
        assert client.get_server_metadata()["name"] == "sklearn-serverless"
        meta = client.get_model_metadata(NAME)
        assert [i["name"] for i in meta["inputs"]] == FEATURES
        assert {o["name"]: o["datatype"] for o in meta["outputs"]} == {
            "predictions": "BYTES", "probabilities": "FP64"}
        # One tensor per feature, FP64 as JSON: the same values as POST /model.
        result = client.infer(NAME, _triton_columns(), request_id="r1")
        assert result.get_response()["id"] == "r1"
        assert result.as_numpy("predictions").astype(str).tolist() == reference["predictions"]
        np.testing.assert_array_equal(result.as_numpy("probabilities"),
                                      np.array(reference["probabilities"]))
        # FP32 rows, as JSON and as binary (the client's default), with the
        # outputs asked for in binary (answered in JSON, which it reads too).
        f32 = np.array(ROWS, dtype=np.float32).astype(np.float64).tolist()
        status, _, body = http(local_url + "/model", json.dumps({"instances": f32,
                                                                  "probabilities": True}),
                               "application/json")
        expected32 = json.loads(body)
        for binary in (False, True):
            result = client.infer(NAME, _triton_rows(binary), model_version=VERSION, outputs=[
                triton.InferRequestedOutput("predictions", binary_data=binary),
                triton.InferRequestedOutput("probabilities", binary_data=binary)])
            labels = result.as_numpy("predictions").astype(str).tolist()
            assert labels == expected32["predictions"] == reference["predictions"]
            np.testing.assert_array_equal(result.as_numpy("probabilities"),
                                          np.array(expected32["probabilities"]))
        with pytest.raises(InferenceServerException, match="not found"):
            client.infer("other", _triton_columns())
        bad = triton.InferInput("sepal_length", [1], "BYTES")
        bad.set_data_from_numpy(np.array(["x"], dtype=object), binary_data=False)
        with pytest.raises(InferenceServerException, match="input"):
            client.infer(NAME, [bad])
    finally:
        client.close()


# --- SageMaker ---------------------------------------------------------------


def test_sagemaker_csv_in_csv_out(local_url, reference):
    text = "".join(",".join(str(v) for v in row) + "\n" for row in ROWS)
    status, headers, body = http(local_url + "/invocations", text, "text/csv", "text/csv")
    assert status == 200 and headers["Content-Type"] == "text/csv"
    assert body.decode().splitlines() == reference["predictions"]
    status, _, body = http(local_url + "/ping")
    assert status == 200


def test_sagemaker_npy_in_npy_and_json_out(local_url, reference):
    buffer = io.BytesIO()
    np.save(buffer, np.array(ROWS))
    status, headers, body = http(local_url + "/invocations", buffer.getvalue(),
                                 "application/x-npy", "application/x-npy")
    assert status == 200 and headers["Content-Type"] == "application/x-npy"
    assert np.load(io.BytesIO(body), allow_pickle=False).tolist() == reference["predictions"]
    status, _, body = http(local_url + "/invocations", buffer.getvalue(), "application/x-npy",
                           "application/json")
    # The SageMaker scikit-learn container answers an array request with a bare array.
    assert status == 200 and json.loads(body) == reference["predictions"]


def test_sagemaker_json_rows_and_refusals(local_url, reference):
    status, _, body = http(local_url + "/invocations", json.dumps(ROWS), "application/json",
                           "application/json")
    assert status == 200 and json.loads(body) == reference["predictions"]
    status, _, body = http(local_url + "/invocations", json.dumps(ROWS[0]), "application/json",
                           "text/csv")
    assert status == 200 and body.decode() == reference["predictions"][0] + "\n"
    status, _, body = http(local_url + "/invocations", json.dumps(ROWS), "application/json",
                           "image/png")
    assert status == 406 and set(json.loads(body)) == {"error_code", "message"}
    status, _, body = http(local_url + "/invocations", "x", "text/plain")
    assert status == 415 and set(json.loads(body)) == {"error_code", "message"}
    pickled = io.BytesIO()
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    status, _, body = http(local_url + "/invocations", pickled.getvalue(), "application/x-npy")
    assert status == 400 and "expected a plain .npy array of rows" in json.loads(body)["message"]


# --- Behind the stage path ---------------------------------------------------


def test_clients_keep_the_stage_path(prod_url, reference):
    """The clients that take a base URL work behind ``/prod``; the bare
    address answers API Gateway's 403, so a path lost on the way shows."""
    expected = reference["predictions"]
    assert http(prod_url.rsplit("/prod", 1)[0] + "/ping")[0] == 403
    assert http(prod_url + "/ping")[0] == 200

    async def kserve_calls():
        v1, v2 = _kserve("v1"), _kserve("v2")
        try:
            return (await v1.infer(prod_url, {"instances": ROWS}, model_name=NAME),
                    await v2.is_server_ready(prod_url),
                    await v2.infer(prod_url, _kserve_v2_request(False), model_name=NAME))
        finally:
            await v1.close()
            await v2.close()

    v1_answer, v2_ready, v2_answer = asyncio.run(kserve_calls())
    assert v1_answer == {"predictions": expected} and v2_ready is True
    assert [str(v) for v in v2_answer.outputs[0].data] == expected

    triton = _triton(prod_url)
    try:
        assert triton.is_server_ready() and triton.is_model_ready(NAME)
        result = triton.infer(NAME, _triton_columns())
        assert result.as_numpy("predictions").astype(str).tolist() == expected
        # Binary tensors: tritonclient sends no Content-Type of its own (API
        # Gateway would then pass the bytes as text); with the header the
        # docs/protocols.md says to add, the body is a binary media type.
        del prod_url.seen[:]
        for headers in (None, {"Content-Type": "application/octet-stream"}):
            result = triton.infer(NAME, _triton_rows(True), headers=headers)
            labels = result.as_numpy("predictions").astype(str).tolist()
            assert labels == expected
        assert [s[2] for s in prod_url.seen] == [None, "application/octet-stream"]
    finally:
        triton.close()

    mlflow = _mlflow_client(prod_url)
    mlflow.ping()
    assert mlflow.invoke(np.array(ROWS))["predictions"] == expected
