"""Bring your own model: publish a different estimator and serve it end to
end; the refusals of ``model.publish``; the reproducible demo model."""
import hashlib
import json
import os
import subprocess
import sys

import joblib
import numpy as np
import pytest
import sklearn.base
from sklearn.datasets import load_diabetes
from sklearn.ensemble import GradientBoostingRegressor, HistGradientBoostingClassifier
from sklearn.svm import SVR

from model.publish import PublishError, publish
from tests.conftest import BUNDLED_MODEL, PROJECT_DIR, body_of

DIABETES = load_diabetes()


@pytest.fixture(scope="module")
def regressor_file(tmp_path_factory):
    model = GradientBoostingRegressor(n_estimators=50, random_state=0)
    model.fit(DIABETES.data, DIABETES.target)
    path = tmp_path_factory.mktemp("byo") / "regressor.joblib"
    joblib.dump(model, path)
    return path, model


def run_publish(*args):
    return subprocess.run([sys.executable, "-m", "model.publish", *map(str, args)],
                          cwd=PROJECT_DIR, capture_output=True, text=True)


def test_bring_your_own_regressor_end_to_end(serve, regressor_file, tmp_path):
    path, model = regressor_file
    out = tmp_path / "model"
    result = run_publish(path, "--name", "diabetes", "--version", "2.0.0",
                         "--features", ",".join(DIABETES.feature_names), "--out", out)
    assert result.returncode == 0, result.stderr
    card = json.loads((out / "model.json").read_text())
    assert card["task"] == "regression" and card["classes"] is None
    assert [f["name"] for f in card["features"]] == DIABETES.feature_names
    assert card["sha256"] == hashlib.sha256((out / "model.joblib").read_bytes()).hexdigest()
    assert card["versions"]["scikit-learn"] == sklearn.__version__

    api = serve(MODEL_DIR=out)
    rows = DIABETES.data[:5]
    records = [dict(zip(DIABETES.feature_names, r)) for r in rows.tolist()]
    for payload in ({"instances": rows.tolist()}, {"dataframe_records": records}):
        response = api.post(payload)
        assert response.status_code == 200, response.body
        assert body_of(response)["predictions"] == model.predict(rows).tolist()
    refused = api.post({"instances": rows.tolist(), "probabilities": True})
    assert refused.status_code == 422
    assert "has no predict_proba" in body_of(refused)["Message"]


def test_features_inferred_from_n_features_in(tmp_path, regressor_file):
    path, _ = regressor_file
    card = publish(str(path), name="d", version="1", out_dir=str(tmp_path))
    assert [f["name"] for f in card["features"]] == ["x%d" % i for i in range(10)]


def test_wrong_feature_count_is_refused(tmp_path, regressor_file):
    path, _ = regressor_file
    result = run_publish(path, "--name", "d", "--version", "1", "--features", "a,b", "--out", tmp_path)
    assert result.returncode == 2
    assert "names 2 features but the estimator expects 10" in result.stderr
    assert not (tmp_path / "model.json").exists()


def test_estimator_from_another_sklearn_version_is_refused_unless_forced(tmp_path, monkeypatch):
    model = SVR().fit(DIABETES.data[:50], DIABETES.target[:50])
    monkeypatch.setattr(sklearn.base, "__version__", "1.5.0")
    path = tmp_path / "old.joblib"
    joblib.dump(model, path)
    monkeypatch.undo()
    with pytest.raises(PublishError, match="saved with scikit-learn 1.5.0 but the Lambda ships"):
        publish(str(path), name="old", version="1", out_dir=str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()
    card = publish(str(path), name="old", version="1", out_dir=str(tmp_path / "out"), force=True)
    assert card["versions"]["scikit-learn"] == "1.5.0"


def test_non_estimator_is_refused(tmp_path):
    path = tmp_path / "thing.joblib"
    joblib.dump(np.arange(3), path)
    result = run_publish(path, "--name", "x", "--version", "1", "--out", tmp_path / "out")
    assert result.returncode == 2
    assert "refused" in result.stderr


def test_missing_values_support_is_detected_and_served(serve, tmp_path):
    X = np.array([[0.0, 1.0], [1.0, np.nan], [2.0, 0.5], [np.nan, 2.0]] * 10)
    y = np.array([0, 1, 0, 1] * 10)
    path = tmp_path / "hgb.joblib"
    joblib.dump(HistGradientBoostingClassifier(max_iter=5).fit(X, y), path)
    card = publish(str(path), name="hgb", version="1", features=["a", "b"], out_dir=str(tmp_path / "m"))
    assert card["accepts_missing_values"] is True
    api = serve(MODEL_DIR=tmp_path / "m")
    ok = api.post('{"instances": [[1.0, NaN], [null, 2.0]]}')
    assert ok.status_code == 200, ok.body
    assert api.post('{"instances": [[1.0, Infinity]]}').status_code == 422
    assert api.post("a,b\n1.0,\n", content_type="text/csv").status_code == 200


def test_demo_model_rebuilds_byte_for_byte(tmp_path):
    result = subprocess.run([sys.executable, "-m", "model.train", "--out", str(tmp_path)],
                            cwd=PROJECT_DIR, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    bundled = json.loads(open(os.path.join(BUNDLED_MODEL, "model.json")).read())
    rebuilt = json.loads((tmp_path / "model.json").read_text())
    assert rebuilt["sha256"] == bundled["sha256"]
    assert (tmp_path / "model.joblib").read_bytes() == open(os.path.join(BUNDLED_MODEL, "model.joblib"), "rb").read()
    assert {k: v for k, v in rebuilt.items() if k != "created_at"} == \
        {k: v for k, v in bundled.items() if k != "created_at"}
