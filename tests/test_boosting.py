"""xgboost-cpu and lightgbm as opt-in dependencies (their scikit-learn API):
the restricted unpickler allows their estimators only when the library is
installed; publish -> app; and the packaged Lambda with the library pinned
in requirements.txt (lightgbm with the libgomp the build ships for it).
"""
import json
import os
import zipfile

import joblib
import numpy as np
import pytest

from chalicelib.safeload import boosting
from chalicelib.safeload import safe_pickle
from chalicelib.http.errors import ModelLoadError
from tests.conftest import body_of
from tests.packaging import serve_in_stage
from tests.test_package import CHALICE, PYTHON, build, run, run_isolated
from tools.ops import lambda_events as ev
from tools.build.package import extract_read_only
from tools.build.project_copy import copy_project, make_writable

PINS = {"xgboost": "xgboost-cpu==3.4.1", "lightgbm": "lightgbm==4.7.0"}
FEATURES = "sepal_length,sepal_width,petal_length,petal_width"
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5], [6.3, 2.9, 5.6, 1.8]]


def fitted(library):
    from sklearn.datasets import load_iris
    X, y = load_iris(return_X_y=True)
    # Imported here, not at collection: loading either library costs seconds
    # that every `make test` would pay for a module in the slow tier.
    lib = pytest.importorskip(library)
    if library == "xgboost":
        return lib.XGBClassifier(n_estimators=20, max_depth=3).fit(X, y)
    return lib.LGBMClassifier(n_estimators=20, num_leaves=8, verbose=-1).fit(X, y)


@pytest.fixture(scope="module", params=["xgboost", "lightgbm"])
def artifact(request, tmp_path_factory):
    model = fitted(request.param)
    path = str(tmp_path_factory.mktemp(request.param) / "model.joblib")
    joblib.dump(model, path)
    return request.param, path, model


def test_restricted_loader_loads_them_when_installed(artifact):
    library, path, model = artifact
    loaded = safe_pickle.load(path)
    assert type(loaded) is type(model)
    assert loaded.predict(ROWS).tolist() == model.predict(ROWS).tolist()
    assert np.allclose(loaded.predict_proba(ROWS), model.predict_proba(ROWS), rtol=1e-12)


def test_refused_when_the_library_is_not_installed(artifact, monkeypatch):
    library, path, _ = artifact
    monkeypatch.setitem(boosting._installed, library, False)
    with pytest.raises(ModelLoadError, match="not on the allowlist"):
        safe_pickle.load(path)


def test_only_their_estimator_classes(artifact):
    for module, name in [("xgboost.core", "_load_lib"), ("xgboost", "load_model"),
                         ("lightgbm.basic", "_load_lib"), ("lightgbm.basic", "Dataset"),
                         ("xgboost.sklearn", "XGBModel.__init__")]:
        with pytest.raises(ModelLoadError):
            safe_pickle.resolve(module, name)


@pytest.fixture(scope="module")
def project_factory(tmp_path_factory):
    def make(library):
        base = tmp_path_factory.mktemp("boost-" + library)
        project = copy_project(str(base / "project"))
        with open(os.path.join(project, "requirements.txt"), "a") as f:
            f.write(PINS[library] + "\n")
        return base, project
    return make


def test_publish_refuses_them_unpinned_then_the_app_serves_them(artifact, tmp_path, serve,
                                                               monkeypatch):
    library, path, model = artifact
    project = copy_project(str(tmp_path / "project"))
    args = [PYTHON, "-m", "publisher.publish", path, "--name", library, "--version", "1.0.0",
            "--features", FEATURES, "--out", os.path.join(project, "model", library)]
    refused = run(args, cwd=project)
    assert refused.returncode == 2 and "which requirements.txt does not pin" in refused.stdout
    with open(os.path.join(project, "requirements.txt"), "a") as f:
        f.write(PINS[library] + "\n")
    done = run(args, cwd=project)
    assert done.returncode == 0, done.stdout
    # This process trained the booster: libgomp's pool does not survive a
    # fork, so a trial child would hang in OpenMP (a served process loads fresh).
    monkeypatch.setenv("MODEL_LOAD_ISOLATED", "false")
    response = serve(MODEL_DIR=os.path.join(project, "model", library)).post(
        {"instances": ROWS, "probabilities": True})
    assert response.status_code == 200, response.body
    body = body_of(response)
    assert body["predictions"] == model.predict(ROWS).tolist()
    assert np.allclose(body["probabilities"], model.predict_proba(ROWS), rtol=1e-6)


