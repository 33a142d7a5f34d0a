"""The ONNX Runtime serving path: what ``publisher.publish`` compiles, what it
refuses to compile, and that a compiled model answers as its pickle does.

Every model here is really trained, really published with ``publisher.publish``,
and served through the real app (Chalice's test client) twice: by ONNX
Runtime (the card's default) and by scikit-learn (``MODEL_RUNTIME``), in the
same process, so that exact comparisons compare bits made on one machine.
"""
import hashlib
import json
import os
import subprocess
import sys

import joblib
import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.ensemble import (HistGradientBoostingClassifier, IsolationForest,
                              RandomForestClassifier)

from publisher import onnx_export
from publisher.publish import publish
from tools.fixtures import fixtures_families as families
from tests.conftest import BUNDLED_MODEL, IRIS_ROWS, PROJECT_DIR, body_of

PYTHON = sys.executable


def _iris_forest():
    X, y = load_iris(return_X_y=True)
    names = np.asarray(load_iris().target_names)
    return RandomForestClassifier(n_estimators=50, random_state=0).fit(X, names[y]), X[::7]


def _iris_hist_gradient_boosting():
    X, y = load_iris(return_X_y=True)
    X = X.copy()
    X[::9, 1] = np.nan  # native missing-value handling
    return HistGradientBoostingClassifier(max_iter=30, random_state=0).fit(X, y), X[:15]


def _isolation_forest():
    X, _ = load_iris(return_X_y=True)
    return IsolationForest(n_estimators=50, random_state=0).fit(X), X[::6]


# The families that compile: (factory, task, ONNX input precision; None:
# whichever agrees, double tried first).
COMPILED = {
    "forest": (_iris_forest, "classification", None),
    "multiclass_gradient_boosting": (families.multiclass_gradient_boosting, "classification",
                                     "float"),
    "clustering": (families.clustering_pipeline, "clustering", "double"),
    "isolation_forest": (_isolation_forest, "outlier_detection", "float"),
    # a DataFrame of string categories and numbers: a matrix of the numbers
    # and one of the strings, in double end to end
    "tabular_pipeline": (families.tabular_pipeline, "classification", "double"),
    "tabular_ignoring_unknown": (lambda: _tabular_ignoring_unknown(), "classification", "double"),
    "ordinal_with_an_integer_column": (lambda: _ordinal_with_an_integer_column(),
                                       "classification", None),
}
# And those served by scikit-learn, with the reason the card gives.
NOT_COMPILED = {
    "hist_gradient_boosting_categorical": (families.hist_gradient_boosting_categorical,
                                           "category dtype"),
    # a forest fitted without missing values sends NaN to its larger child;
    # the multi-output graph does not, and the rows with NaN show it
    "multilabel_forest": (families.multilabel_forest, "disagrees with scikit-learn"),
    "text_pipeline": (families.text_pipeline, "text models are not compiled"),
    "log1p_ridge": (families.log1p_ridge, "FunctionTransformer is not supported"),
    # HistGradientBoosting compares float64 values with float64 thresholds;
    # ONNX Runtime's tree ensembles compare in float32 (a double graph does
    # not run), and rows near a threshold answer otherwise
    "hist_gradient_boosting": (_iris_hist_gradient_boosting, "disagrees with scikit-learn"),
}


def _tabular_ignoring_unknown():
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler
    X, y = families.customers()
    model = Pipeline([("prepare", ColumnTransformer([
        ("categories", OneHotEncoder(handle_unknown="ignore"), ["color", "city"]),
        ("numbers", StandardScaler(), ["age", "income"])])),
        ("classify", LogisticRegression(max_iter=1000))]).fit(X, y)
    notebook = X.head(12).copy()
    notebook.loc[notebook.index[:3], "color"] = "purple"  # never seen in training
    return model, notebook


