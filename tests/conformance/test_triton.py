"""Triton's HTTP endpoint and its protocol extensions, ported from Triton's
own QA tests and extension documents.

Source: triton-inference-server/server (the snapshot fetched for this work)
``qa/L0_http/http_test.py`` (class ``HttpTest``) and ``docs/protocol/``
``extension_binary_data.md``, ``extension_classification.md``,
``extension_model_configuration.md``, ``extension_statistics.md``,
``extension_model_repository.md``. Triton's QA models
(``onnx_zero_1_float32``, ``simple_identity``) take one FP32 or BYTES
input; here requests are the served iris model's: an FP64 tensor of rows
[n, 4]. Triton answers some refusals with 500 (a negative dimension); this
app answers every client error with a 4xx.
"""
import json

import numpy as np
import pytest

from tests.conformance.conftest import CLASSES, IRIS_ROWS, NAME, VERSION, body_of, out_of_scope

V2 = "/v2/models/%s" % NAME


def rows_tensor(data=None, shape=None):
    return {"name": "INPUT0", "datatype": "FP64", "shape": shape or [len(IRIS_ROWS), 4],
            "data": IRIS_ROWS if data is None else data}


def nested(depth, value):
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("depth, ok", [(120, False), (50, True)])
def test_json_recursion_depth_limit(peer, depth, ok):
    """HttpTest.test_json_recursion_depth_limit: tensor data nested 120
    levels is refused ("JSON nesting depth exceeds maximum allowed limit
    (100)"), 50 levels are read. Adapted: one iris row of FP64, shape
    [1, 4], nested under the extra levels."""
    body = {"inputs": [rows_tensor(nested(depth, IRIS_ROWS[0]), [1, 4])]}
    response = peer.post(V2 + "/infer", body)
    if ok:
        assert response.status_code == 200, response.body
    else:
        assert response.status_code == 400
        assert "JSON nesting depth exceeds maximum allowed limit (100)" in body_of(response)["error"]
    assert peer.get("/v2/health/live").status_code == 200


def test_duplicate_output_names(peer):
    """HttpTest.test_duplicate_output_names: 400, "output 'OUTPUT0' already
    exists in request", and the server stays live. Adapted: ``predictions``
    twice."""
    body = {"inputs": [rows_tensor()], "outputs": [{"name": "predictions"}] * 2}
    response = peer.post(V2 + "/infer", body)
    assert response.status_code == 400
    assert "output 'predictions' already exists in request" in body_of(response)["error"]
    assert peer.get("/v2/health/live").status_code == 200


def test_repository_index_deeply_nested_json(peer):
    """HttpTest.test_repository_index_deeply_nested_json: ``{"ready": [[[...true]]]}``
    250,000 levels deep is a 400 and the server stays live. Adapted: the
    message is the app's JSON guard ("nested too deeply") rather than
    Triton's type check of ``ready``, which it never reaches."""
    depth = 250_000
    body = '{"ready":' + "[" * depth + "true" + "]" * depth + "}"
    response = peer.post("/v2/repository/index", body)
    assert response.status_code == 400 and "error" in body_of(response)
    assert peer.get("/v2/health/live").status_code == 200


def test_repository_index_ready_must_be_a_boolean(peer):
    """HttpTest.test_repository_index_deeply_nested_json, its expectation
    "Invalid value for 'ready': expected a boolean", for a shallow value."""
    response = peer.post("/v2/repository/index", {"ready": [True]})
    assert response.status_code == 400
    assert "Invalid value for 'ready': expected a boolean" in body_of(response)["error"]


def test_repository_index(peer):
    """extension_model_repository.md, Index: ``POST v2/repository/index``
    answers ``[{"name", "version", "state"}]``. Adapted: the served model."""
    for body in ("", {}, {"ready": True}):
        response = peer.post("/v2/repository/index", body)
        assert response.status_code == 200
        assert body_of(response) == [{"name": NAME, "version": VERSION, "state": "READY"}]


def test_inference_header_content_length_out_of_range(peer):
    """HttpTest.test_inference_header_content_length_out_of_range: a header
    value past INT_MAX is 400 and the server stays live. Unchanged."""
    response = peer.post(V2 + "/infer", {"inputs": []},
                         headers={"Inference-Header-Content-Length": "99999999999"})
    assert response.status_code == 400
    assert peer.get("/v2/health/live").status_code == 200