@pytest.fixture(scope="module")
def packaged(artifact, project_factory):
    library, path, model = artifact
    base, project = project_factory(library)
    done = run([PYTHON, "-m", "publisher.publish", path, "--name", library, "--version", "1.0.0",
                "--features", FEATURES], cwd=project)
    assert done.returncode == 0, done.stdout
    serve_in_stage(project, "model/" + library)
    built = build(project)
    assert built.returncode == 0, built.stdout
    out = str(base / "out")
    packaged = run([CHALICE, "--project-dir", project, "package", "--stage", "prod", out],
                   cwd=project)
    assert packaged.returncode == 0 and "Reusing existing deployment package" in packaged.stdout
    task = str(base / "task")
    extract_read_only(os.path.join(out, "deployment.zip"), task)
    yield library, os.path.join(out, "deployment.zip"), task, model, built.stdout
    make_writable(task)


def test_packaged_lambda_serves_them(packaged, tmp_path):
    library, zip_path, task, model, build_output = packaged
    with zipfile.ZipFile(zip_path) as zf:
        names = set(zf.namelist())
    size = os.path.getsize(zip_path)
    print("%s: %.2f MiB zipped" % (library, size / (1 << 20)))
    assert "budget: " in build_output
    if library == "lightgbm":  # lib_lightgbm.so links to plain libgomp.so.1
        assert "lib/libgomp.so.1" in names, build_output
        assert "openmp: lightgbm/lib/lib_lightgbm.so need libgomp.so.1" in build_output
    else:  # libxgboost.so links to a vendored, renamed libgomp: the same file
        # (same name) as scikit-learn's, which ships and is loaded first
        assert "lib/libgomp.so.1" not in names
        from tools.build.package import _needed
        needed = [n for n in _needed(os.path.join(task, "xgboost", "lib", "libxgboost.so"))
                  if n.startswith("libgomp")]
        assert needed and any(n.endswith(".libs/" + needed[0]) for n in names), needed
    cases = [("predict", ev.post_model(json.dumps({"instances": ROWS, "probabilities": True})))]
    # Lambda's LD_LIBRARY_PATH ends with /var/task/lib (where the build put libgomp)
    result = run_isolated(task, cases, tmp_path, max_rows=100,
                          extra_env={"LD_LIBRARY_PATH": os.path.join(task, "lib") + ":" + task})
    answer = result["answers"]["predict"]
    assert answer["statusCode"] == 200, (answer, result["stdout"])
    body = json.loads(answer["body"])
    assert body["predictions"] == model.predict(ROWS).tolist()
    assert np.allclose(body["probabilities"], model.predict_proba(ROWS), rtol=1e-6)
    assert os.path.realpath(result["modules"][library]).startswith(os.path.realpath(task))


THREADS = r"""
import json, sys
import joblib, numpy as np
from threadpoolctl import threadpool_info
for path in sys.argv[1:]:
    joblib.load(path).predict(np.ones((50, 4)))
print(json.dumps([(i["internal_api"], i["filepath"], i["num_threads"]) for i in threadpool_info()
                  if i["user_api"] == "openmp"]))
"""


@pytest.mark.parametrize("threads", ["1", "2"])
def test_their_openmp_pool_follows_omp_num_threads(tmp_path, threads):
    paths = []
    for library in ("xgboost", "lightgbm"):
        paths.append(str(tmp_path / (library + ".joblib")))
        joblib.dump(fitted(library), paths[-1])
    done = run([PYTHON, "-c", THREADS, *paths], cwd=str(tmp_path),
               env={"OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout
    pools = json.loads(done.stdout.strip().splitlines()[-1])
    assert any("lightgbm" in path or "xgboost" in path or "gomp" in path for _, path, _ in pools)
    assert pools and all(n == int(threads) for _, _, n in pools), pools