def _ordinal_with_an_integer_column():
    """OrdinalEncoder on the strings, an integer column passed through: its
    types come from the sample (``--sample``)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OrdinalEncoder
    X, y = families.customers()
    X["members"] = np.arange(len(X)) % 5
    model = Pipeline([("prepare", ColumnTransformer(
        [("c", OrdinalEncoder(), ["color", "city"])], remainder="passthrough")),
        ("classify", LogisticRegression(max_iter=2000))]).fit(X, y)
    return model, X.head(20)


def _payload(rows):
    """The notebook's rows as a request: records for a DataFrame, lists
    (missing values as null) for a matrix."""
    if hasattr(rows, "columns"):
        return {"dataframe_records": json.loads(rows.to_json(orient="records"))}
    rows = np.asarray(rows, dtype=float)
    return {"instances": [[None if np.isnan(v) else v for v in row] for row in rows.tolist()]}


def _published(tmp_path_factory, name, factory):
    model, rows = factory()
    where = tmp_path_factory.mktemp(name)
    artifact = where / "artifact.joblib"
    joblib.dump(model, artifact)
    # the notebook's rows as --sample (types and ranges), unless they hold
    # missing values (a sample describes training data, not requests)
    sample = rows if hasattr(rows, "columns") and not rows.isna().any().any() else None
    card = publish(str(artifact), name=name, version="1.0.0", out_dir=str(where / "model"),
                   sample=sample)
    return model, rows, card, where / "model"


@pytest.fixture(scope="module", params=sorted(COMPILED))
def compiled(request, tmp_path_factory):
    factory, task, precision = COMPILED[request.param]
    model, rows, card, model_dir = _published(tmp_path_factory, request.param, factory)
    return request.param, model, rows, card, model_dir, task, precision


def _both_runtimes(serve, model_dir, payload):
    answers = {}
    for runtime in ("onnxruntime", "scikit-learn"):
        api = serve(MODEL_DIR=model_dir, MODEL_RUNTIME=runtime)
        response = api.post(payload)
        assert response.status_code == 200, response.body
        assert response.headers["X-Model-Runtime"] == runtime
        answers[runtime] = body_of(response)
    return answers["onnxruntime"], answers["scikit-learn"]


def test_a_compiled_family_is_served_by_onnx_runtime_with_its_agreement_on_the_card(compiled):
    name, model, rows, card, model_dir, task, precision = compiled
    assert card["task"] == task
    assert card["runtime"] == "onnxruntime", card["onnx"]
    onnx = card["onnx"]
    assert onnx["sha256"] == hashlib.sha256((model_dir / "model.onnx").read_bytes()).hexdigest()
    agreement = onnx["agreement"]
    assert agreement["input"] == (precision or agreement["input"])
    # + the --sample rows or the card's example row, each feature's edges,
    # and rows with missing values where the model accepts them
    assert agreement["rows"] >= onnx_export.VALIDATION_ROWS + (
        len(rows) if hasattr(rows, "columns") else 1)
    tolerance = (agreement["rtol"], agreement["atol"])
    assert tolerance == (onnx_export.FLOAT_TOLERANCE if agreement.get("float32_stages")
                         else onnx_export.DOUBLE_TOLERANCE)
    if "probabilities_max_error" in agreement:
        assert 0 <= agreement["probabilities_max_error"] <= sum(tolerance)


def test_both_runtimes_give_the_same_answers(compiled, serve):
    name, model, rows, card, model_dir, task, _ = compiled
    payload = _payload(rows)
    if not hasattr(rows, "columns"):
        rows = np.asarray(rows, dtype=float)
    if "probabilities" in card["onnx"]:
        payload["probabilities"] = True
    onnx, sklearn_ = _both_runtimes(serve, model_dir, payload)
    # labels, cluster ids and outlier flags: identical, and equal to the notebook's predict
    assert onnx["predictions"] == sklearn_["predictions"] == model.predict(rows).tolist()
    if "probabilities" in payload:
        assert onnx["classes"] == sklearn_["classes"]
        assert np.allclose(onnx["probabilities"], sklearn_["probabilities"],
                           rtol=0, atol=onnx_export.RTOL)


def test_a_regressor_agrees_within_the_stated_tolerance(serve, tmp_path_factory):
    from sklearn.datasets import load_diabetes
    from sklearn.ensemble import HistGradientBoostingRegressor
    data = load_diabetes()
    model = HistGradientBoostingRegressor(max_iter=50, random_state=0).fit(data.data, data.target)
    where = tmp_path_factory.mktemp("regressor")
    joblib.dump(model, where / "a.joblib")
    card = publish(str(where / "a.joblib"), name="r", version="1", out_dir=str(where / "m"))
    assert card["runtime"] == "onnxruntime"
    onnx, sklearn_ = _both_runtimes(serve, where / "m", {"instances": data.data[:20].tolist()})
    assert sklearn_["predictions"] == model.predict(data.data[:20]).tolist()
    assert onnx["predictions"] == pytest.approx(sklearn_["predictions"], rel=onnx_export.RTOL)


@pytest.mark.parametrize("name", sorted(NOT_COMPILED))
def test_what_does_not_compile_is_served_by_scikit_learn_and_the_card_says_why(
        name, serve, tmp_path_factory):
    factory, reason = NOT_COMPILED[name]
    model, rows, card, model_dir = _published(tmp_path_factory, name, factory)
    assert card["runtime"] == "scikit-learn"
    assert reason in card["onnx"]["not_used"]
    assert not (model_dir / "model.onnx").exists()
    api = serve(MODEL_DIR=model_dir)
    payload = {"instances": rows} if isinstance(rows, list) else _payload(rows)
    response = api.post(payload)
    assert response.status_code == 200, response.body
    assert response.headers["X-Model-Runtime"] == "scikit-learn"
    assert body_of(response)["predictions"] == model.predict(rows).tolist()
    # asking for the graph it does not have is a clear 503, not a fallback
    refused = serve(MODEL_DIR=model_dir, MODEL_RUNTIME="onnxruntime").post(payload)
    assert refused.status_code == 503
    assert "has no ONNX graph" in body_of(refused)["Message"]


def test_the_agreement_check_catches_a_graph_that_disagrees():
    """The control: skl2onnx's own graph of a forest for double inputs
    compares the float64 value with the threshold where scikit-learn compares
    float32(x), so rows of one-decimal data (the thresholds are midpoints
    between them) fall on the other side of a split. The check must see it;
    the graph whose trees read float32(x) (publisher/converters) agrees."""
    import onnxruntime
    import skl2onnx
    from chalicelib.schema.features import Schema
    from publisher.converters import float32_splits
    X_iris, y = load_iris(return_X_y=True)
    model = RandomForestClassifier(n_estimators=200, random_state=0).fit(X_iris, y)
    card = publish_card(model)
    schema = Schema(card["features"], False)
    X = onnx_export.validation_matrix(schema, card["features"], X_iris.tolist())
    expected = onnx_export._sklearn_answers(model, X)

    def problem_of(graph):
        spec = onnx_export._output_spec(graph, expected)
        answers = onnx_export._onnx_answers(
            onnx_export._session_model(onnxruntime, graph, card, spec), X, expected)
        return onnx_export.compare(expected, answers, "classification")[1]

    onnx_export._convert(skl2onnx, model, schema, "matrix", "double")  # registers ours
    with float32_splits.skl2onnx_splits():
        problem = problem_of(onnx_export._convert(skl2onnx, model, schema, "matrix", "double"))
    assert problem and ("predictions differ" in problem or "probabilities differ" in problem)
    assert problem_of(onnx_export._convert(skl2onnx, model, schema, "matrix", "double")) is None


def publish_card(model):
    return {"name": "f", "version": "1", "task": "classification", "sha256": "0" * 64,
            "versions": {}, "classes": model.classes_.tolist(),
            "features": [{"name": n, "type": "number", "range": [0.0, 8.0]}
                         for n in ("a", "b", "c", "d")]}


def test_publish_can_be_told_not_to_compile(tmp_path):
    card = publish(os.path.join(BUNDLED_MODEL, "model.joblib"), name="iris", version="1",
                   out_dir=str(tmp_path / "m"), onnx=False)
    assert card["runtime"] == "scikit-learn" and "--runtime scikit-learn" in card["onnx"][
        "not_used"]
    assert not (tmp_path / "m" / "model.onnx").exists()


SERVE_ONE_REQUEST = """
import json, sys, app
from chalice.test import Client
with Client(app.app) as c:
    r = c.http.post('/model', headers={'Content-Type': 'application/json'},
                    body=json.dumps(json.loads(sys.argv[1])))
