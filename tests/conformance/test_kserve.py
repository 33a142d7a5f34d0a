"""KServe's model server (V1 and V2 REST), ported from KServe's own tests.

Source: kserve/kserve ``python/kserve/test/test_server.py`` (commit
aaac4e294dae2c7b1aa1886447793f3aa1c30912), classes ``TestV1Endpoints``,
``TestV2Endpoints`` and ``TestTFHttpServerModelNotReady``. KServe's tests
register toy models (``DummyModel`` echoing its input, FP16 models,
a datetime model); here the one served model is the bundled iris
classifier, so requests carry four feature values per row and outputs are
``predictions`` (BYTES labels) and ``probabilities`` (FP64). Binary answers
need ``Accept: application/octet-stream`` (API Gateway passes binary bodies
only then); KServe's server needs no such header.
"""
import json
import struct

import numpy as np
import pytest

from tests.conformance.conftest import (CLASSES, IRIS_ROWS, NAME, VERSION, body_of,
                                        out_of_scope)
from tools.ops.merge_template import GATEWAY_RESPONSES

HEADER_LENGTH = "Inference-Header-Content-Length"
BINARY = {"Accept": "application/octet-stream"}


def infer_body(rows=IRIS_ROWS, **extra):
    body = {"inputs": [{"name": "input-0", "shape": [len(rows), 4], "datatype": "FP64",
                        "data": rows}]}
    body.update(extra)
    return body


def split_binary(response):
    """(JSON header, binary part) of a binary tensor answer."""
    size = int(response.headers[HEADER_LENGTH])
    return json.loads(response.body[:size]), response.body[size:]


# --- V1 -----------------------------------------------------------------------


