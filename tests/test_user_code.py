"""The user's own code (``publisher.publish --code``): a FunctionTransformer with
the user's function, from publish to the app to the packaged Lambda; the
unpickler allows what the shipped module defines and nothing else.

Models are fitted in a subprocess (as a notebook would, in its own
interpreter) so that this process never imports the user's module from its
source directory: the app must import it from the model directory.
"""
import json
import os
import subprocess
import sys
import textwrap
import types
import zipfile

import pytest

from chalicelib.safeload import safe_pickle
from chalicelib.safeload import user_code
from chalicelib.http.errors import ModelLoadError
from tests.conftest import body_of
from tests.test_package import CHALICE, build, run, run_isolated
from tools.build.package import extract_read_only
from tools.ops import lambda_events as ev
from tools.build.project_copy import copy_project, make_writable

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = sys.executable
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]
FEATURES = "sepal_length,sepal_width,petal_length,petal_width"

USER_MODULE = '''
"""The user's feature code."""
import numpy as np
from os import system  # imported, not defined here: never allowed


def add_ratios(X):
    X = np.asarray(X, dtype=float)
    return np.hstack([X, X[:, [0]] / (X[:, [1]] + 0.1), X[:, [2]] / (X[:, [3]] + 0.1)])
'''

# Fits Pipeline(FunctionTransformer(<module>.add_ratios), LogisticRegression)
# on iris; writes the artifact and the predictions for ROWS.
TRAIN = '''
import json, sys
import joblib
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
src, module, out, rows = sys.argv[1:5]
if module == "__main__":
    import numpy as np
    def add_ratios(X):
        X = np.asarray(X, dtype=float)
        return np.hstack([X, X[:, [0]] / (X[:, [1]] + 0.1)])
    func = add_ratios
else:
    sys.path.insert(0, src)
    func = getattr(__import__(module), "add_ratios")
X, y = load_iris(return_X_y=True)
model = make_pipeline(FunctionTransformer(func), LogisticRegression(max_iter=1000)).fit(X, y)
joblib.dump(model, out)
print(json.dumps(model.predict(json.loads(rows)).tolist()))
'''


def write_module(directory, name, text=USER_MODULE):
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, name + ".py")
    with open(path, "w") as f:
        f.write(textwrap.dedent(text))
    return path


