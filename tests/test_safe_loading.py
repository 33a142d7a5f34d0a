"""Safe model loading: the restricted unpickler under joblib.load.

Every artifact of the malicious corpus (``tools/fixtures/malicious.py``) is refused,
without side effects, by the loader, by ``python -m publisher.publish`` and by
the app loading ``MODEL_DIR`` (503 saying why); legitimate models load and
predict exactly as with plain ``joblib.load``; ``TRUST_MODEL_PICKLE=true``
is the loud opt-out.
"""
import concurrent.futures
import fractions
import json
import logging
import os
import re
import subprocess
import sys
import textwrap
import time

import joblib
import numpy as np
import pytest
import sklearn
from sklearn.compose import ColumnTransformer
from sklearn.datasets import make_classification, make_regression
from sklearn.ensemble import (GradientBoostingRegressor, HistGradientBoostingClassifier,
                              RandomForestClassifier)
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from chalicelib.safeload import safe_pickle
from chalicelib.schema.card import build_card, sha256_of
from chalicelib.http.errors import ModelLoadError
from chalicelib.safeload.loading import TRUST_MODEL_PICKLE_ENV, load_artifact
from tools.fixtures import malicious
from tests.conftest import BUNDLED_MODEL, IRIS_ROWS, PROJECT_DIR, body_of

CASE_NAMES = list(malicious.CASES)
# Payloads that start a child process (Popen) would land a moment later.
ASYNC_GRACE_S = 0.5
# The CLI is run as a real subprocess on these (one per kind of container);
# every case goes through publisher.publish.main() in-process.
CLI_CASES = ["os.system", "object array element (joblib's nested pickle)",
             "joblib legacy NDArrayWrapper (numpy.load allow_pickle of a companion file)",
             "joblib pre-0.10 'ZF' format (unrestricted ZipNumpyUnpickler)",
             "copyreg._reconstructor with an os-owned class (subprocess.Popen)"]


def expected_refusal(name):
    refuses = malicious.CASES[name][1]
    if refuses is None:
        return "artifact is in joblib's pre-0.10 format"
    return "artifact references %s, which is not on the allowlist of the scientific stack" % refuses


def write_card(model_dir, n_features=4):
    """A card that matches the artifact (sha256, this runtime's versions), so
    that only the unpickler can stop it."""
    artifact = os.path.join(model_dir, "model.joblib")
    card = build_card(
        name="suspect", version="1", task="classification",
        feature_names=["f%d" % i for i in range(n_features)], classes=None,
        accepts_missing=False, sha256=sha256_of(artifact),
        versions={"scikit-learn": sklearn.__version__, "numpy": np.__version__,
                  "joblib": joblib.__version__},
        estimator="?", created_at="2026-01-01T00:00:00+00:00")
    with open(os.path.join(model_dir, "model.json"), "w") as f:
        json.dump(card, f)


@pytest.fixture
def case_dir(tmp_path):
    """``case_dir(name)`` -> (model_dir, marker) with the case written."""
    def _build(name):
        d = tmp_path / "model"
        marker = tmp_path / "marker"
        malicious.build(name, d, marker)
        write_card(str(d))
        return d, marker
    return _build


def assert_no_side_effect(*markers, grace=False):
    if grace:
        time.sleep(ASYNC_GRACE_S)
    for marker in markers:
        assert not os.path.exists(marker), "payload ran: %s exists" % marker


# --------------------------------------------------------------------------
# The corpus is real: plain joblib.load runs every payload.


def test_every_payload_runs_under_plain_joblib_load(tmp_path):
    """Control: without the allowlist each artifact does create its marker
    (in a child process), so "no marker" below means "refused", not "inert"."""
    script = textwrap.dedent("""
        import json, sys, warnings, joblib
        warnings.simplefilter("ignore")
        from tools.fixtures import malicious
        built = malicious.build_all(sys.argv[1])
        for name, d, marker, _ in built:
            try:
                joblib.load(d + "/model.joblib")
            except Exception:
                pass
        print(json.dumps([(name, marker) for name, d, marker, _ in built]))
    """)
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path)], cwd=PROJECT_DIR,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    built = json.loads(result.stdout.strip().splitlines()[-1])
    deadline = time.time() + 5
    while time.time() < deadline and not all(os.path.exists(m) for _, m in built):
        time.sleep(0.05)
    assert [n for n, m in built if not os.path.exists(m)] == []
    assert len(built) == len(CASE_NAMES) >= 30


# --------------------------------------------------------------------------
# Refused by the loader, by publisher.publish and by the app.


