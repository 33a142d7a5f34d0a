"""Everyday DataFrame pipelines a notebook writes, really fitted, published
with ``publisher.publish`` and served: columns chosen by
``make_column_selector``, a TargetEncoder meeting a category it never saw,
a ``--sample`` with missing values (in its first row too), a text model
named after its sample's column, and the report publish prints agreeing
with the card it wrote."""
import json

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.compose import make_column_selector, make_column_transformer
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler, TargetEncoder

from chalicelib.safeload import safe_pickle
from publisher.publish import PublishError, publish
from tests.conftest import body_of
from tools.fixtures.fixtures_families import CITIES, customers


def records(frame):
    return json.loads(frame.to_json(orient="records"))


def _publish(model, tmp_path, name, **options):
    artifact = tmp_path / (name + ".joblib")
    joblib.dump(model, artifact)
    return publish(str(artifact), name=name, version="1.0.0", out_dir=str(tmp_path / name),
                   **options), tmp_path / name


@pytest.mark.parametrize("selectors", [
    (make_column_selector(dtype_include=object), make_column_selector(dtype_exclude=object)),
    (make_column_selector(dtype_include="object"), make_column_selector(dtype_include=np.number)),
    (make_column_selector(pattern="^(?:color|city)$"),
     make_column_selector(pattern="^(?:age|income)$")),
    (make_column_selector(dtype_include=[object]), make_column_selector(dtype_include=float)),
], ids=["object", "strings-and-np.number", "pattern", "lists-and-float"])
def test_make_column_selector_pipelines_publish_and_serve(selectors, tmp_path, serve):
    X, y = customers()
    strings, numbers = selectors
    model = make_pipeline(
        make_column_transformer((OneHotEncoder(handle_unknown="ignore"), strings),
                                (StandardScaler(), numbers)),
        LogisticRegression(max_iter=1000)).fit(X, y)
    # served from the pickle: the unpickler's allowlist is what is tested
    card, where = _publish(model, tmp_path, "selected", sample=X.head(30), onnx=False)
    served = safe_pickle.load(str(where / "model.joblib"))  # the app's own loader
    assert served[0].transformers[0][2].__dict__ == strings.__dict__
    notebook = X.head(12)
    response = serve(MODEL_DIR=where).post({"dataframe_records": records(notebook),
                                            "probabilities": True})
    assert response.status_code == 200, response.body
    body = body_of(response)
    assert body["predictions"] == model.predict(notebook).tolist()
    assert np.allclose(body["probabilities"], model.predict_proba(notebook), rtol=1e-12)


def test_a_value_only_type_is_never_created_or_called(tmp_path):
    """builtins.object is allowed as make_column_selector's dtype filter;
    an artifact that calls it, creates one or sets its state is refused."""
    import pickle
    from chalicelib.http.errors import ModelLoadError
    path = tmp_path / "m.joblib"
    for stream, refusal in [
            (b"\x80\x02cbuiltins\nobject\n)R.", "calls builtins.object"),          # object()
            (b"\x80\x02cbuiltins\nint\nX\x02\x00\x00\x0042\x85R.", "calls builtins.int"),
            (b"\x80\x02cbuiltins\nobject\n)\x81.", "creates builtins.object"),     # NEWOBJ
    ]:
        path.write_bytes(stream)
        with pytest.raises(ModelLoadError, match=refusal):
            safe_pickle.load(str(path))
    for value in (object, int, float, bool):
        path.write_bytes(pickle.dumps(value, protocol=2))
        assert safe_pickle.load(str(path)) is value  # as a value it loads
    assert not safe_pickle.is_allowed_class(object)


def test_target_encoder_maps_an_unseen_category_to_the_target_mean(tmp_path, serve):
    X, _ = customers()
    rng = np.random.default_rng(1)
    y = (X["city"].map({c: i for i, c in enumerate(CITIES)}) * 10.0
         + X["age"] * 0.5 + rng.normal(0, 1, len(X)))
    model = make_pipeline(
        make_column_transformer((TargetEncoder(cv=KFold(5)), ["color", "city"]),
                                (StandardScaler(), ["age", "income"])),
        Ridge()).fit(X, y)
    # served from the pickle: the card's rule for unseen categories is tested
    card, where = _publish(model, tmp_path, "target", sample=X.head(30), onnx=False)
    city = next(f for f in card["features"] if f["name"] == "city")
    assert city["categories"] == CITIES and city["unknown_categories"] == "ignore"
    unseen = X.head(3).assign(city=["Madrid", "Oslo", "Tokyo"])
    api = serve(MODEL_DIR=where)
    response = api.post({"dataframe_records": records(unseen)})
    assert response.status_code == 200, response.body
    expected = model.predict(unseen)
    assert np.allclose(body_of(response)["predictions"], expected, rtol=1e-12)
    # scikit-learn's rule: an unseen category is encoded as the target mean
    encoder = model[0].named_transformers_["targetencoder"]
    assert np.allclose(encoder.transform(unseen[["color", "city"]])[[0, 2], 1],
                       encoder.target_mean_)