def test_negative_dimensions(peer):
    """HttpTest.test_negative_dimensions: shape [2, -5] is refused. Adapted:
    Triton answers 500; this app answers 400 (a client error is never a
    5xx here)."""
    response = peer.post(V2 + "/infer", {"inputs": [rows_tensor([1.0], [2, -5])]})
    assert response.status_code == 400 and "error" in body_of(response)


def test_byte_size_mismatch(peer):
    """HttpTest.test_buffer_size_overflow (its intent: binary data whose
    size does not fit the tensor is refused, the server stays up).
    Adapted: 8 bytes announced for a [1, 4] FP64 tensor."""
    header = json.dumps({"inputs": [{"name": "INPUT0", "datatype": "FP64", "shape": [1, 4],
                                     "parameters": {"binary_data_size": 8}}]}).encode()
    response = peer.post(V2 + "/infer", header + b"\0" * 8, "application/octet-stream",
                         {"Inference-Header-Content-Length": str(len(header))})
    assert response.status_code == 400
    assert peer.get("/v2/health/live").status_code == 200


def test_binary_data_extension_example(peer):
    """extension_binary_data.md, Examples: inputs as binary data and an
    output asked ``binary_data: true`` answered as binary data, the JSON
    length in Inference-Header-Content-Length. Adapted: FP64 rows in, the
    ``probabilities`` output out; ``Accept: application/octet-stream`` is
    what lets a binary body through API Gateway."""
    rows = np.array(IRIS_ROWS, dtype="<f8")
    header = json.dumps({"model_name": NAME, "inputs": [{
        "name": "INPUT0", "shape": list(rows.shape), "datatype": "FP64",
        "parameters": {"binary_data_size": rows.nbytes}}],
        "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}]}).encode()
    response = peer.post(V2 + "/infer", header + rows.tobytes(), "application/octet-stream",
                         {"Inference-Header-Content-Length": str(len(header)),
                          "Accept": "application/octet-stream"})
    assert response.status_code == 200
    size = int(response.headers["Inference-Header-Content-Length"])
    answer = json.loads(response.body[:size])
    [output] = answer["outputs"]
    assert output["parameters"]["binary_data_size"] == len(response.body) - size
    probabilities = np.frombuffer(response.body[size:], "<f8").reshape(output["shape"])
    assert probabilities.tolist() == peer.reference()["probabilities"]


def test_classification_extension(peer):
    """extension_classification.md: an output with ``"classification": k``
    answers BYTES [batch, k] of ``"<value>:<index>[:<label>]"``, highest
    values first. Adapted: ``probabilities`` with the model's class labels;
    values formatted as Triton's ``std::to_string`` writes them."""
    body = {"inputs": [rows_tensor()],
            "outputs": [{"name": "probabilities", "parameters": {"classification": 2}}]}
    [output] = body_of(peer.post(V2 + "/infer", body))["outputs"]
    assert output["datatype"] == "BYTES" and output["shape"] == [len(IRIS_ROWS), 2]
    reference = peer.reference()["probabilities"]
    for i, row in enumerate(reference):
        top = sorted(range(3), key=lambda k: -row[k])[:2]
        assert output["data"][2 * i:2 * i + 2] == ["%f:%d:%s" % (row[k], k, CLASSES[k])
                                                   for k in top]


def test_classification_of_a_label_output_is_refused(peer):
    """extension_classification.md: classification applies to an output of
    values. Adapted: asked of ``predictions`` (labels), a 400."""
    body = {"inputs": [rows_tensor()],
            "outputs": [{"name": "predictions", "parameters": {"classification": 1}}]}
    assert peer.post(V2 + "/infer", body).status_code == 400


def test_model_configuration(peer):
    """extension_model_configuration.md: ``GET v2/models/${MODEL_NAME}/config``
    answers the model's configuration, with ``max_batch_size``, ``input``
    and ``output`` (``name``, ``data_type``, ``dims``). Adapted: from the
    card; ``max_batch_size`` is the app's row limit per request."""
    for path in (V2 + "/config", V2 + "/versions/%s/config" % VERSION):
        config = body_of(peer.get(path))
        assert config["name"] == NAME and config["max_batch_size"] == 10_000
        assert [i["data_type"] for i in config["input"]] == ["TYPE_FP64"] * 4
        assert {o["name"]: o["dims"] for o in config["output"]} == {
            "predictions": [1], "probabilities": [3]}


def test_statistics(peer):
    """extension_statistics.md: ``GET v2/models/${MODEL_NAME}/stats`` answers
    ``model_stats`` with ``inference_count`` (rows), ``execution_count``
    and ``inference_stats.success`` / ``fail``. Adapted: this instance's
    own counts; one request of 3 rows and one refused request move them."""
    before = body_of(peer.get(V2 + "/stats"))["model_stats"][0]
    peer.post(V2 + "/infer", {"inputs": [rows_tensor()]})
    peer.post(V2 + "/infer", {"inputs": [rows_tensor([1.0], [2, 4])]})
    after = body_of(peer.get(V2 + "/stats"))["model_stats"][0]
    assert after["name"] == NAME and after["version"] == VERSION
    assert after["inference_count"] - before["inference_count"] == len(IRIS_ROWS)
    assert after["execution_count"] - before["execution_count"] == 1
    stats, old = after["inference_stats"], before["inference_stats"]
    assert stats["success"]["count"] - old["success"]["count"] == 1
    assert stats["fail"]["count"] - old["fail"]["count"] == 1
    assert stats["success"]["ns"] > old["success"]["ns"]


def test_tritonclient_config_stats_index_and_classification(local_url):
    """The calls of Triton's own ``tritonclient.http`` client (as installed)
    that ``qa/L0_http`` and users make: ``get_model_config`` (read for
    ``max_batch_size``), ``get_inference_statistics``,
    ``get_model_repository_index``, and ``InferRequestedOutput(...,
    class_count=2)``. Adapted: against ``chalice local``."""
    import tritonclient.http as triton
    client = triton.InferenceServerClient(local_url.split("//", 1)[1])
    assert client.get_model_config(NAME)["max_batch_size"] == 10_000
    assert client.get_inference_statistics(NAME)["model_stats"][0]["name"] == NAME
    assert client.get_model_repository_index()[0]["name"] == NAME
    rows = np.array(IRIS_ROWS, dtype=np.float64)
    tensor = triton.InferInput("INPUT0", list(rows.shape), "FP64")
    tensor.set_data_from_numpy(rows)
    # The client asks for binary outputs by default: answered binary when its
    # Accept lets a binary body through API Gateway, else as JSON.
    for headers in (None, {"Accept": "application/octet-stream"}):
        result = client.infer(NAME, [tensor], headers=headers, outputs=[
            triton.InferRequestedOutput("probabilities", class_count=2)])
        top = result.as_numpy("probabilities")
        assert top.shape == (len(IRIS_ROWS), 2)
        labels = [(e.decode() if isinstance(e, bytes) else e).split(":")[2] for e in top[:, 0]]
        assert labels == ["setosa", "versicolor", "virginica"]


@out_of_scope("raw binary requests (Inference-Header-Content-Length: 0): they need a model "
              "of one input whose shape the bytes decide; a request here names its tensors")
def test_raw_binary():
    """HttpTest.test_raw_binary, test_raw_binary_longer."""


@out_of_scope("Content-Encoding (gzip, deflate) of requests: API Gateway's own setting")
def test_content_encoding():
    """HttpTest.test_content_encoding_chunked_manually,
    test_content_encoding_unsupported_client."""


@out_of_scope("queueing models and 503 on a full queue: Lambda scales by instances")
def test_descriptive_status_code():
    """HttpTest.test_descriptive_status_code."""


@out_of_scope("the model repository's load and unload (and their file parameters): a "
              "deployment serves one model")
def test_load_model():
    """HttpTest.test_loading_large_invalid_model, test_load_oversized_file_parameter."""


@out_of_scope("BYTES and multi-input identity models of Triton's QA repository; this app "
              "serves the card's features (BYTES for string features is covered by "
              "tests/test_protocols.py)")
def test_identity_models():
    """HttpTest.test_byte, test_byte_too_many_elements, test_multi_variable_dimensions,
    test_multi_inputs."""


@out_of_scope("gRPC, shared memory, sequence batching, tracing, logging and the generate "
              "extension: Lambda behind API Gateway speaks REST only")
def test_other_extensions():
    """docs/protocol/extension_shared_memory.md, extension_sequence.md,
    extension_trace.md, extension_logging.md, extension_generate.md."""