print(json.dumps({'status': r.status_code, 'body': json.loads(r.body),
                  'runtime': r.headers['X-Model-Runtime'],
                  'modules': sorted({m.split('.')[0] for m in sys.modules} &
                                    {'sklearn', 'scipy', 'joblib', 'pandas', 'onnxruntime'})}))
"""


def _serve_in_a_fresh_process(payload, **env):
    env = dict(os.environ, LOG_REQUESTS="false", **env)
    env.pop("MODEL_RUNTIME", None)
    out = subprocess.run([PYTHON, "-c", SERVE_ONE_REQUEST, json.dumps(payload)], cwd=PROJECT_DIR,
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_bundled_model_is_served_by_onnx_runtime_without_scikit_learn():
    """In a fresh process: the app and a prediction import neither
    scikit-learn nor scipy nor joblib, and the answers are the pickle's."""
    result = _serve_in_a_fresh_process({"instances": IRIS_ROWS, "probabilities": True})
    assert result["status"] == 200 and result["runtime"] == "onnxruntime"
    assert result["modules"] == ["onnxruntime"]
    pipeline = joblib.load(os.path.join(BUNDLED_MODEL, "model.joblib"))
    assert result["body"]["predictions"] == pipeline.predict(IRIS_ROWS).tolist()
    assert np.allclose(result["body"]["probabilities"], pipeline.predict_proba(IRIS_ROWS),
                       rtol=0, atol=onnx_export.RTOL)


