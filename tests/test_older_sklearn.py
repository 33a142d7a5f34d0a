"""A model pickled by an older scikit-learn: its version read from the
pickle without running it; published in an environment of that release
(slow: the environment is built once and cached under ~/.cache); served by
ONNX Runtime without ALLOW_VERSION_SKEW, answering what that release
answered; refused with the reason and the choices when it cannot be."""
import json
import os
import pickle
import subprocess

import joblib
import numpy as np
import pytest
import sklearn
import sklearn.base
from sklearn.datasets import load_diabetes
from sklearn.ensemble import RandomForestClassifier
from sklearn.svm import SVR

from publisher import build_env, saved_version
from publisher.publish import PublishError, publish
from tests.conftest import PROJECT_DIR, body_of

DIABETES = load_diabetes()
# From October 2022 to September 2025: numpy 1 (1.1 to 1.3, 1.1.3 and 1.2.2 on
# Python 3.11) and numpy 2 (1.4.2 on).
RELEASES = ("1.1.3", "1.2.2", "1.3.2", "1.4.2", "1.6.1", "1.7.2")
COMPILED = ("numeric_pipeline", "dataframe_strings", "forest", "gradient_boosting")


def dump_as(model, path, version, **kwargs):
    """``model`` pickled as if by scikit-learn ``version`` (the version every
    estimator writes into its state)."""
    real = sklearn.base.__version__
    sklearn.base.__version__ = version
    try:
        joblib.dump(model, path, **kwargs)
    finally:
        sklearn.base.__version__ = real


@pytest.fixture(scope="module")
def forest_model():
    X = np.random.default_rng(0).normal(size=(120, 4))
    return RandomForestClassifier(n_estimators=5, random_state=0).fit(X, X[:, 0] > 0)


# -- the version, from the opcodes ------------------------------------------

@pytest.mark.parametrize("kwargs", [{}, {"compress": 3}, {"compress": ("lzma", 1)},
                                    {"protocol": 2}])
def test_version_is_read_from_joblib_files_of_every_kind(tmp_path, forest_model, kwargs):
    path = tmp_path / "m.joblib"
    dump_as(forest_model, path, "1.4.2", **kwargs)
    assert saved_version.read(path) == "1.4.2"
    assert {"sklearn", "numpy"} <= saved_version.walk(path)["modules"]


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_version_is_read_from_plain_pickles(tmp_path, forest_model, protocol):
    path = tmp_path / "m.pkl"
    real = sklearn.base.__version__
    sklearn.base.__version__ = "1.6.1"
    try:
        path.write_bytes(pickle.dumps(forest_model, protocol=protocol))
    finally:
        sklearn.base.__version__ = real
    assert saved_version.read(path) == "1.6.1"


