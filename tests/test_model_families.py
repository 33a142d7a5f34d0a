"""The models data scientists actually have, end to end: each family is
fitted, published with ``publisher.publish`` (no hand-written card), served by
the real app behind Chalice's test client, and asked in every request format;
the answers must equal what the same estimator predicts in the notebook on
the DataFrame (or texts, or matrix) it was fitted on. Bad values are 4xx that
name the place, never a 5xx."""
import io
import json
import os

import joblib
import numpy as np
import pandas as pd
import pytest

from publisher.publish import publish
from tools.fixtures import fixtures_families as families
from tests.conftest import BUNDLED_MODEL, body_of


def published(tmp_path, family, **options):
    """The family published as a pickle served by scikit-learn, answers
    compared exactly here (tests/test_onnx_runtime.py serves the families
    that compile through ONNX Runtime as well, and compares the two)."""
    options.setdefault("onnx", False)
    model, notebook = getattr(families, family)()
    artifact = tmp_path / (family + ".joblib")
    joblib.dump(model, artifact)
    card = publish(str(artifact), name=family.replace("_", "-"), version="1.0.0",
                   out_dir=str(tmp_path / family), **options)
    return model, notebook, card, tmp_path / family


def records_of(frame):
    return json.loads(frame.to_json(orient="records"))


def formats_of(frame):
    """The same rows in every JSON format and as CSV with a header."""
    records = records_of(frame)
    columns = list(frame.columns)
    rows = [[r[c] for c in columns] for r in records]
    csv = io.StringIO()
    frame.to_csv(csv, index=False)
    return {
        "instances (objects)": {"instances": records},
        "instances (lists)": {"instances": rows},
        "dataframe_split": {"dataframe_split": {"columns": columns, "data": rows}},
        "dataframe_records": {"dataframe_records": records},
        "csv": csv.getvalue(),
    }


def ask(api, payload, query=""):
    if isinstance(payload, str):
        return api.post(payload, content_type="text/csv", query=query)
    return api.post(payload, query=query)


def assert_all_formats_match(api, model, frame, expected=None, proba=True):
    expected = model.predict(frame).tolist() if expected is None else expected
    for name, payload in formats_of(frame).items():
        response = ask(api, payload)
        assert response.status_code == 200, (name, response.body)
        assert body_of(response)["predictions"] == expected, name
        assert response.headers["X-Model-Version"] == "1.0.0"
    if proba and hasattr(model, "predict_proba"):
        response = ask(api, {"instances": records_of(frame), "probabilities": True})
        assert response.status_code == 200, response.body
        body = body_of(response)
        assert body["classes"] == model.classes_.tolist()
        assert np.allclose(body["probabilities"], model.predict_proba(frame), rtol=1e-12,
                           atol=1e-15)


def assert_refused(api, payload, status, fragment):
    response = ask(api, payload)
    assert response.status_code == status, response.body
    message = body_of(response)["Message"]
    assert fragment in message, message
    assert response.headers.get("X-Model-Name"), "error responses name the model too"


def test_dataframe_pipeline_with_string_categories(serve, tmp_path):
    model, notebook, card, model_dir = published(tmp_path, "tabular_pipeline")
    assert card["input"] == "dataframe" and card["task"] == "classification"
    types = {f["name"]: f for f in card["features"]}
    assert types["color"]["type"] == "string" and types["color"]["categories"] == families.COLORS
    assert types["age"]["type"] == "number"
    api = serve(MODEL_DIR=model_dir)
    assert_all_formats_match(api, model, notebook)
    example = api.post(card["example"])
    assert example.status_code == 200, example.body
    bad = records_of(notebook.head(3))
    bad[2]["color"] = "purple"
    assert_refused(api, {"instances": bad}, 422,
                   'instances[2].color: expected one of "blue", "green", "red", got "purple"')
    bad[2]["color"] = 3
    assert_refused(api, {"instances": bad}, 422, "instances[2].color: expected a string, got 3")
    bad[2]["color"] = "red"
    bad[2]["age"] = "forty"
    assert_refused(api, {"instances": bad}, 422, 'instances[2].age: expected a number, got "forty"')
    assert_refused(api, "color,city,age,income\nred,Oslo,abc,1\n", 422,
                   'CSV line 2, column age: expected a number, got "abc"')