@pytest.mark.parametrize("name", CASE_NAMES)
def test_loader_refuses_without_side_effects(case_dir, name):
    d, marker = case_dir(name)
    with pytest.raises(ModelLoadError) as info:
        load_artifact(str(d / "model.joblib"))
    assert expected_refusal(name) in str(info.value)
    assert_no_side_effect(marker, grace="Popen" in name)


@pytest.mark.parametrize("name", CASE_NAMES)
def test_app_answers_503_and_says_why(serve, case_dir, name):
    d, marker = case_dir(name)
    api = serve(MODEL_DIR=d)
    for response in (api.post({"instances": IRIS_ROWS}), api.get("/health"), api.get("/model")):
        assert response.status_code == 503, response.body
        body = body_of(response)
        assert body["Code"] == "ServiceUnavailable"
        assert body["Message"].startswith("model not available: ")
        assert expected_refusal(name) in body["Message"]
    assert_no_side_effect(marker, grace="Popen" in name)


@pytest.mark.parametrize("name", CASE_NAMES)
def test_publish_refuses_without_side_effects(case_dir, capsys, name):
    """publisher.publish's command line, in-process: exit code 2, the reason on
    stderr, nothing written, no payload run."""
    from publisher.publish import main
    d, marker = case_dir(name)
    out = d.parent / "out"
    code = main([str(d / "model.joblib"), "--name", "x", "--version", "1", "--out", str(out)])
    assert code == 2
    assert "publish: refused: " + expected_refusal(name) in capsys.readouterr().err
    assert not out.exists()
    assert_no_side_effect(marker, grace="Popen" in name)


def test_publish_cli_subprocess_refuses(tmp_path):
    """``python -m publisher.publish`` as a real command on one case per kind
    of container (run concurrently: each start imports scikit-learn)."""
    def publish(name):
        d = tmp_path / ("case%d" % CLI_CASES.index(name))
        marker = str(d) + ".marker"
        malicious.build(name, d, marker)
        out = str(d / "out")
        result = subprocess.run(
            [sys.executable, "-m", "publisher.publish", str(d / "model.joblib"),
             "--name", "x", "--version", "1", "--out", out],
            cwd=PROJECT_DIR, capture_output=True, text=True, timeout=120)
        return name, result, out, marker

    with concurrent.futures.ThreadPoolExecutor(len(CLI_CASES)) as pool:
        results = list(pool.map(publish, CLI_CASES))
    for name, result, out, _ in results:
        assert result.returncode == 2, (name, result.stdout, result.stderr)
        assert "publish: refused: " + expected_refusal(name) in result.stderr, (name, result.stderr)
        assert "Traceback" not in result.stderr
        assert not os.path.exists(out)
    assert_no_side_effect(*[marker for *_, marker in results], grace=True)


def test_refusal_happens_before_any_import(monkeypatch):
    """find_class decides on the names alone: a refused module is never
    imported (importing can itself run code)."""
    monkeypatch.delitem(sys.modules, "antigravity", raising=False)
    monkeypatch.delitem(sys.modules, "this", raising=False)
    for module in ("antigravity", "this"):
        with pytest.raises(ModelLoadError):
            safe_pickle.resolve(module, "x")
        assert module not in sys.modules


@pytest.mark.parametrize("module,name", [
    ("sklearn.base", "inspect.os.system"),         # dotted traversal
    ("sklearn.base", "BaseEstimator.get_params"),  # an attribute of an allowed class
    ("numpy", "__getattr__"),
    ("numpy", "load"), ("numpy", "memmap"), ("numpy", "fromfile"), ("numpy", "vectorize"),
    ("numpy.ctypeslib", "load_library"), ("numpy.f2py", "compile"),
    ("sklearn.utils._testing", "MinimalClassifier"),   # an estimator, in a test module
    ("sklearn.utils._mocking", "CheckingClassifier"),
    ("sklearn.datasets", "fetch_openml"),
    ("sklearn.base", "clone"),                          # a function, not a class
    ("sklearn.base", "np"),                             # a module imported by sklearn
    ("sklearn.utils.fixes", "np"),
    ("scipy.sparse._csr", "np"),
    ("joblib.numpy_pickle", "NDArrayWrapper"), ("joblib.numpy_pickle", "ZNDArrayWrapper"),
    ("builtins", "getattr"), ("builtins", "object"), ("builtins", "type"),
    ("os\nsystem", "x"), ("", "x"), ("x" * 500, "y"),
])
def test_names_that_are_refused(module, name):
    with pytest.raises(ModelLoadError) as info:
        safe_pickle.resolve(module, name)
    message = str(info.value)
    assert message.isprintable() and len(message) < 300


def test_persistent_ids_are_refused(tmp_path):
    path = tmp_path / "model.joblib"
    path.write_bytes(b"\x80\x04\x8c\x04evil" + b"Q" + b".")
    with pytest.raises(ModelLoadError, match="persistent ids"):
        load_artifact(str(path))


