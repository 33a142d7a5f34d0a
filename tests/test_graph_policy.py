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
    ("Scan over the request", lambda: _model([helper.make_node(
        "Scan", ["X"], ["Y"], num_scan_inputs=1, body=helper.make_graph(
            [helper.make_node("Identity", ["x"], ["y"])], "b",
            [helper.make_tensor_value_info("x", TensorProto.DOUBLE, [4])],
            [helper.make_tensor_value_info("y", TensorProto.DOUBLE, [4])]))]),
     "not a constant of the graph"),
    ("Scan whose state doubles every trip", lambda: _scan(
        [helper.make_node("Concat", ["s_in", "s_in"], ["s_out"], axis=0),
         helper.make_node("Sub", ["s_in", "t"], ["d"]),
         helper.make_node("ReduceSumSquare", ["d"], ["out"], axes=[1], keepdims=0)]),
     "changes its state"),
    ("Scan over 2**21 trips", lambda: _scan(trips=(1 << 21) + 1), "over 1048576"),
    ("Scan in a Scan's body", lambda: _scan(
        [helper.make_node("Identity", ["s_in"], ["s_out"]),
         helper.make_node("Scan", ["s_in", "T"], ["u", "out"], num_scan_inputs=1,
                          body=_cdist_body())]), "Scan holds a subgraph"),
    ("Scan of a constant the caller may replace", lambda: _scan(constant_is_input=True),
     "not a constant of the graph"),
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


def _cdist_body(step=None):
    """The body of skl2onnx's pairwise distances: the request's rows carried
    on unchanged, their squared distances to one constant row out."""
    nodes = step or [helper.make_node("Identity", ["s_in"], ["s_out"]),
                     helper.make_node("Sub", ["s_in", "t"], ["d"]),
                     helper.make_node("ReduceSumSquare", ["d"], ["out"], axes=[1], keepdims=0)]
    return helper.make_graph(
        nodes, "body",
        [helper.make_tensor_value_info("s_in", TensorProto.DOUBLE, [None, 4]),
         helper.make_tensor_value_info("t", TensorProto.DOUBLE, [4])],
        [helper.make_tensor_value_info("s_out", TensorProto.DOUBLE, [None, 4]),
         helper.make_tensor_value_info("out", TensorProto.DOUBLE, [None])])


def _scan(step=None, trips=30, constant_is_input=False):
    """A graph answering each row's nearest of ``trips`` constant rows
    through a Scan of the constant (``step``: another body)."""
    nodes = [helper.make_node("Scan", ["X", "T"], ["carried", "distances"], num_scan_inputs=1,
                              body=_cdist_body(step)),
             helper.make_node("Transpose", ["distances"], ["by_row"], perm=[1, 0]),
             helper.make_node("ArgMin", ["by_row"], ["label"], axis=1, keepdims=0),
             helper.make_node("Softmax", ["by_row"], ["probabilities"], axis=1)]
    constant = numpy_helper.from_array(np.random.RandomState(0).normal(size=(trips, 4)), "T")
    inputs = [helper.make_tensor_value_info("X", TensorProto.DOUBLE, [None, 4])]
    if constant_is_input:
        inputs.append(helper.make_tensor_value_info("T", TensorProto.DOUBLE, [trips, 4]))
    return _model(nodes, [constant], inputs=inputs, outputs=[
        helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
        helper.make_tensor_value_info("probabilities", TensorProto.DOUBLE, [None, trips])])


def test_a_scan_of_a_constant_that_carries_its_state_unchanged_passes_and_runs():
    import onnxruntime
    graph = _scan()
    onnx.checker.check_model(graph)
    data = graph.SerializeToString()
    graph_policy.check(data)
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    X = np.random.RandomState(1).normal(size=(5, 4))
    T = numpy_helper.to_array(graph.graph.initializer[0])
    want = ((X[:, None, :] - T[None, :, :]) ** 2).sum(axis=2).argmin(axis=1)
    assert session.run(["label"], {"X": X})[0].tolist() == want.tolist()


def test_skl2onnx_k_neighbours_graphs_pass_the_policy():
    """Their Scan walks the fitted rows (a constant of the graph) and hands
    the request's rows on unchanged: bounded by the graph, not the request."""
    from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
    from publisher import onnx_export
    import skl2onnx
    from skl2onnx.common.data_types import DoubleTensorType
    X = np.random.RandomState(0).normal(size=(30, 4))
    for knn in (KNeighborsClassifier(3).fit(X, [0, 1, 2] * 10),
                KNeighborsRegressor(3).fit(X, np.arange(30.0))):
        options = {id(knn): {"zipmap": False}} if hasattr(knn, "predict_proba") else None
        graph = skl2onnx.to_onnx(knn, initial_types=[("X", DoubleTensorType([None, 4]))],
                                 options=options, target_opset=onnx_export.TARGET_OPSET)
        assert "Scan" in {n.op_type for n in graph.graph.node}
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


def test_a_tree_ensembles_long_integer_lists_are_not_decoded():
    """Only a Scan's few integer attributes are read: the policy skips the
    node ids of a big tree ensemble (collecting them in Python took seconds
    of a cold start)."""
    n = 200_000
    node = helper.make_node("Identity", ["X"], ["label"])
    node.attribute.append(helper.make_attribute("nodes_featureids", list(range(n))))
    data = _model([node], outputs=[helper.make_tensor_value_info(
        "label", TensorProto.DOUBLE, [None, 4])]).SerializeToString()
    started = time.perf_counter()
    graph_policy.check(data)
    assert time.perf_counter() - started < 1.0
