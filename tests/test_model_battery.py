"""The model battery (``tools/fixtures/model_battery.py``) through publish and
the app: for a representative subset (a numeric DataFrame whose column names
have spaces and parentheses, numbers and strings, a tree fitted with NaN, a
soft-voting ensemble, a TransformedTargetRegressor, a LinearSVC, a k-neighbours
classifier whose graph scans its fitted rows, a forest behind
``make_column_selector``), publish compiles the
model, the card states its agreement, and the app's answers on ``/model``
(ONNX Runtime) equal the notebook's within the card's rtol and atol, value
by value; labels identical."""
import json

import numpy as np
import pytest

from publisher import onnx_export
from tests.conftest import body_of
from tools.bench.battery import publish_family

SUBSET = ("iris_logistic_regression", "houses_elastic_net", "houses_decision_tree_nan",
          "wine_soft_voting", "diabetes_transformed_target", "churn_linear_svc", "wine_knn",
          "churn_column_selector_forest")


@pytest.fixture(scope="module", params=SUBSET)
def published(request, tmp_path_factory):
    model, notebook, card, model_dir = publish_family(
        request.param, str(tmp_path_factory.mktemp(request.param)))
    assert card is not None, model_dir
    return request.param, model, notebook, card, model_dir


def _within(got, want, rtol, atol):
    got, want = np.asarray(got, dtype=float), np.asarray(want, dtype=float)
    assert got.shape == want.shape
    assert (np.abs(got - want) <= rtol * np.abs(want) + atol).all(), np.abs(got - want).max()


@pytest.mark.slow
def test_the_served_answers_are_the_notebooks_within_the_cards_tolerance(published, serve):
    name, model, notebook, card, model_dir = published
    assert card["runtime"] == "onnxruntime", card["onnx"]
    agreement = card["onnx"]["agreement"]
    rtol, atol = agreement["rtol"], agreement["atol"]
    assert (rtol, atol) in (onnx_export.DOUBLE_TOLERANCE, onnx_export.FLOAT_TOLERANCE)
    # a graph held to the double tolerance has no float32 stage, and one with
    # such a stage says which
    assert bool(agreement.get("float32_stages")) == ((rtol, atol) == onnx_export.FLOAT_TOLERANCE)
    payload = {"dataframe_records": json.loads(notebook.to_json(orient="records"))}
    proba = "probabilities" in card["onnx"]
    if proba:
        payload["probabilities"] = True
    response = serve(MODEL_DIR=model_dir).post(payload)
    assert response.status_code == 200, response.body
    assert response.headers["X-Model-Runtime"] == "onnxruntime"
    body = body_of(response)
    want = model.predict(notebook)
    if card["task"] in ("regression", "multioutput"):
        _within(body["predictions"], want, rtol, atol)
    else:
        assert body["predictions"] == want.tolist()
    if proba:
        _within(body["probabilities"], model.predict_proba(notebook), rtol, atol)


@pytest.mark.slow
def test_a_tree_fitted_with_nan_answers_missing_values_as_scikit_learn(published, serve):
    name, model, notebook, card, model_dir = published
    if not card["accepts_missing_values"]:
        pytest.skip("%s does not accept missing values" % name)
    numbers = list(notebook.select_dtypes("number").columns)
    frame = notebook.head(5).astype({c: float for c in numbers})
    rows = json.loads(frame.to_json(orient="records"))  # NaN as null
    records = []
    for column in numbers:  # a missing value in each numeric feature in turn
        records += [dict(r, **{column: None}) for r in rows]
    response = serve(MODEL_DIR=model_dir).post({"dataframe_records": records})
    assert response.status_code == 200, response.body
    import pandas as pd
    want = model.predict(pd.DataFrame(records, columns=frame.columns).astype(
        {c: float for c in numbers}))
    if card["task"] in ("regression", "multioutput"):
        rtol, atol = card["onnx"]["agreement"]["rtol"], card["onnx"]["agreement"]["atol"]
        _within(body_of(response)["predictions"], want, rtol, atol)
    else:
        assert body_of(response)["predictions"] == want.tolist()


def test_the_agreement_check_catches_a_float32_stage_in_a_double_graph():
    """A value computed through float32 differs from scikit-learn's by about
    float32's resolution, far beyond the double tolerance: the per-value
    check refuses it, and the stage detector names the operator."""
    want = np.array([123456.789, 0.5, -3.25e-3, 1e6 + 0.1])
    got = want.astype(np.float32).astype(np.float64)
    expected = {"predictions": want, "probabilities": None}
    _, problem = onnx_export.compare(expected, {"predictions": got, "probabilities": None},
                                     "regression", onnx_export.DOUBLE_TOLERANCE)
    assert problem and problem.startswith("values differ") and "beyond rtol 1e-09" in problem
    _, problem = onnx_export.compare(expected, {"predictions": want + 1e-13,
                                                "probabilities": None},
                                     "regression", onnx_export.DOUBLE_TOLERANCE)
    assert problem is None
    from onnx import TensorProto, helper
    graph = helper.make_graph(
        [helper.make_node("Cast", ["X"], ["f"], to=TensorProto.FLOAT),
         helper.make_node("Cast", ["f"], ["Y"], to=TensorProto.DOUBLE)], "g",
        [helper.make_tensor_value_info("X", TensorProto.DOUBLE, [None, 1])],
        [helper.make_tensor_value_info("Y", TensorProto.DOUBLE, [None, 1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    assert onnx_export.float32_stages(model.SerializeToString()) == ["Cast"]
