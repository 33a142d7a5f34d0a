"""ONNX graphs under a policy (chalicelib/runtimes/graph_policy.py) at load
and at publish, and a deadline on every run of a graph."""
import hashlib
import json
import os
import time

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from chalicelib.http.errors import DeadlineExceeded, ModelLoadError
from chalicelib.runtimes import graph_policy, onnx_runtime
from tests.conftest import BUNDLED_MODEL, IRIS_ROWS, body_of

OPSET = [helper.make_opsetid("", 17)]


def _model(nodes, initializers=(), inputs=None, outputs=None, **kw):
    inputs = inputs or [helper.make_tensor_value_info("X", TensorProto.DOUBLE, [None, 4])]
    outputs = outputs or [helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
                          helper.make_tensor_value_info("probabilities", TensorProto.DOUBLE,
                                                        [None, 3])]
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    return helper.make_model(graph, opset_imports=OPSET, **kw)


def loop_2_to_the_62():
    """A valid graph of standard operators whose Loop runs 2**62 times."""
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Add", ["acc_in", "one"], ["acc_out"])],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_in", TensorProto.DOUBLE, [None, 4])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_out", TensorProto.DOUBLE, [None, 4])],
        [numpy_helper.from_array(np.ones((1, 4)), "one")])
    nodes = [helper.make_node("Loop", ["trips", "cond", "X"], ["looped"], body=body),
             helper.make_node("ArgMax", ["looped"], ["label2d"], axis=1, keepdims=0),
             helper.make_node("Identity", ["label2d"], ["label"]),
             helper.make_node("Softmax", ["looped"], ["probabilities"], axis=1)]
    init = [numpy_helper.from_array(np.array(2 ** 62, dtype=np.int64), "trips"),
            numpy_helper.from_array(np.array(True), "cond")]
    return _model(nodes, init)


def _install(model_dir, graph_bytes):
    (model_dir / "model.onnx").write_bytes(graph_bytes)
    card = json.loads((model_dir / "model.json").read_text())
    card["onnx"]["sha256"] = hashlib.sha256(graph_bytes).hexdigest()
    (model_dir / "model.json").write_text(json.dumps(card))


def test_the_loop_with_2_to_the_62_trips_is_refused_at_load(model_copy, serve):
    graph = loop_2_to_the_62()
    onnx.checker.check_model(graph)  # a valid graph, not a malformed one
    _install(model_copy, graph.SerializeToString())
    api = serve(MODEL_DIR=model_copy)
    started = time.perf_counter()
    for response in (api.get("/health"), api.post({"instances": IRIS_ROWS})):
        assert response.status_code == 503
        assert "Loop holds a subgraph (control flow)" in body_of(response)["Message"]
    assert time.perf_counter() - started < 5


@pytest.mark.parametrize("name, build, says", [
    ("Scan", lambda: _model([helper.make_node(
        "Scan", ["X"], ["Y"], num_scan_inputs=1, body=helper.make_graph(
            [helper.make_node("Identity", ["x"], ["y"])], "b",
            [helper.make_tensor_value_info("x", TensorProto.DOUBLE, [4])],
            [helper.make_tensor_value_info("y", TensorProto.DOUBLE, [4])]))]), "subgraph"),
    ("If", lambda: _model([helper.make_node(
        "If", ["c"], ["Y"], then_branch=helper.make_graph([], "t", [], []),
        else_branch=helper.make_graph([], "e", [], []))]), "subgraph"),
    ("ConstantOfShape from the request's values", lambda: _model([
        helper.make_node("Cast", ["X"], ["s"], to=TensorProto.INT64),
        helper.make_node("ReduceMax", ["s"], ["m"]),
        helper.make_node("ConstantOfShape", ["m"], ["big"])]), "not from tensors' shapes"),
    ("ConstantOfShape of a 2**40 constant", lambda: _model(
        [helper.make_node("ConstantOfShape", ["n"], ["big"])],
        [numpy_helper.from_array(np.array([2 ** 40], dtype=np.int64), "n")]),
     "not a bounded integer"),
    ("Expand", lambda: _model([helper.make_node("Expand", ["X", "n"], ["Y"])],
                              [numpy_helper.from_array(np.array([4], dtype=np.int64), "n")]),
     "operator Expand"),
    ("Tile", lambda: _model([helper.make_node("Tile", ["X", "n"], ["Y"])]), "operator Tile"),
    ("Range", lambda: _model([helper.make_node("Range", ["a", "b", "c"], ["Y"])]),
     "operator Range"),
    ("a custom domain", lambda: _model([helper.make_node("Solve", ["X", "X"], ["Y"],
                                                         domain="com.microsoft")]),
     "com.microsoft.Solve"),
    ("a local function", lambda: _model([], functions=[helper.make_function(
        "local", "f", ["a"], ["b"], [helper.make_node("Identity", ["a"], ["b"])], OPSET)]),
     "local functions"),
    ("external tensor data", lambda: _model([], [_external()]), "external file"),
])
def test_graphs_outside_the_policy_are_refused(name, build, says):
    with pytest.raises(ModelLoadError, match="outside the served graphs' policy") as info:
        graph_policy.check(build().SerializeToString())
    assert says in str(info.value), name


