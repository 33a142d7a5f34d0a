"""Missing values in string columns: a JSON null and an empty CSV field
become what the notebook's DataFrame holds (NaN, as ``pandas.read_csv``
reads an empty field) when the model takes them, and a 422 naming the place
otherwise; never the empty string. Answers are compared with the real
pipeline's own predict on the same DataFrame, in the same run."""
import io
import json

import numpy as np

from tests.conftest import body_of
from tests.test_model_families import published, records_of


def csv_of(frame, **options):
    out = io.StringIO()
    frame.to_csv(out, **options)
    return out.getvalue()


def test_an_imputed_string_column_takes_null_and_empty_fields_as_nan(serve, tmp_path):
    model, notebook, card, model_dir = published(tmp_path, "imputed_string_pipeline")
    assert notebook["city"].isna().any() and not notebook["color"].isna().any()
    city = next(f for f in card["features"] if f["name"] == "city")
    assert city.get("accepts_missing_values") is True, city
    api = serve(MODEL_DIR=model_dir)
    expected = model.predict(notebook).tolist()
    proba = model.predict_proba(notebook)
    records = records_of(notebook)
    assert any(r["city"] is None for r in records)
    columns = list(notebook.columns)
    for name, body, content_type in (
            ("records", {"instances": records, "probabilities": True}, "application/json"),
            ("lists", {"instances": [[r[c] for c in columns] for r in records],
                       "probabilities": True}, "application/json"),
            ("csv", csv_of(notebook, index=False), "text/csv"),
            ("csv with index", csv_of(notebook), "text/csv")):
        query = "?probabilities=true" if content_type == "text/csv" else ""
        response = api.post(body if isinstance(body, str) else json.dumps(body),
                            content_type=content_type, query=query)
        assert response.status_code == 200, (name, response.body)
        answer = body_of(response)
        assert answer["predictions"] == expected, name
        assert np.allclose(answer["probabilities"], proba, rtol=1e-12, atol=1e-15), name
    # The peers' CSV route reads it the same way.
    response = api.client.http.post("/invocations", headers={"Content-Type": "text/csv"},
                                    body=csv_of(notebook))
    assert response.status_code == 200, response.body
    assert body_of(response)["predictions"] == expected
    # The model does not take missing numbers: those stay refused, named.
    bad = records_of(notebook.head(2))
    bad[1]["age"] = None
    response = api.post({"instances": bad})
    assert response.status_code == 422
    assert "instances[1].age: expected a number, got a missing value" in \
        body_of(response)["Message"]


def test_an_empty_field_is_never_an_empty_string(serve, tmp_path):
    model, notebook, card, model_dir = published(tmp_path, "tabular_pipeline")
    assert card["accepts_missing_values"] is False
    assert not any(f.get("accepts_missing_values") for f in card["features"])
    api = serve(MODEL_DIR=model_dir)
    frame = notebook.head(3).copy()
    frame.loc[frame.index[1], "city"] = np.nan
    response = api.post(csv_of(frame, index=False), content_type="text/csv")
    assert response.status_code == 422, response.body
    assert body_of(response)["Message"] == \
        "CSV line 3, column city: expected a string, got a missing value"
    records = records_of(frame)
    response = api.post({"instances": records})
    assert response.status_code == 422
    assert "instances[1].city: expected a string, got a missing value" in \
        body_of(response)["Message"]


def test_an_encoder_ignoring_unknowns_keeps_refusing_missing_values(serve, tmp_path):
    """An encoder with handle_unknown="ignore" answers a NaN city as any
    unseen city: the column has no rule of its own for a missing value, so
    the card does not mark it (and the model stays compilable to ONNX); an
    empty field is a 422 naming it, never the answer for \"\"."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler
    import joblib
    from publisher.publish import publish
    from tools.fixtures import fixtures_families as families
    X, y = families.customers()
    model = Pipeline([("prepare", ColumnTransformer([
        ("categories", OneHotEncoder(handle_unknown="ignore"), ["color", "city"]),
        ("numbers", StandardScaler(), ["age", "income"])])),
        ("classify", LogisticRegression(max_iter=1000))]).fit(X, y)
    joblib.dump(model, tmp_path / "m.joblib")
    card = publish(str(tmp_path / "m.joblib"), name="ignore", version="1.0.0",
                   out_dir=str(tmp_path / "out"), onnx=False)
    assert not any(f.get("accepts_missing_values") for f in card["features"])
    api = serve(MODEL_DIR=tmp_path / "out")
    frame = X.head(4).copy()
    frame.loc[frame.index[2], "city"] = np.nan
    response = api.post(csv_of(frame, index=False), content_type="text/csv")
    assert response.status_code == 422, response.body
    assert body_of(response)["Message"] == \
        "CSV line 4, column city: expected a string, got a missing value"


def test_a_converter_refusing_every_layout_alike_says_so_once(tmp_path):
    """An imputer filling NaN in string columns with a constant: skl2onnx
    refuses it whatever the input layout or dtype, and the reason the card
    gives (and publish prints) names that refusal once."""
    import joblib
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler
    from publisher.publish import publish
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"monthly charges ($)": rng.normal(70, 30, 80).round(2),
                          "contract type": rng.choice(["monthly", "yearly", None], 80)})
    y = frame["monthly charges ($)"] > 70
    model = make_pipeline(ColumnTransformer([
        ("num", StandardScaler(), ["monthly charges ($)"]),
        ("cat", make_pipeline(SimpleImputer(strategy="constant", fill_value="missing"),
                              OneHotEncoder(handle_unknown="ignore")), ["contract type"])]),
        LogisticRegression()).fit(frame, y)
    joblib.dump(model, tmp_path / "m.joblib")
    card = publish(str(tmp_path / "m.joblib"), name="m", version="1", out_dir=str(tmp_path / "m"),
                   sample=frame.head(20))
    assert card["runtime"] == "scikit-learn"
    reason = card["onnx"]["not_used"]
    assert reason.count("skl2onnx cannot convert") == 1, reason
    assert " double, " in reason and reason.endswith(" float)"), reason