def test_unknown_categories_are_accepted_when_the_encoder_ignores_them(serve, tmp_path):
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder
    X, y = families.customers()
    model = Pipeline([("prepare", ColumnTransformer(
        [("c", OneHotEncoder(handle_unknown="ignore"), ["color", "city"])],
        remainder="passthrough")), ("classify", LogisticRegression(max_iter=1000))]).fit(X, y)
    joblib.dump(model, tmp_path / "m.joblib")
    card = publish(str(tmp_path / "m.joblib"), name="ignore", version="1.0.0",
                   out_dir=str(tmp_path / "m"))
    assert {f["name"]: f.get("unknown_categories") for f in card["features"]}["color"] == "ignore"
    api = serve(MODEL_DIR=tmp_path / "m")
    row = pd.DataFrame([{"color": "purple", "city": "Oslo", "age": 30.0, "income": 1000.0}])
    response = api.post({"instances": records_of(row)})
    assert response.status_code == 200, response.body
    assert body_of(response)["predictions"] == model.predict(row).tolist()


def test_text_pipeline(serve, tmp_path):
    model, texts, card, model_dir = published(tmp_path, "text_pipeline")
    assert card["input"] == "texts" and card["features"] == [{"name": "text", "type": "text"}]
    api = serve(MODEL_DIR=model_dir)
    expected = model.predict(texts).tolist()
    csv = io.StringIO()
    pd.DataFrame({"text": texts}).to_csv(csv, index=False)
    for payload in ({"instances": texts},
                    {"instances": [[t] for t in texts]},
                    {"dataframe_records": [{"text": t} for t in texts]},
                    {"dataframe_split": {"columns": ["text"], "data": [[t] for t in texts]}},
                    csv.getvalue()):
        response = ask(api, payload)
        assert response.status_code == 200, (payload, response.body)
        assert body_of(response)["predictions"] == expected
    assert_refused(api, {"instances": ["fine", 42]}, 422, "instances[1]: expected a text")


def test_native_categorical_hist_gradient_boosting_with_missing_values(serve, tmp_path):
    model, notebook, card, model_dir = published(tmp_path, "hist_gradient_boosting_categorical")
    types = {f["name"]: f for f in card["features"]}
    assert types["color"]["dtype"] == "category" and types["color"]["type"] == "string"
    assert card["accepts_missing_values"] is True
    assert notebook["income"].isna().any()
    api = serve(MODEL_DIR=model_dir)
    assert_all_formats_match(api, model, notebook)


def test_multiclass_gradient_boosting(serve, tmp_path):
    model, X, card, model_dir = published(tmp_path, "multiclass_gradient_boosting")
    assert card["task"] == "classification" and card["classes"] == ["a", "b", "c"]
    api = serve(MODEL_DIR=model_dir)
    assert_all_formats_match(api, model, pd.DataFrame(X, columns=["x0", "x1", "x2", "x3"]),
                             expected=model.predict(X).tolist())


def test_multilabel_forest_answers_nested_lists(serve, tmp_path):
    model, X, card, model_dir = published(tmp_path, "multilabel_forest")
    assert card["task"] == "multilabel"
    assert card["classes"] == [[0, 1]] * 3
    api = serve(MODEL_DIR=model_dir)
    response = api.post({"instances": X.tolist(), "probabilities": True})
    assert response.status_code == 200, response.body
    body = body_of(response)
    assert body["predictions"] == model.predict(X).tolist()
    proba = model.predict_proba(X)
    assert np.allclose(np.asarray(body["probabilities"]), np.stack(proba, axis=1), atol=1e-15)


def test_clustering_pipeline(serve, tmp_path):
    model, X, card, model_dir = published(tmp_path, "clustering_pipeline")
    assert card["task"] == "clustering"
    api = serve(MODEL_DIR=model_dir)
    response = api.post({"instances": X.tolist()})
    assert response.status_code == 200 and body_of(response)["predictions"] == model.predict(X).tolist()


def test_log1p_model_refuses_rows_it_cannot_answer(serve, tmp_path):
    model, X, card, model_dir = published(tmp_path, "log1p_ridge")
    assert card["task"] == "regression"
    api = serve(MODEL_DIR=model_dir)
    response = api.post({"instances": X.tolist()})
    assert response.status_code == 200
    assert body_of(response)["predictions"] == pytest.approx(model.predict(X).tolist(), rel=1e-12)
    assert_refused(api, {"instances": [[1.0, 2.0], [-1.0, 3.0]]}, 422, "row 1")