def _external():
    tensor = numpy_helper.from_array(np.ones(4), "w")
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    tensor.external_data.add(key="location", value="/etc/passwd")
    return tensor


@pytest.mark.parametrize("blob", [b"\xff" * 10, b"\x3a\xff\xff\xff\xff\x0f", b"\x0b"])
def test_malformed_bytes_are_refused_not_raised(blob):
    with pytest.raises(ModelLoadError, match="malformed|main graphs"):
        graph_policy.check(blob)


def test_the_bundled_graph_and_a_shape_sized_constant_pass():
    with open(os.path.join(BUNDLED_MODEL, "model.onnx"), "rb") as f:
        graph_policy.check(f.read())
    graph_policy.check(_model([
        helper.make_node("Shape", ["X"], ["shape"]),
        helper.make_node("Gather", ["shape", "zero"], ["rows"]),
        helper.make_node("Concat", ["rows", "three"], ["dims"], axis=0),
        helper.make_node("ConstantOfShape", ["dims"], ["probabilities"])],
        [numpy_helper.from_array(np.array([0], dtype=np.int64), "zero"),
         numpy_helper.from_array(np.array([3], dtype=np.int64), "three")]).SerializeToString())


def test_publish_keeps_no_graph_outside_the_policy():
    from sklearn.neighbors import KNeighborsClassifier
    from publisher import onnx_export
    import skl2onnx
    from skl2onnx.common.data_types import DoubleTensorType
    X = np.random.RandomState(0).normal(size=(30, 4))
    knn = KNeighborsClassifier(3).fit(X, [0, 1, 2] * 10)
    graph = skl2onnx.to_onnx(knn, initial_types=[("X", DoubleTensorType([None, 4]))],
                             options={id(knn): {"zipmap": False}},
                             target_opset=onnx_export.TARGET_OPSET)
    with pytest.raises(ModelLoadError, match="Scan holds a subgraph"):
        graph_policy.check(graph.SerializeToString())


def slow_graph(depth=400, width=1500):
    """Allowed operators only, slow: ``depth`` products by a width x width matrix."""
    nodes = [helper.make_node("MatMul", ["X", "w_in"], ["h0"])]
    for i in range(depth):
        nodes.append(helper.make_node("MatMul", ["h%d" % i, "w"], ["h%d" % (i + 1)]))
    nodes += [helper.make_node("Softmax", ["h%d" % depth], ["wide"], axis=1),
              helper.make_node("Slice", ["wide", "s0", "s3", "s1"], ["probabilities"]),
              helper.make_node("ArgMax", ["probabilities"], ["label"], axis=1, keepdims=0)]
    rng = np.random.RandomState(0)
    init = [numpy_helper.from_array(rng.normal(size=(4, width)) * 1e-3, "w_in"),
            numpy_helper.from_array(np.eye(width), "w"),
            numpy_helper.from_array(np.array([0], dtype=np.int64), "s0"),
            numpy_helper.from_array(np.array([3], dtype=np.int64), "s3"),
            numpy_helper.from_array(np.array([1], dtype=np.int64), "s1")]
    return _model(nodes, init)


def test_a_run_past_its_deadline_is_stopped():
    import onnxruntime
    data = slow_graph().SerializeToString()
    graph_policy.check(data)
    session = onnxruntime.InferenceSession(data, sess_options=onnx_runtime.session_options(),
                                           providers=["CPUExecutionProvider"])
    X = np.ones((64, 4))
    started = time.perf_counter()
    with pytest.raises(DeadlineExceeded, match="deadline of 0.2 s"):
        onnx_runtime.run_with_deadline(session, ["label"], {"X": X}, 0.2)
    assert time.perf_counter() - started < 3


@pytest.mark.parametrize("path, shape_key", [("/model", "Message"), ("/invocations", "message"),
                                             ("/v2/models/iris-classifier/infer", "error")])
def test_every_protocol_answers_504_past_the_deadline(model_copy, serve, monkeypatch, path,
                                                      shape_key):
    _install(model_copy, slow_graph().SerializeToString())
    monkeypatch.setenv("PREDICT_DEADLINE_S", "0.2")
    api = serve(MODEL_DIR=model_copy)
    rows = IRIS_ROWS * 20
    body = {"inputs": [{"name": "X", "shape": [len(rows), 4], "datatype": "FP64",
                        "data": rows}]} if path.startswith("/v2") else {"instances": rows}
    response = api.client.http.post(path, headers={"Content-Type": "application/json"},
                                    body=json.dumps(body))
    assert response.status_code == 504, response.body
    assert "deadline of 0.2 s" in body_of(response)[shape_key]