def _frame_with_gaps():
    X, y = customers()
    X = X.copy()
    X.loc[0, "age"] = np.nan              # the first row has a missing value
    X.loc[[3, 7], "income"] = np.nan
    X.loc[[1, 5], "city"] = None
    return X, y


def _imputed_pipeline(X, y):
    """Strings imputed then one-hot encoded, numbers imputed then scaled."""
    return make_pipeline(
        make_column_transformer(
            (make_pipeline(SimpleImputer(strategy="most_frequent"),
                           OneHotEncoder(handle_unknown="ignore")), ["color", "city"]),
            (make_pipeline(SimpleImputer(), StandardScaler()), ["age", "income"])),
        LogisticRegression(max_iter=1000)).fit(X, y)


def test_a_sample_with_missing_values_in_its_first_row(tmp_path, serve):
    X, y = _frame_with_gaps()
    model = _imputed_pipeline(X, y)
    sample = tmp_path / "sample.csv"
    X.head(40).to_csv(sample, index=False)
    card, where = _publish(model, tmp_path, "gaps", sample=str(sample))
    example = card["example"]["instances"][0]
    assert None not in example.values()
    # the first complete row of the sample, not the first row
    assert example == records(X.iloc[[2]])[0]
    age = next(f for f in card["features"] if f["name"] == "age")
    assert age["range"] == [X.head(40)["age"].min(), X.head(40)["age"].max()]
    response = serve(MODEL_DIR=where).post(card["example"])
    assert response.status_code == 200, response.body
    assert body_of(response)["predictions"] == model.predict(X.iloc[[2]]).tolist()


def test_a_sample_without_one_complete_row(tmp_path, serve):
    """Every row misses something: the example is made from each column's
    first value, and still predicts."""
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=60), "b": rng.normal(size=60)})
    y = X["a"] * 2 - X["b"]
    X.loc[X.index % 2 == 0, "a"] = np.nan
    X.loc[X.index % 2 == 1, "b"] = np.nan
    model = HistGradientBoostingRegressor(max_iter=20, random_state=0).fit(X, y)
    card, where = _publish(model, tmp_path, "sparse", sample=X.head(10))
    example = card["example"]["instances"][0]
    assert example == {"a": X["a"].dropna().iloc[0], "b": X["b"].dropna().iloc[0]}
    response = serve(MODEL_DIR=where).post(card["example"])
    assert response.status_code == 200, response.body
    frame = pd.DataFrame([example])
    assert np.allclose(body_of(response)["predictions"], model.predict(frame), rtol=1e-9)


def test_the_report_says_what_the_card_says_of_missing_values(tmp_path):
    X, y = _frame_with_gaps()
    model = _imputed_pipeline(X, y)
    report = []
    card, _ = _publish(model, tmp_path, "gaps", sample=X.head(40), onnx=False, report=report)
    assert card["accepts_missing_values"] is True  # the imputers fill every column
    assert "; missing values accepted;" in report[1]


REVIEWS = ["great product, works well", "I love it", "excellent and fast delivery",
           "terrible, broke after a day", "I hate it", "slow delivery and rude support"]


def test_a_text_model_takes_its_name_from_a_one_column_sample(tmp_path, serve):
    texts = [REVIEWS[i % 6] + (" really" if i % 4 == 0 else "") for i in range(60)]
    labels = ["positive" if i % 6 < 3 else "negative" for i in range(60)]
    model = make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(texts, labels)
    report = []
    card, where = _publish(model, tmp_path, "reviews", sample=pd.DataFrame({"review": texts[:10]}),
                           onnx=False, report=report)
    assert card["features"] == [{"name": "review", "type": "text"}]
    assert card["example"] == {"instances": [texts[0]]}
    assert report[1].startswith("inferred: 1 feature from a text vectorizer as the first step")
    assert not any("--features a,b,c" in line for line in report)
    response = serve(MODEL_DIR=where).post({"dataframe_records": [{"review": t} for t in texts[:8]]})
    assert response.status_code == 200, response.body
    assert body_of(response)["predictions"] == model.predict(texts[:8]).tolist()
    # several columns: which one holds the texts is the user's to say
    both = pd.DataFrame({"review": texts[:5], "label": labels[:5]})
    with pytest.raises(PublishError, match="only the text column, or name that column"):
        _publish(model, tmp_path, "two", sample=both)
    card, _ = _publish(model, tmp_path, "named", sample=both, features=["review"], onnx=False)
    assert card["features"] == [{"name": "review", "type": "text"}]