def test_a_compiled_dataframe_model_is_served_without_pandas(tmp_path_factory):
    model, rows, card, model_dir = _published(tmp_path_factory, "churn",
                                              families.tabular_pipeline)
    assert card["input"] == "dataframe" and card["runtime"] == "onnxruntime"
    result = _serve_in_a_fresh_process(_payload(rows), MODEL_DIR=str(model_dir))
    assert result["status"] == 200 and result["runtime"] == "onnxruntime"
    assert result["modules"] == ["onnxruntime"]
    assert result["body"]["predictions"] == model.predict(rows).tolist()


@pytest.mark.parametrize("value", ["", "auto", "AUTO", " auto "])
def test_model_runtime_auto_is_the_cards_choice(serve, value):
    response = serve(MODEL_RUNTIME=value).post({"instances": IRIS_ROWS})
    assert response.status_code == 200
    assert response.headers["X-Model-Runtime"] == "onnxruntime"


def test_an_unknown_model_runtime_is_503_naming_the_choices(serve):
    response = serve(MODEL_RUNTIME="tensorflow").post({"instances": IRIS_ROWS})
    assert response.status_code == 503
    assert "MODEL_RUNTIME must be one of auto, scikit-learn, onnxruntime" in body_of(
        response)["Message"]


def test_errors_answer_alike_through_both_runtimes(serve):
    for payload in ({"instances": [[1, 2, 3]]}, {"instances": [["a", 2, 3, 4]]},
                    {"instances": [[None, 2, 3, 4]]}, {"instances": []},
                    {"instances": [[1, 2, 3, 4]], "probabilities": "yes"}):
        answers = []
        for runtime in ("onnxruntime", "scikit-learn"):
            response = serve(MODEL_RUNTIME=runtime).post(payload)
            answers.append((response.status_code, body_of(response)))
        assert answers[0] == answers[1], payload
        assert 400 <= answers[0][0] < 500


@pytest.mark.parametrize("row", [[1e308, 3.5, 1.4, 0.2], [-1e308, 1e308, 1.4, 0.2],
                                 [1e200, 1e200, 1e200, 1e200]])
def test_overflowing_values_are_a_422_or_an_answer_never_a_5xx(serve, row):
    """Where each runtime sees an overflow differs: numpy raises on any
    intermediate one (scikit-learn: 422), ONNX Runtime is judged by its
    outputs (NaN or infinite probabilities: 422). Either answer is a 200
    with the same label, or a 422 saying the values are too large."""
    labels = set()
    for runtime in ("onnxruntime", "scikit-learn"):
        response = serve(MODEL_RUNTIME=runtime).post({"instances": [row], "probabilities": True})
        assert response.status_code in (200, 422), response.body
        body = body_of(response)
        if response.status_code == 422:
            assert body["Message"].startswith("values too large for model iris-classifier")
        else:
            labels.add(body["predictions"][0])
            assert np.isfinite(body["probabilities"]).all()
    assert len(labels) <= 1


# ----- hostile or broken graphs: a 503 with the reason, never a crash ---------

def _rewrite(model_dir, graph):
    (model_dir / "model.onnx").write_bytes(graph)
    card = json.loads((model_dir / "model.json").read_text())
    card["onnx"]["sha256"] = hashlib.sha256(graph).hexdigest()
    (model_dir / "model.json").write_text(json.dumps(card))