def test_a_sample_gives_types_ranges_and_the_example(serve, tmp_path):
    """A DataFrame model whose string column reaches no encoder the publish
    step can read (an OrdinalEncoder behind a custom-named pipeline would be
    found; here a TargetEncoder is found too): the sample gives the types."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OrdinalEncoder
    X, y = families.customers()
    X["members"] = np.arange(len(X)) % 5
    model = Pipeline([("prepare", ColumnTransformer(
        [("c", OrdinalEncoder(), ["color", "city"])], remainder="passthrough")),
        ("classify", LogisticRegression(max_iter=2000))]).fit(X, y)
    joblib.dump(model, tmp_path / "m.joblib")
    X.head(20).to_csv(tmp_path / "sample.csv", index=False)
    card = publish(str(tmp_path / "m.joblib"), name="s", version="1.0.0",
                   out_dir=str(tmp_path / "m"), sample=str(tmp_path / "sample.csv"),
                   onnx=False)  # exact answers: the pickle (compiled: tests/test_onnx_runtime.py)
    types = {f["name"]: f for f in card["features"]}
    assert types["members"]["type"] == "integer"
    assert types["age"]["range"] == [float(X.head(20)["age"].min()), float(X.head(20)["age"].max())]
    assert card["example"]["instances"][0]["color"] == X["color"].iloc[0]
    api = serve(MODEL_DIR=tmp_path / "m")
    assert_all_formats_match(api, model, X.head(8))


def test_openapi_follows_the_typed_schema(serve, tmp_path):
    _, _, card, model_dir = published(tmp_path, "tabular_pipeline")
    api = serve(MODEL_DIR=model_dir)
    document = body_of(api.get("/openapi.json"))
    record = document["components"]["schemas"]["Record"]["properties"]
    assert record["color"] == {"type": "string", "enum": families.COLORS, "title": "color"}
    assert record["age"]["type"] == "number"
    content = document["paths"]["/model"]["post"]["requestBody"]["content"]["application/json"]
    assert content["example"] == card["example"]
    _, _, card, model_dir = published(tmp_path, "text_pipeline")
    document = body_of(serve(MODEL_DIR=model_dir).get("/openapi.json"))
    assert "InstancesTexts" in document["components"]["schemas"]


def test_outlier_detector(serve, tmp_path):
    from sklearn.ensemble import IsolationForest
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    model = IsolationForest(n_estimators=20, random_state=0).fit(X)
    joblib.dump(model, tmp_path / "iso.joblib")
    card = publish(str(tmp_path / "iso.joblib"), name="iso", version="1.0.0",
                   out_dir=str(tmp_path / "iso"))
    assert card["task"] == "outlier_detection"
    rows = np.vstack([X[:5], [[8.0, 8.0, 8.0]]])
    response = serve(MODEL_DIR=tmp_path / "iso").post({"instances": rows.tolist()})
    assert response.status_code == 200
    assert body_of(response)["predictions"] == model.predict(rows).tolist()
    assert body_of(response)["predictions"][-1] == -1


def test_pandas_output_pipeline_and_no_warnings_per_request(serve, tmp_path, recwarn):
    """A pipeline with set_output(transform="pandas") fitted on a DataFrame:
    served with a DataFrame, no warning per request, and its package
    carries pandas (the build decides from the artifact)."""
    from tools.build.package import model_uses_pandas
    model, notebook = families.tabular_pipeline()
    model.set_params(prepare__categories__sparse_output=False).set_output(transform="pandas")
    model.fit(*families.customers())
    joblib.dump(model, tmp_path / "p.joblib")
    card = publish(str(tmp_path / "p.joblib"), name="p", version="1.0.0",
                   out_dir=str(tmp_path / "p"))
    api = serve(MODEL_DIR=tmp_path / "p")
    recwarn.clear()
    response = api.post({"dataframe_records": records_of(notebook)})
    assert response.status_code == 200
    assert body_of(response)["predictions"] == model.predict(notebook).tolist()
    assert [str(w.message) for w in recwarn if issubclass(w.category, UserWarning)] == []
    assert model_uses_pandas(str(tmp_path / "p" / "model.joblib"), card)
    iris = json.load(open(os.path.join(BUNDLED_MODEL, "model.json")))
    assert not model_uses_pandas(os.path.join(BUNDLED_MODEL, "model.joblib"), iris)
