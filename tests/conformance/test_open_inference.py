"""The Open Inference Protocol (KServe V2) over REST, its required API
checked as the specification states it.

Source: kserve/kserve ``docs/predict-api/v2/required_api.md`` (commit
aaac4e294dae2c7b1aa1886447793f3aa1c30912; the "Open Inference Protocol"
specification, also published as ``open_inference_rest.yaml``), section by
section. The specification's examples use a model of two inputs
(``input0`` UINT32 [2, 2], ``input1`` BOOL [3]); here requests are shaped
for the served model: one FP64 tensor of rows [n, 4], or one tensor per
feature named as in the model's metadata.
"""
import json

import numpy as np
import pytest

from tests.conformance.conftest import FEATURES, IRIS_ROWS, NAME, VERSION, body_of

V2 = "/v2/models/%s" % NAME


def rows_tensor(rows=IRIS_ROWS, name="input0", datatype="FP64", data=None):
    return {"name": name, "shape": [len(rows), len(rows[0])], "datatype": datatype,
            "data": rows if data is None else data}


def test_health(peer):
    """§Health, Server Live / Server Ready / Model Ready: 200 means true;
    the JSON bodies of the REST schema (``live``, ``ready``). Unchanged."""
    assert body_of(peer.get("/v2/health/live")) == {"live": True}
    assert body_of(peer.get("/v2/health/ready")) == {"ready": True}
    for path in (V2 + "/ready", V2 + "/versions/%s/ready" % VERSION):
        response = peer.get(path)
        assert response.status_code == 200 and body_of(response)["ready"] is True


def test_model_ready_of_an_unknown_model_is_4xx(peer):
    """§Health: "a 4xx status code indicates false". Adapted: an unknown
    name and an unknown version of the served model."""
    for path in ("/v2/models/nope/ready", V2 + "/versions/9.9.9/ready"):
        response = peer.get(path)
        assert 400 <= response.status_code < 500 and set(body_of(response)) == {"error"}


def test_server_metadata(peer):
    """§Server Metadata Response JSON Object: ``name``, ``version``,
    ``extensions`` (an array of strings). Unchanged."""
    metadata = body_of(peer.get("/v2"))
    assert isinstance(metadata["name"], str) and isinstance(metadata["version"], str)
    assert all(isinstance(e, str) for e in metadata["extensions"])


def test_model_metadata(peer):
    """§Model Metadata Response JSON Object: ``name``, ``versions``,
    ``platform``, ``inputs`` and ``outputs`` as ``$metadata_tensor``
    (``name``, ``datatype``, ``shape``). Adapted: the card's features."""
    for path in (V2, V2 + "/versions/" + VERSION):
        metadata = body_of(peer.get(path))
        assert metadata["name"] == NAME and VERSION in metadata["versions"]
        assert isinstance(metadata["platform"], str)
        assert [t["name"] for t in metadata["inputs"]] == FEATURES
        for tensor in metadata["inputs"] + metadata["outputs"]:
            assert set(tensor) >= {"name", "datatype", "shape"}


def test_model_metadata_error_object(peer):
    """§Model Metadata Response JSON Error Object: an HTTP error status and
    ``{"error": $string}``. Adapted: an unknown model (404)."""
    response = peer.get("/v2/models/nope")
    assert response.status_code == 404 and isinstance(body_of(response)["error"], str)


def test_inference_request_example(peer):
    """§Inference Request Examples: ``id`` is echoed, the requested output
    is answered with ``name``, ``shape``, ``datatype``, ``data``. Adapted:
    one FP64 tensor of the iris rows, ``predictions`` requested."""
    body = {"id": "42", "inputs": [rows_tensor()], "outputs": [{"name": "predictions"}]}
    answer = body_of(peer.post(V2 + "/infer", body))
    assert answer["id"] == "42" and answer["model_name"] == NAME
    [output] = answer["outputs"]
    assert output == {"name": "predictions", "shape": [len(IRIS_ROWS)], "datatype": "BYTES",
                      "data": peer.reference()["predictions"]}