def _graph(nodes, initializers=(), opsets=(("", 14),), n_in=4):
    from onnx import TensorProto, helper
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("X", TensorProto.DOUBLE, [None, n_in])],
        [helper.make_tensor_value_info("label", TensorProto.STRING, [None]),
         helper.make_tensor_value_info("probabilities", TensorProto.DOUBLE, [None, 3])],
        list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets])
    return model.SerializeToString()


def _external_weights(location):
    from onnx import TensorProto, helper, numpy_helper
    weights = numpy_helper.from_array(np.zeros((4, 3)), "W")
    weights.ClearField("raw_data")
    weights.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "96")):
        entry = weights.external_data.add()
        entry.key, entry.value = key, value
    nodes = [helper.make_node("MatMul", ["X", "W"], ["probabilities"]),
             helper.make_node("Constant", [], ["label"], value=helper.make_tensor(
                 "l", TensorProto.STRING, [1], [b"setosa"]))]
    return _graph(nodes, [weights])


def test_a_tampered_graph_is_503(serve, model_copy):
    with open(model_copy / "model.onnx", "ab") as f:
        f.write(b"\0")
    response = serve(MODEL_DIR=model_copy).post({"instances": IRIS_ROWS})
    assert response.status_code == 503
    assert "model.onnx sha256" in body_of(response)["Message"]


def test_a_missing_graph_is_503(serve, model_copy):
    os.remove(model_copy / "model.onnx")
    response = serve(MODEL_DIR=model_copy).post({"instances": IRIS_ROWS})
    assert response.status_code == 503
    assert "no ONNX graph" in body_of(response)["Message"]


@pytest.mark.parametrize("location", ["/etc/passwd", "../../../../etc/passwd", "model.json"])
def test_a_graph_reading_other_files_is_refused(serve, model_copy, location):
    _rewrite(model_copy, _external_weights(location))
    response = serve(MODEL_DIR=model_copy).post({"instances": IRIS_ROWS})
    assert response.status_code == 503
    assert body_of(response)["Message"] == ("model not available: the ONNX graph is outside the "
                                            "served graphs' policy (a tensor's data is in an "
                                            "external file)")


def test_a_graph_naming_an_operator_onnx_runtime_lacks_is_refused(serve, model_copy):
    from onnx import helper
    nodes = [helper.make_node("Exec", ["X"], ["probabilities", "label"], domain="evil.ops")]
    _rewrite(model_copy, _graph(nodes, opsets=(("", 14), ("evil.ops", 1))))
    response = serve(MODEL_DIR=model_copy).post({"instances": IRIS_ROWS})
    assert response.status_code == 503
    assert "operator evil.ops.Exec is not one the converters emit" in \
        body_of(response)["Message"]


def test_a_graph_of_another_width_than_the_card_is_refused(serve, model_copy):
    from onnx import TensorProto, helper
    nodes = [helper.make_node("Constant", [], ["probabilities"], value=helper.make_tensor(
        "p", TensorProto.DOUBLE, [1, 3], [1.0, 0.0, 0.0])),
        helper.make_node("Constant", [], ["label"], value=helper.make_tensor(
            "l", TensorProto.STRING, [1], [b"setosa"]))]
    _rewrite(model_copy, _graph(nodes, n_in=7))
    response = serve(MODEL_DIR=model_copy).post({"instances": IRIS_ROWS})
    assert response.status_code == 503
    assert "has shape [None, 7], not 4 columns" in body_of(response)["Message"]


def test_a_graph_that_is_not_onnx_is_refused(serve, model_copy):
    _rewrite(model_copy, b"\x80\x04not a graph")
    response = serve(MODEL_DIR=model_copy).post({"instances": IRIS_ROWS})
    assert response.status_code == 503
    assert "the ONNX graph is malformed" in body_of(response)["Message"]


def test_the_open_inference_metadata_names_the_platform_that_serves(serve):
    platforms = {}
    for runtime in ("onnxruntime", "scikit-learn"):
        response = serve(MODEL_RUNTIME=runtime).get("/v2/models/iris-classifier")
        assert response.status_code == 200, response.body
        platforms[runtime] = body_of(response)["platform"]
    assert platforms == {"onnxruntime": "onnxruntime_onnx", "scikit-learn": "scikit-learn"}