def test_liveness_v1(peer):
    """TestV1Endpoints.test_liveness_v1: ``GET /`` is ``{"status": "alive"}``.
    Adapted: ``GET /`` is also the try-it page, served to a browser
    (``Accept: text/html``); KServe's client sends ``*/*``."""
    for headers in ({}, {"Accept": "*/*"}, {"Accept": "application/json"}):
        response = peer.get("/", headers)
        assert response.status_code == 200
        assert body_of(response) == {"status": "alive"}
    page = peer.get("/", {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert page.headers["Content-Type"].startswith("text/html")


def test_model_v1(peer):
    """TestV1Endpoints.test_model_v1: 200 for the served model. Unchanged."""
    response = peer.get("/v1/models/" + NAME)
    assert response.status_code == 200 and body_of(response)["ready"] is True


def test_unknown_model_v1(peer):
    """TestV1Endpoints.test_unknown_model_v1: 404 ``{"error": ...}``.
    Message wording not ported."""
    response = peer.get("/v1/models/InvalidModel")
    assert response.status_code == 404 and set(body_of(response)) == {"error"}


def test_list_models_v1(peer):
    """TestV1Endpoints.test_list_models_v1. Adapted: one served model."""
    assert body_of(peer.get("/v1/models")) == {"models": [NAME]}


def test_predict_v1(peer):
    """TestV1Endpoints.test_predict_v1: ``{"instances": [...]}`` answers
    ``{"predictions": [...]}`` as application/json. Adapted: the iris
    rows; compared with ``POST /model``'s predictions."""
    response = peer.post("/v1/models/%s:predict" % NAME, b'{"instances":%s}'
                         % json.dumps(IRIS_ROWS).encode())
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert body_of(response) == {"predictions": peer.reference()["predictions"]}


def test_unknown_path_v1():
    """TestV1Endpoints.test_unknown_path_v1: an unknown path is 404.
    Adapted: ``chalice local`` has no catch-all route; on API Gateway the
    answer to a path no route has is the gateway response of the merge
    template (deploy/merge-prod.json via tools/ops/merge_template.py): 404 with
    KServe's ``error`` key (FastAPI's ``detail`` is not ported)."""
    response = GATEWAY_RESPONSES["MISSING_AUTHENTICATION_TOKEN"]
    assert response["statusCode"] == 404
    assert "error" in json.loads(response["responseTemplates"]["application/json"])


@out_of_scope("the :explain verb (KServe's explainers); this product serves predictions only")
def test_explain_v1():
    """TestV1Endpoints.test_explain_v1."""


@out_of_scope("Prometheus /metrics: CloudWatch (EMF) is this product's metrics")
def test_metrics_v1():
    """TestV1Endpoints.test_metrics_v1."""


@out_of_scope("datetime outputs: a scikit-learn estimator answers numbers or labels")
def test_datetime_output():
    """TestV1Endpoints.test_datetime_output_v1, TestV2Endpoints.test_datetime_output."""


# --- V2 -----------------------------------------------------------------------


def test_list_models_v2(peer):
    """TestV2Endpoints.test_list_models_v2: ``GET /v2/models``. Adapted: one model."""
    response = peer.get("/v2/models")
    assert response.status_code == 200 and body_of(response) == {"models": [NAME]}


def test_infer_v2(peer):
    """TestV2Endpoints.test_infer_v2: a JSON tensor in, JSON outputs out as
    application/json. Adapted: an FP64 [n, 4] tensor of iris rows instead
    of INT32 [1, 2] to an echo model."""
    response = peer.post("/v2/models/%s/infer" % NAME, infer_body())
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    outputs = {o["name"]: o for o in body_of(response)["outputs"]}
    assert outputs["predictions"]["data"] == peer.reference()["predictions"]


def test_fp16_input_as_binary_data(peer):
    """TestV2Endpoints.test_fp16_input_as_binary_data: an FP16 tensor in the
    binary extension is read. Adapted: the iris rows as FP16 (the answers
    compared with ``POST /model``'s for the same half-precision values)."""
    rows = np.array(IRIS_ROWS, dtype=np.float16)
    header = json.dumps({"id": "123", "inputs": [{
        "name": "fp16_input", "shape": list(rows.shape), "datatype": "FP16",
        "parameters": {"binary_data_size": rows.nbytes}}]}).encode()
    response = peer.post("/v2/models/%s/infer" % NAME, header + rows.tobytes(),
                         "application/octet-stream", {HEADER_LENGTH: str(len(header))})
    assert response.status_code == 200, response.body
    answer = body_of(response)
    assert answer["id"] == "123"
    expected = peer.reference(rows.astype(np.float64).tolist())["predictions"]
    assert answer["outputs"][0]["data"] == expected


def test_fp16_input_not_binary_data(peer):
    """TestV2Endpoints.test_fp16_input_not_binary_data: FP16 as JSON
    numbers is 400. Adapted: four columns."""
    body = infer_body()
    body["inputs"][0]["datatype"] = "FP16"
    response = peer.post("/v2/models/%s/infer" % NAME, body)
    assert response.status_code == 400 and set(body_of(response)) == {"error"}


def test_output_as_binary_data(peer):
    """TestV2Endpoints.test_fp16_output_as_binary_data: an output asked with
    ``binary_data: true`` is binary (``binary_data_size``, the JSON length
    in Inference-Header-Content-Length, the bytes after the JSON) while the
    other, ``binary_data: false``, stays JSON. Adapted: FP64
    ``probabilities`` binary, ``predictions`` JSON (the model has no FP16
    output)."""
    body = infer_body(id="123", outputs=[
        {"name": "probabilities", "parameters": {"binary_data": True}},
        {"name": "predictions", "parameters": {"binary_data": False}}])
    response = peer.post("/v2/models/%s/infer" % NAME, body, headers=BINARY)
    assert response.status_code == 200
    header, raw = split_binary(response)
    probabilities, predictions = header["outputs"]
    reference = peer.reference()
    assert probabilities["parameters"] == {"binary_data_size": 8 * 3 * len(IRIS_ROWS)}
    assert "data" not in probabilities
    assert np.frombuffer(raw, "<f8").reshape(-1, 3).tolist() == reference["probabilities"]
    assert predictions["data"] == reference["predictions"]


def test_output_not_binary_data_when_not_asked(peer):
    """TestV2Endpoints.test_fp16_output_not_binary_data. Adapted: KServe
    refuses an FP16 output asked as JSON (400); this model has no FP16
    output, so the check is the other half: an output not asked as binary
    is JSON, and the answer carries no Inference-Header-Content-Length."""
    body = infer_body(outputs=[{"name": "predictions"},
                               {"name": "probabilities", "parameters": {"binary_data": False}}])
    response = peer.post("/v2/models/%s/infer" % NAME, body, headers=BINARY)
    assert response.status_code == 200
    assert HEADER_LENGTH not in response.headers
    assert [o["name"] for o in body_of(response)["outputs"]] == ["predictions", "probabilities"]


def test_requested_output(peer):
    """TestV2Endpoints.test_requested_output: only the requested output is
    answered. Adapted: ``probabilities`` of the iris rows."""
    body = infer_body(id="123", outputs=[{"name": "probabilities",
                                          "parameters": {"binary_data": False}}])
    answer = body_of(peer.post("/v2/models/%s/infer" % NAME, body))
    assert answer["id"] == "123" and answer["model_name"] == NAME
    [output] = answer["outputs"]
    assert output["name"] == "probabilities" and output["datatype"] == "FP64"
    assert output["shape"] == [len(IRIS_ROWS), 3]
    assert np.reshape(output["data"], (-1, 3)).tolist() == peer.reference()["probabilities"]


def test_all_output_as_binary_data(peer):
    """TestV2Endpoints.test_all_output_as_binary_data: the request's
    ``binary_data_output: true`` makes every output binary, in order.
    Adapted: BYTES labels (4-byte length, UTF-8) then FP64 probabilities."""
    body = infer_body(id="123", parameters={"binary_data_output": True})
    response = peer.post("/v2/models/%s/infer" % NAME, body, headers=BINARY)
    header, raw = split_binary(response)
    sizes = [o["parameters"]["binary_data_size"] for o in header["outputs"]]
    assert sum(sizes) == len(raw)
    labels, pos = [], 0
    while pos < sizes[0]:
        (n,) = struct.unpack_from("<I", raw, pos)
        labels.append(raw[pos + 4:pos + 4 + n].decode())
        pos += 4 + n
    reference = peer.reference()
    assert labels == reference["predictions"]
    assert np.frombuffer(raw[sizes[0]:], "<f8").reshape(-1, 3).tolist() == \
        reference["probabilities"]


def test_binary_data_parameter_precedence(peer):
    """TestV2Endpoints.test_binary_data_parameter_precedence: an output's
    own ``binary_data: false`` overrides the request's
    ``binary_data_output: true``. Adapted: the model's two outputs."""
    body = infer_body(parameters={"binary_data_output": True}, outputs=[
        {"name": "probabilities", "parameters": {"binary_data": True}},
        {"name": "predictions", "parameters": {"binary_data": False}}])
    header, raw = split_binary(peer.post("/v2/models/%s/infer" % NAME, body, headers=BINARY))
    probabilities, predictions = header["outputs"]
    assert probabilities["parameters"]["binary_data_size"] == len(raw)
    assert predictions["data"] == peer.reference()["predictions"]


@out_of_scope("echoing the request's and inputs' parameters into the answer: KServe's "
              "InferResponse does it for its Python models; the protocol does not require it")
def test_infer_parameters_v2():
    """TestV2Endpoints.test_infer_parameters_v2."""


@out_of_scope("the model repository's load and unload: a deployment serves one model, "
              "changed by deploying")
def test_load_and_unload():
    """TestTFHttpServerLoadAndUnLoad.test_load, .test_unload and the
    ...Failure variants."""


@out_of_scope("CloudEvents (structured, binary, Avro) request bodies")
def test_cloud_events():
    """TestTFHttpServerCloudEvent (seven tests), TestTFHttpServerAvroCloudEvent."""


# --- a model that is not ready --------------------------------------------------


@pytest.mark.parametrize("method, path, body", [
    ("get", "/v1/models/%s" % NAME, None),
    ("get", "/v2/models/%s/ready" % NAME, None),
    ("post", "/v1/models/%s:predict" % NAME, {"instances": [[1, 2, 3, 4]]}),
    ("post", "/v2/models/%s/infer" % NAME, infer_body([[1, 2, 3, 4]])),
])
def test_model_not_ready(unavailable, method, path, body):
    """TestTFHttpServerModelNotReady: test_model_not_ready_v1,
    test_model_not_ready_v2, test_predict, test_infer: 503. Adapted: a
    model directory without a card (the model cannot be loaded)."""
    response = (unavailable.get(path) if method == "get"
                else unavailable.post(path, body))
    assert response.status_code == 503 and set(body_of(response)) == {"error"}


def test_client_is_server_live_v1(local_url):
    """python/kserve/kserve/inference_client.py ``InferenceRESTClient.is_server_live``
    (V1: ``GET`` of the base URL, ``response.json()["status"] == "alive"``),
    KServe's own client as installed (kserve in requirements-dev.txt)."""
    import asyncio
    from kserve import InferenceRESTClient, RESTConfig

    async def live():
        client = InferenceRESTClient(config=RESTConfig(protocol="v1"))
        try:
            return await client.is_server_live(local_url)
        finally:
            await client.close()
    assert asyncio.run(live()) is True


def test_metadata_names_the_served_version(peer):
    """TestV2Endpoints' fixtures read ``model_version`` from answers.
    Adapted: the served card's version."""
    answer = body_of(peer.post("/v2/models/%s/infer" % NAME, infer_body()))
    assert answer["model_version"] == VERSION
    assert body_of(peer.get("/v2/models/" + NAME))["outputs"][1]["shape"] == [-1, len(CLASSES)]