def test_inference_on_a_version(peer):
    """§HTTP/REST: ``POST v2/models/${MODEL_NAME}[/versions/${MODEL_VERSION}]/infer``.
    Unchanged."""
    response = peer.post(V2 + "/versions/%s/infer" % VERSION, {"inputs": [rows_tensor()]})
    assert response.status_code == 200 and body_of(response)["model_version"] == VERSION


def test_tensor_data_flat_or_nested(peer):
    """§Tensor Data: row-major, "in their natural multi-dimensional
    representation, or as a flattened one-dimensional representation";
    both give the same answer. Unchanged."""
    flat = [v for row in IRIS_ROWS for v in row]
    answers = [body_of(peer.post(V2 + "/infer", {"inputs": [rows_tensor(data=data)]}))["outputs"]
               for data in (IRIS_ROWS, flat)]
    assert answers[0] == answers[1]


def test_one_tensor_per_input(peer):
    """§Request Input: one ``$request_input`` per model input, named as the
    metadata names them. Adapted: the four feature tensors, shape [n]."""
    inputs = [{"name": name, "shape": [len(IRIS_ROWS)], "datatype": "FP64",
               "data": [row[i] for row in IRIS_ROWS]} for i, name in enumerate(FEATURES)]
    outputs = body_of(peer.post(V2 + "/infer", {"inputs": inputs}))["outputs"]
    assert outputs[0]["data"] == peer.reference()["predictions"]


def test_parameters_are_accepted(peer):
    """§Parameters: ``$parameters`` on the request and its inputs, "a server
    can implement server-specific parameters"; unknown ones do not fail
    the request. Unchanged."""
    tensor = dict(rows_tensor(), parameters={"x": "y", "n": 1, "b": True})
    response = peer.post(V2 + "/infer", {"inputs": [tensor], "parameters": {"priority": 1}})
    assert response.status_code == 200


@pytest.mark.parametrize("body", [
    {"inputs": [rows_tensor(datatype="NOPE")]},
    {"inputs": [dict(rows_tensor(), shape=[2, 4])]},
    {"inputs": []},
    {"outputs": [{"name": "predictions"}]},
    {"inputs": [rows_tensor()], "outputs": [{"name": "no-such-output"}]},
])
def test_inference_error_object(peer, body):
    """§Inference Response JSON Error Object: "A failed inference request
    must be indicated by an HTTP error status" and ``{"error": ...}``.
    Adapted: an unknown datatype, a shape that does not hold the data, no
    inputs, no ``inputs`` key, an unknown output."""
    response = peer.post(V2 + "/infer", body)
    assert 400 <= response.status_code < 500
    assert set(body_of(response)) == {"error"}


def test_tensor_datatypes(peer):
    """§Tensor Data Types: integer and floating-point tensors; "the server
    can decide to coerce each element to the required type". Adapted:
    INT32 and FP32 rows coerced to the model's float64."""
    rows = [[5, 3, 1, 0], [6, 3, 5, 2]]
    expected = peer.reference(rows)["predictions"]
    for datatype in ("INT32", "INT64", "FP32", "FP64"):
        answer = body_of(peer.post(V2 + "/infer", {"inputs": [rows_tensor(rows, datatype=datatype)]}))
        assert answer["outputs"][0]["data"] == expected, datatype


def test_probabilities_output_is_row_major(peer):
    """§Response Output: ``shape`` and row-major ``data``. Adapted: the
    ``probabilities`` output [n, 3]."""
    body = {"inputs": [rows_tensor()], "outputs": [{"name": "probabilities"}]}
    [output] = body_of(peer.post(V2 + "/infer", body))["outputs"]
    assert output["shape"] == [len(IRIS_ROWS), 3] and output["datatype"] == "FP64"
    assert np.reshape(output["data"], output["shape"]).tolist() == peer.reference()["probabilities"]


def test_malformed_json_is_an_error_object(peer):
    """§Inference Response JSON Error Object, for a body that is not JSON."""
    response = peer.post(V2 + "/infer", "{not json")
    assert response.status_code == 400 and set(json.loads(response.body)) == {"error"}