def train(tmp_path, module, src):
    out = str(tmp_path / ("%s.joblib" % module.strip("_")))
    done = subprocess.run([PYTHON, "-c", TRAIN, str(src), module, out, json.dumps(ROWS)],
                          cwd=str(tmp_path), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return out, json.loads(done.stdout)


def publish(artifact, out_dir, *args, cwd=REPO):
    return subprocess.run([PYTHON, "-m", "publisher.publish", artifact, "--name", "iris-ratios",
                           "--version", "1.0.0", "--features", FEATURES, "--out", str(out_dir),
                           *args], cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.fixture
def forget_modules():
    """Names this test imports as user code leave sys.modules afterwards."""
    names = []
    yield names
    for name in names:
        for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
            del sys.modules[key]


def test_function_transformer_with_user_code_is_published_and_served(tmp_path, serve,
                                                                     forget_modules):
    src = tmp_path / "src"
    module = write_module(str(src), "ratio_features")
    artifact, expected = train(tmp_path, "ratio_features", src)
    out = tmp_path / "model"
    done = publish(artifact, out, "--code", module)
    assert done.returncode == 0, done.stderr
    card = json.loads((out / "model.json").read_text())
    assert card["code"] == ["ratio_features"]
    assert (out / "code" / "ratio_features.py").read_text() == open(module).read()
    forget_modules.append("ratio_features")
    os.remove(module)  # the app imports the shipped copy, not the source
    response = serve(MODEL_DIR=out).post({"instances": ROWS})
    assert response.status_code == 200, response.body
    assert body_of(response)["predictions"] == expected
    shipped = sys.modules["ratio_features"].__file__
    assert os.path.realpath(shipped) == os.path.realpath(out / "code" / "ratio_features.py")


def test_publish_without_code_is_refused(tmp_path):
    src = tmp_path / "src"
    write_module(str(src), "ratio_nocode")
    artifact, _ = train(tmp_path, "ratio_nocode", src)
    done = publish(artifact, tmp_path / "model")
    assert done.returncode == 2
    assert "ratio_nocode.add_ratios, which is not on the allowlist" in done.stderr
    assert not (tmp_path / "model" / "model.json").exists()


def test_a_code_module_the_artifact_does_not_name_is_refused(tmp_path):
    src = tmp_path / "src"
    write_module(str(src), "ratio_named")
    artifact, _ = train(tmp_path, "ratio_named", src)
    # Another module, defining the same function name: not the one the artifact names.
    other = write_module(str(tmp_path / "other"), "other_features")
    done = publish(artifact, tmp_path / "model", "--code", other)
    assert done.returncode == 2
    assert "ratio_named.add_ratios, which is not on the allowlist" in done.stderr


def test_a_function_in_main_is_refused_with_the_way_out(tmp_path):
    artifact, _ = train(tmp_path, "__main__", tmp_path)
    done = publish(artifact, tmp_path / "model")
    assert done.returncode == 2
    assert "__main__.add_ratios" in done.stderr
    assert "move it into a module" in done.stderr and "--code" in done.stderr


def test_only_what_the_shipped_module_defines_and_only_during_its_load(tmp_path,
                                                                      forget_modules):
    code_dir = str(tmp_path / "code")
    write_module(code_dir, "defs_only")
    forget_modules.append("defs_only")
    modules = user_code.load_modules(code_dir, ["defs_only"])
    with user_code.allowing(code_dir, modules):
        assert safe_pickle.resolve("defs_only", "add_ratios") is modules["defs_only"].add_ratios
        for name in ("system", "np", "__builtins__", "nothing"):  # imported, a module, absent
            with pytest.raises(ModelLoadError, match="not on the allowlist"):
                safe_pickle.resolve("defs_only", name)
        with pytest.raises(ModelLoadError, match="not on the allowlist"):
            safe_pickle.resolve("other_features", "add_ratios")
    with pytest.raises(ModelLoadError, match="not on the allowlist"):  # outside the load
        safe_pickle.resolve("defs_only", "add_ratios")


@pytest.mark.parametrize("name", ["os", "sklearn", "chalicelib", "not-an-identifier"])
def test_user_code_cannot_take_the_name_of_the_app_or_a_dependency(name):
    with pytest.raises(ModelLoadError):
        user_code.check_name(name)


@pytest.fixture(scope="module")
def packaged(tmp_path_factory):
    base = tmp_path_factory.mktemp("usercode")
    src = base / "src"
    module = write_module(str(src), "pkg_features")
    artifact, expected = train(base, "pkg_features", src)
    project = copy_project(str(base / "project"))
    done = publish(artifact, os.path.join(project, "model"), "--code", module, cwd=project)
    assert done.returncode == 0, done.stderr
    # Not test_package.build_and_package: its Built loads the artifact in
    # this process, which has no pkg_features to import (on purpose).
    built = build(project)
    assert built.returncode == 0, built.stdout
    out = str(base / "out")
    packaged = run([CHALICE, "--project-dir", project, "package", "--stage", "prod", out],
                   cwd=project)
    assert packaged.returncode == 0, packaged.stdout
    assert "Reusing existing deployment package" in packaged.stdout
    task = str(base / "task")
    extract_read_only(os.path.join(out, "deployment.zip"), task)
    yield types.SimpleNamespace(zip_path=os.path.join(out, "deployment.zip"), unzipped=task,
                                expected=expected, build_output=built.stdout)
    make_writable(task)


def test_packaged_lambda_serves_the_user_code_pipeline(packaged, tmp_path):
    with zipfile.ZipFile(packaged.zip_path) as zf:
        names = set(zf.namelist())
        assert json.loads(zf.read("model/model.json"))["code"] == ["pkg_features"]
    assert "model/code/pkg_features.py" in names
    cases = [("predict", ev.post_model(json.dumps({"instances": ROWS})))]
    result = run_isolated(packaged.unzipped, cases, tmp_path)
    answer = result["answers"]["predict"]
    assert answer["statusCode"] == 200, (answer, result["stdout"])
    assert json.loads(answer["body"])["predictions"] == packaged.expected
    assert os.path.realpath(result["modules"]["pkg_features"]).startswith(
        os.path.realpath(packaged.unzipped) + os.sep)