def test_every_allowlisted_global_resolves():
    """The data in safe_pickle names things that exist (typos, renames in a
    new numpy or scikit-learn show up here, not as a 503 in production)."""
    missing = []
    for module, name in sorted(safe_pickle.ALLOWED_GLOBALS):
        if module.startswith("numpy.core.") or (module, name) in \
                safe_pickle.OLDER_RELEASES_GLOBALS:
            continue    # NumPy 1.x names and older scikit-learn's, for their artifacts
        try:
            safe_pickle.resolve(module, name)
        except ModelLoadError:
            missing.append((module, name))
    assert missing == []


def test_allowlist_holds_no_known_gadget():
    forbidden_modules = {"os", "posix", "nt", "subprocess", "importlib", "pickle", "_pickle",
                         "marshal", "operator", "functools", "copyreg", "sys", "types", "io",
                         "shutil", "socket", "ctypes", "runpy", "code", "codeop", "pty"}
    forbidden_names = {"eval", "exec", "compile", "getattr", "setattr", "__import__", "open",
                       "load", "loads", "read_array", "system", "apply", "globals", "vars",
                       "input", "breakpoint", "type", "object", "memmap", "NDArrayWrapper",
                       "ZNDArrayWrapper", "partial", "attrgetter", "methodcaller"}
    for module, name in safe_pickle.ALLOWED_GLOBALS:
        assert module.split(".")[0] not in forbidden_modules, (module, name)
        assert name not in forbidden_names, (module, name)
        assert not module.startswith(("numpy.testing", "numpy.f2py", "numpy.distutils",
                                      "numpy.ctypeslib", "numpy.lib.format")), module


# --------------------------------------------------------------------------
# joblib internals: the restricted loader repeats a few lines of joblib.load.


def test_joblib_is_the_version_the_loader_was_written_for():
    with open(os.path.join(PROJECT_DIR, "requirements.txt")) as f:
        pinned = re.search(r"^joblib==(\S+)", f.read(), re.M).group(1)
    assert joblib.__version__ == pinned == safe_pickle.EXPECTED_JOBLIB, (
        "joblib changed: re-read joblib/numpy_pickle.py (load, _unpickle, NumpyUnpickler, "
        "NumpyArrayWrapper.read_array) and update chalicelib/safeload/safe_pickle.py")
    safe_pickle.check_joblib()


def test_changed_joblib_internals_fail_closed(monkeypatch, tmp_path):
    from joblib import numpy_pickle

    def read_array(self, unpickler, ensure_native_byte_order):  # no find_class routing
        raise AssertionError("not reached")

    monkeypatch.setattr(numpy_pickle.NumpyArrayWrapper, "read_array", read_array)
    monkeypatch.setattr(safe_pickle, "_checked", False)
    with pytest.raises(ModelLoadError, match="refusing to unpickle"):
        safe_pickle.load(os.path.join(BUNDLED_MODEL, "model.joblib"))


def test_restricted_loader_handles_joblib_compression(tmp_path):
    model = LogisticRegression().fit(*make_classification(60, 4, random_state=0))
    for compress in (0, 3, ("gzip", 3), ("bz2", 3), ("lzma", 3)):
        path = tmp_path / ("m-%s.joblib" % (compress,))
        joblib.dump(model, path, compress=compress)
        loaded = load_artifact(str(path))
        assert np.array_equal(loaded.coef_, model.coef_)


# --------------------------------------------------------------------------
# Legitimate models still load, and predict exactly as with joblib.load.


def _byo_models():
    Xc, yc = make_classification(300, 6, n_informative=4, random_state=0)
    Xr, yr = make_regression(300, 6, random_state=0)
    rng = np.random.RandomState(0)
    Xm = np.column_stack([Xc[:, :4], rng.randint(0, 3, size=(300, 2)).astype(float)])
    ct = ColumnTransformer([("num", StandardScaler(), [0, 1, 2, 3]),
                            ("cat", OneHotEncoder(handle_unknown="ignore"), [4, 5])])
    return {
        "random_forest": (RandomForestClassifier(n_estimators=20, random_state=0).fit(Xc, yc), Xc),
        "gradient_boosting": (GradientBoostingRegressor(n_estimators=20, random_state=0).fit(Xr, yr), Xr),
        "hist_gradient_boosting": (HistGradientBoostingClassifier(max_iter=20, random_state=0).fit(Xc, yc), Xc),
        "pipeline_column_transformer": (
            Pipeline([("ct", ct), ("clf", LogisticRegression(max_iter=500))]).fit(Xm, yc), Xm),
    }