def test_the_reader_runs_nothing_the_pickle_names(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pkl"
    path.write_bytes(b"cos\nsystem\n(S'touch %s'\ntR(dS'_sklearn_version'\nS'1.4.2'\nsb."
                     % str(marker).encode())
    assert saved_version.walk(path) == {"versions": {"1.4.2"}, "modules": {"os"}}
    assert not marker.exists()


def test_no_version_when_no_estimator_or_no_pickle(tmp_path):
    path = tmp_path / "a.joblib"
    joblib.dump(np.arange(5.0), path)
    assert saved_version.read(path) is None
    path.write_bytes(b"not a pickle at all")
    assert saved_version.read(path) is None
    with pytest.raises(saved_version.UnreadableStream):
        saved_version.walk(path)


def test_a_model_of_this_release_reads_as_this_release(tmp_path, forest_model):
    joblib.dump(forest_model, tmp_path / "m.joblib")
    assert saved_version.read(tmp_path / "m.joblib") == sklearn.__version__


# -- which environments exist -------------------------------------------------

def test_build_environment_pins_are_exact_and_share_the_serving_onnx_stack():
    pins = dict(p.split("==") for p in build_env.requirements("1.4.2"))
    assert pins["scikit-learn"] == "1.4.2" and pins["numpy"].startswith("2.")
    with open(os.path.join(PROJECT_DIR, "requirements-dev.txt")) as f:
        assert "onnx==%s\n" % pins["onnx"] in f.read()
    with open(os.path.join(PROJECT_DIR, "requirements.txt")) as f:
        assert "onnxruntime==%s\n" % pins["onnxruntime"] in f.read()


@pytest.mark.parametrize("version", ["1.1.2", "1.4.1", "1.0.2", "0.24.2", "2.0", "nonsense"])
def test_releases_without_a_build_environment_say_which_exist(version):
    with pytest.raises(build_env.NoEnvironment,
                       match="known: 1.1.x \\(from 1.1.3\\), 1.2.x \\(from 1.2.0\\), .*"
                             "1.4.x \\(from 1.4.2\\)"):
        build_env.release_of(version)


@pytest.mark.parametrize("version, pythons", [
    ("1.1.3", ("3.11", "3.10")), ("1.2.2", ("3.11", "3.10")), ("1.3.0", ("3.11", "3.10")),
    ("1.3.2", ("3.12", "3.11", "3.10")), ("1.7.2", ("3.12", "3.11", "3.10"))])
def test_each_release_is_built_on_a_python_it_has_wheels_for(version, pythons):
    assert build_env.pythons(version) == pythons


def test_releases_before_numpy_2_get_numpy_1():
    for version, numpy in (("1.1.3", "1.26.4"), ("1.3.2", "1.26.4"), ("1.4.2", "2.0.2"),
                           ("1.7.2", "2.2.6")):
        assert "numpy==%s" % numpy in build_env.requirements(version)


def test_a_model_without_a_build_environment_is_refused_with_the_two_choices(tmp_path):
    model = SVR().fit(DIABETES.data[:50], DIABETES.target[:50])
    path = tmp_path / "old.joblib"
    dump_as(model, path, "1.0.2")
    with pytest.raises(PublishError) as refused:
        publish(str(path), name="old", version="1", out_dir=str(tmp_path / "out"))
    message = str(refused.value)
    assert "saved with scikit-learn 1.0.2" in message
    assert "no build environment is known for scikit-learn 1.0.2" in message
    assert "retrain" in message and "ALLOW_VERSION_SKEW=true at your own risk" in message
    assert not (tmp_path / "out").exists()
    card = publish(str(path), name="old", version="1", out_dir=str(tmp_path / "out"),
                   force=True)
    assert card["versions"]["scikit-learn"] == "1.0.2" and card["runtime"] == "scikit-learn"


def test_a_misnamed_cython_module_resolves_only_to_the_class_it_names_there():
    from chalicelib.safeload import safe_pickle
    from chalicelib.safeload.safe_pickle import ModelLoadError
    from sklearn._loss import _loss
    # This release names its loss classes by their real module: "_loss" names nothing here.
    assert _loss.CyHalfBinomialLoss.__module__ == "sklearn._loss._loss"
    for name in ("CyHalfBinomialLoss", "CyLossFunction", "system", "__builtins__"):
        with pytest.raises(ModelLoadError):
            safe_pickle.resolve("_loss", name)


# -- the slow tier: real environments of older releases ---------------------

def environment(version):
    """The release's build environment (cached), or a skip saying which
    Python is missing."""
    try:
        build_env.python_for(version)
    except build_env.NoEnvironment as exc:
        pytest.skip(str(exc))
    return build_env.ensure(version)[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """``trained(version)``: the directory of the models that release trained."""
    made = {}

    def _trained(version):
        if version not in made:
            python = environment(version)
            out = tmp_path_factory.mktemp("sklearn-%s" % version)
            result = subprocess.run([python, "-m", "tools.fixtures.older_sklearn", str(out)],
                                    cwd=PROJECT_DIR, capture_output=True, text=True,
                                    timeout=600)
            assert result.returncode == 0, result.stderr
            made[version] = out
        return made[version]
    return _trained


@pytest.mark.slow
@pytest.mark.parametrize("family", COMPILED)
@pytest.mark.parametrize("version", RELEASES)
def test_older_model_publishes_and_serves_its_own_answers_without_skew(
        serve, monkeypatch, tmp_path, trained, version, family):
    models = trained(version)
    answers = json.loads((models / (family + ".json")).read_text())
    assert answers["scikit-learn"] == version != sklearn.__version__
    artifact = models / (family + ".joblib")
    assert saved_version.read(artifact) == version

    out = tmp_path / "model"
    card = publish(str(artifact), name=family, version="1", out_dir=str(out),
                   sample=str(models / (family + ".csv")))
    assert card["runtime"] == "onnxruntime"
    assert card["versions"]["scikit-learn"] == version
    assert "scikit-learn==%s" % version in card["build_environment"]["packages"]
    assert card["onnx"]["agreement"]["rows"] > 2000
    # Rechecked here on the generated and example rows (the exporter's own
    # check in the environment adds edge and missing-value blocks to those).
    assert 2000 < card["build_environment"]["rechecked_here"]["rows"] <= \
        card["onnx"]["agreement"]["rows"]
    assert card["audit"]["refused"] == 0
    assert (out / "model.joblib").read_bytes() == artifact.read_bytes()

    monkeypatch.delenv("ALLOW_VERSION_SKEW", raising=False)
    api = serve(MODEL_DIR=out)
    records = answers["records"]
    rows = [list(r.values()) for r in records]
    rtol = card["onnx"]["agreement"]["rtol"]
    for payload in ({"instances": rows}, {"dataframe_records": records}):
        response = api.post(dict(payload, probabilities="probabilities" in answers))
        assert response.status_code == 200, response.body
        assert response.headers["X-Model-Runtime"] == "onnxruntime"
        body = body_of(response)
        if card["task"] == "regression":
            assert body["predictions"] == pytest.approx(answers["predictions"], rel=rtol)
        else:
            assert body["predictions"] == answers["predictions"]
            assert np.allclose(body["probabilities"], answers["probabilities"], rtol=0,
                               atol=rtol)
    shown = body_of(api.get("/model"))
    assert shown["versions"]["scikit-learn"] == version


@pytest.mark.slow
@pytest.mark.parametrize("version", RELEASES)
def test_older_model_that_does_not_compile_is_refused_with_the_reason_and_the_choices(
        tmp_path, trained, version):
    artifact = trained(version) / "text.joblib"
    result = subprocess.run([os.path.join(os.path.dirname(os.sys.executable), "python"),
                             "-m", "publisher.publish", str(artifact), "--name", "t",
                             "--version", "1", "--out", str(tmp_path / "out")],
                            cwd=PROJECT_DIR, capture_output=True, text=True, timeout=900)
    assert result.returncode == 2, result.stderr
    assert "saved with scikit-learn %s" % version in result.stderr
    assert "text models are not compiled" in result.stderr
    assert "retrain" in result.stderr and "ALLOW_VERSION_SKEW=true" in result.stderr
    assert not (tmp_path / "out").exists()
