"""Bring your own model: publish a different estimator and serve it end to
end; the refusals of ``publisher.publish``; the reproducible demo model."""
import hashlib
import json
import os
import subprocess
import sys

import joblib
import numpy as np
import pytest
import sklearn.base
from sklearn.datasets import load_diabetes, load_iris
from sklearn.ensemble import GradientBoostingRegressor, HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVR

from publisher.publish import PublishError, publish
from publisher.train import FEATURES, compare
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
    return subprocess.run([sys.executable, "-m", "publisher.publish", *map(str, args)],
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

    # compiled to ONNX (a tree ensemble: float32, as scikit-learn's trees
    # evaluate it), so values agree within the card's stated tolerance
    assert card["runtime"] == "onnxruntime" and card["onnx"]["agreement"]["input"] == "float"
    rtol = card["onnx"]["agreement"]["rtol"]
    api = serve(MODEL_DIR=out)
    rows = DIABETES.data[:5]
    records = [dict(zip(DIABETES.feature_names, r)) for r in rows.tolist()]
    for payload in ({"instances": rows.tolist()}, {"dataframe_records": records}):
        response = api.post(payload)
        assert response.status_code == 200, response.body
        assert response.headers["X-Model-Runtime"] == "onnxruntime"
        assert body_of(response)["predictions"] == pytest.approx(model.predict(rows).tolist(),
                                                                  rel=rtol)
    refused = api.post({"instances": rows.tolist(), "probabilities": True})
    assert refused.status_code == 422
    assert "has no predict_proba" in body_of(refused)["Message"]


def test_features_inferred_from_n_features_in(tmp_path, regressor_file):
    path, _ = regressor_file
    card = publish(str(path), name="d", version="1", out_dir=str(tmp_path / "m"))
    assert [f["name"] for f in card["features"]] == ["x%d" % i for i in range(10)]


def test_wrong_feature_count_is_refused(tmp_path, regressor_file):
    path, _ = regressor_file
    result = run_publish(path, "--name", "d", "--version", "1", "--features", "a,b", "--out", tmp_path)
    assert result.returncode == 2
    assert "names 2 features but the estimator expects 10" in result.stderr
    assert not (tmp_path / "model.json").exists()


def test_estimator_from_another_sklearn_version_is_refused_unless_forced(tmp_path, monkeypatch):
    model = SVR().fit(DIABETES.data[:50], DIABETES.target[:50])
    # a release with no build environment (tests/test_older_sklearn.py has those)
    monkeypatch.setattr(sklearn.base, "__version__", "1.0.2")
    path = tmp_path / "old.joblib"
    joblib.dump(model, path)
    monkeypatch.undo()
    with pytest.raises(PublishError, match="saved with scikit-learn 1.0.2, the Lambda ships"):
        publish(str(path), name="old", version="1", out_dir=str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()
    card = publish(str(path), name="old", version="1", out_dir=str(tmp_path / "out"), force=True)
    assert card["versions"]["scikit-learn"] == "1.0.2"


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


def run_train(*args, env=None, unpinned=False):
    """``python -m publisher.train``; ``unpinned`` imports numpy first, so the BLAS
    kernel is whatever ``OPENBLAS_CORETYPE`` in ``env`` (or the CPU) picks."""
    command = [sys.executable, "-m", "publisher.train"]
    if unpinned:
        command = [sys.executable, "-c",
                   "import sys, numpy, runpy; sys.argv = ['publisher.train'] + sys.argv[1:]; "
                   "runpy.run_module('publisher.train', run_name='__main__')"]
    return subprocess.run([*command, *map(str, args)], cwd=PROJECT_DIR, capture_output=True,
                          text=True, env={**os.environ, **(env or {})})


def test_demo_model_rebuild_is_equivalent_to_the_committed_one(tmp_path):
    """The promise that holds on any x86-64 machine: same predictions on all
    of iris, probabilities and parameters within the stated tolerance, the
    card identical but for sha256 and created_at."""
    result = run_train("--out", tmp_path)
    assert result.returncode == 0, result.stderr
    problems, largest = compare(BUNDLED_MODEL, str(tmp_path))
    assert problems == []
    assert max(largest.values()) <= 1e-12


@pytest.mark.parametrize("kernel_pair", [("Sandybridge", "Zen"), ("Haswell", "Prescott")])
def test_pinned_rebuild_is_bit_identical_whatever_kernel_the_cpu_would_pick(tmp_path, kernel_pair):
    """Same machine, same run: the pin, not the CPU, decides the kernel."""
    digests = []
    for kernel in kernel_pair:
        out = tmp_path / kernel
        result = run_train("--out", out, env={"OPENBLAS_CORETYPE": kernel})
        assert result.returncode == 0, result.stderr
        digests.append(hashlib.sha256((out / "model.joblib").read_bytes()).hexdigest())
    assert digests[0] == digests[1]


def test_unpinned_kernels_really_differ_in_bits_and_stay_equivalent(tmp_path):
    """The control: without the pin, two kernels give other bits (so the pin
    is what makes the test above pass), yet the same model."""
    digests = {}
    for kernel in ("Sandybridge", "Haswell"):
        out = tmp_path / kernel
        result = run_train("--out", out, env={"OPENBLAS_CORETYPE": kernel}, unpinned=True)
        assert result.returncode == 0, result.stderr
        assert "not pinned" in result.stderr
        digests[kernel] = hashlib.sha256((out / "model.joblib").read_bytes()).hexdigest()
    assert digests["Sandybridge"] != digests["Haswell"]
    assert compare(str(tmp_path / "Sandybridge"), str(tmp_path / "Haswell"))[0] == []


def test_a_rebuild_that_differs_in_bits_does_not_replace_the_committed_artifact(tmp_path):
    committed = tmp_path / "model"
    result = run_train("--out", committed, "--created-at", "2026-01-01T00:00:00+00:00",
                       env={"OPENBLAS_CORETYPE": "Sandybridge"}, unpinned=True)
    assert result.returncode == 0, result.stderr
    before = {f: (committed / f).read_bytes() for f in ("model.joblib", "model.json")}
    result = run_train("--out", committed)
    assert result.returncode == 0, result.stderr
    assert "equivalent within" in result.stdout and "kept the existing artifact" in result.stdout
    assert {f: (committed / f).read_bytes() for f in before} == before
    result = run_train("--out", committed, "--replace")
    assert result.returncode == 0 and (committed / "model.joblib").read_bytes() != before["model.joblib"]


def test_a_rebuild_that_is_not_equivalent_is_refused(tmp_path):
    committed = tmp_path / "model"
    assert run_train("--out", committed).returncode == 0
    other = tmp_path / "other.joblib"
    iris = load_iris()
    y = np.asarray(iris.target_names)[iris.target]
    joblib.dump(make_pipeline(StandardScaler(), LogisticRegression(C=0.01)).fit(iris.data, y), other)
    card = json.loads((committed / "model.json").read_text())
    publish(str(other), name=card["name"], version=card["version"], features=FEATURES,
            out_dir=str(committed), metrics=card["metrics"], created_at=card["created_at"],
            force=True)
    before = (committed / "model.joblib").read_bytes()
    result = run_train("--out", committed)
    assert result.returncode == 1
    assert "NOT equivalent" in result.stderr and "coef_ differ beyond" in result.stderr
    assert (committed / "model.joblib").read_bytes() == before


def test_a_model_that_needs_an_unpinned_package_is_refused_with_its_name(tmp_path, monkeypatch):
    """The Lambda ships requirements.txt only: a FunctionTransformer calling
    into an installed but unpinned distribution (here jsonschema, a dev
    tool) would load in the notebook and fail on Lambda."""
    import jsonschema.validators
    from sklearn.preprocessing import FunctionTransformer
    model = make_pipeline(FunctionTransformer(jsonschema.validators.validator_for,
                                              kw_args={"default": None}), LogisticRegression())
    path = tmp_path / "needs.joblib"
    joblib.dump(model, path)
    # trusted: past the allowlist and the audit, to the pins
    with pytest.raises(PublishError, match=r"needs jsonschema \(module jsonschema\), which "
                                           r"requirements.txt does not pin"):
        publish(str(path), name="x", version="1", out_dir=str(tmp_path / "out"), trust=True)
    assert not (tmp_path / "out").exists()