@pytest.fixture(scope="module")
def byo_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("byo-safe")
    files = {}
    for name, (model, X) in _byo_models().items():
        path = root / ("%s.joblib" % name)
        joblib.dump(model, path)
        files[name] = (path, X)
    files["bundled"] = (os.path.join(BUNDLED_MODEL, "model.joblib"), np.array(IRIS_ROWS))
    return files


@pytest.mark.parametrize("name", ["bundled", "random_forest", "gradient_boosting",
                                  "hist_gradient_boosting", "pipeline_column_transformer"])
def test_legitimate_models_load_and_predict_identically(byo_files, name):
    path, X = byo_files[name]
    plain = joblib.load(path)
    safe = load_artifact(str(path))
    assert type(safe) is type(plain)
    assert np.array_equal(safe.predict(X), plain.predict(X))
    if hasattr(plain, "predict_proba"):
        assert np.array_equal(safe.predict_proba(X), plain.predict_proba(X))
    assert sorted(vars(safe)) == sorted(vars(plain))


@pytest.mark.parametrize("name", ["random_forest", "gradient_boosting",
                                  "hist_gradient_boosting", "pipeline_column_transformer"])
def test_legitimate_models_publish_and_serve(serve, byo_files, tmp_path, name):
    from publisher.publish import publish
    path, X = byo_files[name]
    # served from the pickle (what the restricted unpickler guards), not compiled
    publish(str(path), name=name, version="1", out_dir=str(tmp_path / "m"), onnx=False)
    api = serve(MODEL_DIR=tmp_path / "m")
    assert api.get("/health").status_code == 200
    response = api.post({"instances": X[:5].tolist()})
    assert response.status_code == 200, response.body
    assert body_of(response)["predictions"] == joblib.load(path).predict(X[:5]).tolist()


def test_bundled_model_loads_about_as_fast_as_joblib_load():
    """The artifact is unpickled on the Lambda's cold start."""
    path = os.path.join(BUNDLED_MODEL, "model.joblib")
    load_artifact(path), joblib.load(path)   # warm imports and caches

    def best_of(fn, n=30):
        times = []
        for _ in range(n):
            started = time.perf_counter()
            fn(path)
            times.append(time.perf_counter() - started)
        return min(times)

    plain, safe = best_of(joblib.load), best_of(load_artifact)
    print("bundled model load: joblib.load %.3f ms, restricted %.3f ms"
          % (plain * 1000, safe * 1000))
    assert safe < plain * 2 + 0.002


# --------------------------------------------------------------------------
# The opt-out: TRUST_MODEL_PICKLE=true, off by default, logged every time.


@pytest.fixture
def benign_unlisted(tmp_path):
    """A working model carrying one harmless object outside the allowlist."""
    X, y = make_classification(60, 4, random_state=0)
    model = LogisticRegression().fit(X, y)
    model.note_ = fractions.Fraction(1, 3)
    d = tmp_path / "model"
    d.mkdir()
    joblib.dump(model, d / "model.joblib")
    write_card(str(d))
    return d


def test_non_allowlisted_artifact_is_refused_by_default(serve, benign_unlisted, monkeypatch):
    monkeypatch.delenv(TRUST_MODEL_PICKLE_ENV, raising=False)
    api = serve(MODEL_DIR=benign_unlisted)
    response = api.get("/health")
    assert response.status_code == 503
    assert "artifact references fractions.Fraction" in body_of(response)["Message"]


@pytest.mark.parametrize("value", ["false", "0", "", "no"])
def test_trust_needs_an_explicit_true(benign_unlisted, monkeypatch, value):
    monkeypatch.setenv(TRUST_MODEL_PICKLE_ENV, value)
    with pytest.raises(ModelLoadError, match="fractions.Fraction"):
        load_artifact(str(benign_unlisted / "model.joblib"))


def test_trust_model_pickle_loads_it_and_warns_every_time(serve, benign_unlisted, monkeypatch,
                                                          caplog):
    monkeypatch.setenv(TRUST_MODEL_PICKLE_ENV, "true")
    with caplog.at_level(logging.WARNING, logger="chalicelib.safeload.loading"):
        api = serve(MODEL_DIR=benign_unlisted)
        assert api.get("/health").status_code == 200
        response = api.post({"instances": [[0.1, 0.2, 0.3, 0.4]]})
        assert response.status_code == 200, response.body
        serve(MODEL_DIR=benign_unlisted)     # a second load: a second warning
    warnings_ = [r for r in caplog.records
                 if r.levelno == logging.WARNING and TRUST_MODEL_PICKLE_ENV in r.getMessage()]
    assert len(warnings_) == 2
    assert "plain joblib.load" in warnings_[0].getMessage()
