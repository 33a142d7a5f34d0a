"""The deployment package, proven without AWS.

For the bundled model and for a bring-your-own model of another family, in a
copy of the project: ``tools.build.package`` (what ``make build`` runs), then
the real ``chalice package --stage prod OUT/``, which must reuse that build.
The zip is checked (size, model inside with a matching sha256, bytecode,
modes), unzipped into a read-only directory and run in a fresh interpreter
that sees nothing but it and the standard library (``-I -S -B``), as
Lambda's ``/var/task``: ``app.app(event, context)`` answers API Gateway REST
proxy events (payload v1, stage ``prod``) for every request format and error
case of the contract, with the predictions the model gives in the dev venv.

A package over the 50 MiB direct upload (the DataFrame pipeline served by
scikit-learn, which ships pandas) is a function zip and a layer zip
(Chalice's ``automatic_layer``): the function is unzipped as ``/var/task``
and the layer as ``/opt``, both on ``sys.path`` as Lambda puts them.

The wheel download is cached in ``build/wheels`` of this repository, so a
second run does not download again.
"""
import hashlib
import inspect
import json
import os
import shutil
import subprocess
import sys
import zipfile

import joblib
import numpy as np
import pytest

from tools.ops import lambda_events as ev
from tools.ops.lambda_context import Context
from tools.build.package import extract_read_only
from tools.build.project_copy import copy_project, make_writable
from tests.packaging import packaged_model_rel, serve_in_stage, stage_model_rel

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = sys.executable
CHALICE = os.path.join(os.path.dirname(sys.executable), "chalice")
WHEELS = os.path.join(REPO, "build", "wheels")
MiB = 1024 * 1024
CONTEXT_SOURCE = inspect.getsource(Context)
MAX_ROWS = 5  # the stage says 10000; the isolated run overrides it to test 413 cheaply
DIABETES_FEATURES = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]

# Runs in `python -I -S -B`: only the unzipped package (argv[1]: the function
# directory, then the layer's /opt/python if any, os.pathsep-joined) and the
# standard library are importable. Reads events from argv[2], writes answers
# to argv[3].
ISOLATED_RUNNER = r"""
import json, os, sys
package, events_file, out_file = sys.argv[1:4]
stdlib = [p for p in sys.path if p]
sys.path[:] = package.split(os.pathsep) + stdlib
assert not any("site-packages" in p for p in sys.path), sys.path
with open(events_file) as f:
    cases = json.load(f)
import app
""" + CONTEXT_SOURCE + r"""answers = {}
for name, event in cases:
    answers[name] = app.app(event, Context())
modules = {n: getattr(m, "__file__", None) for n, m in sys.modules.items()
           if getattr(m, "__file__", None)}
with open(out_file, "w") as f:
    json.dump({"answers": answers, "modules": modules, "sys_path": sys.path,
               "dont_write_bytecode": sys.dont_write_bytecode,
               "no_site": sys.flags.no_site, "isolated": sys.flags.isolated}, f)
"""


# ---------------------------------------------------------------- helpers


def run(cmd, cwd, env=None, timeout=900):
    full_env = dict(os.environ, AWS_DEFAULT_REGION="us-east-1")
    full_env.pop("AWS_PROFILE", None)
    full_env.update(env or {})
    return subprocess.run(cmd, cwd=cwd, env=full_env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout)


def build(project, extra_env=None):
    return run([PYTHON, "-m", "tools.build.package", "--project-dir", project,
                "--stage", "prod", "--wheels-dir", WHEELS], cwd=REPO, env=extra_env)


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


class Built:
    """A project copy built and packaged by `chalice package --stage prod`."""

    def __init__(self, project, build_output, package_output, out_dir):
        self.project = project
        self.build_output = build_output
        self.package_output = package_output
        self.zip_path = os.path.join(out_dir, "deployment.zip")
        self.layer_path = os.path.join(out_dir, "layer-deployment.zip")
        if not os.path.isfile(self.layer_path):
            self.layer_path = None
        self.out_dir = out_dir
        self.model_rel = stage_model_rel(project)
        model_dir = os.path.join(project, *self.model_rel.split("/"))
        self.card = json.load(open(os.path.join(model_dir, "model.json")))
        self.estimator = joblib.load(os.path.join(model_dir, "model.joblib"))
        self.unzipped = None
        self.opt = None

    def unzip_read_only(self, dest):
        """The function zip as /var/task at ``dest``; a layer zip as /opt at
        ``dest``-opt."""
        extract_read_only(self.zip_path, dest)
        self.unzipped = dest
        if self.layer_path:
            self.opt = dest + "-opt"
            extract_read_only(self.layer_path, self.opt)
        return dest

    @property
    def sys_path(self):
        """What Lambda puts on sys.path for this package: /var/task, then
        the layer's /opt/python."""
        paths = [self.unzipped] + ([os.path.join(self.opt, "python")] if self.opt else [])
        return os.pathsep.join(paths)


def build_and_package(project, out_dir):
    built = build(project)
    assert built.returncode == 0, built.stdout
    packaged = run([CHALICE, "--project-dir", project, "package", "--stage", "prod", out_dir],
                   cwd=project)
    assert packaged.returncode == 0, packaged.stdout
    return Built(project, built.stdout, packaged.stdout, out_dir)


def run_isolated(package, cases, tmp_path, max_rows=MAX_ROWS, extra_env=None):
    """Answer ``cases`` [(name, event)] with the unzipped package, isolated
    (``package``: the function directory, or it and the layer's python
    directory, os.pathsep-joined)."""
    events_file = tmp_path / "events.json"
    out_file = tmp_path / "answers.json"
    events_file.write_text(json.dumps(cases))
    with open(os.path.join(REPO, ".chalice", "config.json")) as f:
        config = json.load(f)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
           "PYTHONDONTWRITEBYTECODE": "1", "AWS_REGION": "us-east-1",
           "AWS_LAMBDA_FUNCTION_NAME": "sklearn-serverless-prod",
           "LAMBDA_TASK_ROOT": package.split(os.pathsep)[0]}
    env.update(config.get("environment_variables", {}))
    env.update(config["stages"]["prod"].get("environment_variables", {}))
    # as Lambda sets it: the trial load's memory cap is sized from it
    env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] = str(config["stages"]["prod"].get(
        "lambda_memory_size", config.get("lambda_memory_size", 128)))
    env["MODEL_DIR"] = packaged_model_rel(package.split(os.pathsep)[0])
    env["MAX_ROWS"] = str(max_rows)
    env.update(extra_env or {})
    proc = subprocess.run([PYTHON, "-I", "-S", "-B", "-c", ISOLATED_RUNNER, package,
                           str(events_file), str(out_file)],
                          cwd=package.split(os.pathsep)[0], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout
    result = json.loads(out_file.read_text())
    result["stdout"] = proc.stdout
    return result


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def bundled(built_project, tmp_path_factory):
    """The bundled iris model: the shared build (which found a stale cached
    zip and a stray .pyc planted), packaged by plain ``chalice package``."""
    base = tmp_path_factory.mktemp("bundled")
    project = str(built_project.path)
    packaged = run([CHALICE, "--project-dir", project, "package", "--stage", "prod",
                    str(base / "out")], cwd=project)
    assert packaged.returncode == 0, packaged.stdout
    built = Built(project, built_project.output, packaged.stdout, str(base / "out"))
    built.unzip_read_only(str(base / "task"))
    yield built
    make_writable(str(base / "task"))


@pytest.fixture(scope="module")
def bundled_sklearn(tmp_path_factory):
    """The bundled iris model on the scikit-learn path: the prod stage says
    ``MODEL_RUNTIME=scikit-learn``, so the pickle is served and the package
    carries scikit-learn and scipy (what the lazy imports are for)."""
    base = tmp_path_factory.mktemp("bundled-sklearn")
    project = copy_project(str(base / "project"))
    config_path = os.path.join(project, ".chalice", "config.json")
    with open(config_path) as f:
        config = json.load(f)
    config["stages"]["prod"].setdefault("environment_variables", {})["MODEL_RUNTIME"] = \
        "scikit-learn"
    with open(config_path, "w") as f:
        json.dump(config, f, indent=2)
    built = build_and_package(project, str(base / "out"))
    built.unzip_read_only(str(base / "task"))
    yield built
    make_writable(str(base / "task"))


def _train_diabetes_forest(path):
    from sklearn.datasets import load_diabetes
    from sklearn.ensemble import RandomForestRegressor
    X, y = load_diabetes(return_X_y=True)
    forest = RandomForestRegressor(n_estimators=25, max_depth=6, random_state=0).fit(X, y)
    joblib.dump(forest, path)
    return X


@pytest.fixture(scope="module")
def byo(tmp_path_factory):
    """A bring-your-own RandomForestRegressor (diabetes), published with
    ``python -m publisher.publish`` into a copy of the project."""
    base = tmp_path_factory.mktemp("byo")
    project = copy_project(str(base / "project"))
    artifact = str(base / "forest.joblib")
    _train_diabetes_forest(artifact)
    # served by scikit-learn (the bundled model proves the ONNX Runtime path)
    published = run([PYTHON, "-m", "publisher.publish", artifact, "--name", "diabetes-forest",
                     "--version", "2.0.0", "--features", ",".join(DIABETES_FEATURES),
                     "--runtime", "scikit-learn"], cwd=project)
    assert published.returncode == 0, published.stdout
    serve_in_stage(project, "model/diabetes-forest")
    built = build_and_package(project, str(base / "out"))
    built.unzip_read_only(str(base / "task"))
    yield built
    make_writable(str(base / "task"))


def _packaged_tabular(tmp_path_factory, where, version, *publish_options):
    """The DataFrame pipeline of ``tools/fixtures/fixtures_families`` published with
    ``publisher.publish`` into a copy of the project, built and packaged."""
    from tools.fixtures.fixtures_families import tabular_pipeline
    base = tmp_path_factory.mktemp(where)
    project = copy_project(str(base / "project"))
    model, notebook = tabular_pipeline()
    artifact = str(base / "tabular.joblib")
    joblib.dump(model, artifact)
    published = run([PYTHON, "-m", "publisher.publish", artifact, "--name", "churn",
                     "--version", version, *publish_options], cwd=project)
    assert published.returncode == 0, published.stdout
    serve_in_stage(project, "model/churn")
    built = build_and_package(project, str(base / "out"))
    built.unzip_read_only(str(base / "task"))
    built.notebook = notebook
    return built, str(base / "task")


@pytest.fixture(scope="module")
def tabular(tmp_path_factory):
    """A data scientist's DataFrame pipeline (OneHotEncoder on string
    columns, scaler, logistic regression) served by scikit-learn: the
    package must carry pandas."""
    built, task = _packaged_tabular(tmp_path_factory, "tabular", "3.0.0",
                                    "--runtime", "scikit-learn")
    yield built
    make_writable(task)
    make_writable(task + "-opt")


# ---------------------------------------------------------------- the cases


def contract_cases(card, max_rows=MAX_ROWS):
    """(name, event) for every request format and error case; the rows used."""
    names = [f["name"] for f in card["features"]]
    n = len(names)
    rows = [[round(0.1 * (i + 1) + 0.37 * j, 3) for j in range(n)] for i in range(4)]
    if card["name"] == "iris-classifier":
        rows = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5],
                [6.3, 2.9, 5.6, 1.8]]
    elif card["name"] == "diabetes-forest":
        rows = [[0.038, 0.05, 0.061, 0.021, -0.044, -0.034, -0.043, -0.002, 0.019, -0.017],
                [-0.001, -0.044, -0.051, -0.026, -0.008, -0.019, 0.074, -0.039, -0.068, -0.092],
                [0.085, 0.05, 0.044, -0.005, -0.045, -0.034, -0.032, -0.002, 0.002, -0.025],
                [-0.089, -0.044, -0.011, -0.036, 0.012, 0.025, -0.036, 0.034, 0.023, -0.009]]
    rev = list(reversed(names))
    objects = [dict(zip(names, r)) for r in rows]
    csv_body = "\n".join(",".join(repr(v) for v in r) for r in rows) + "\n"
    csv_header = ",".join(rev) + "\r\n" + "\r\n".join(
        ",".join(repr(v) for v in reversed(r)) for r in rows)
    js = json.dumps
    post = ev.post_model
    cases = [
        ("instances-lists", post(js({"instances": rows}))),
        ("instances-objects", post(js({"instances": objects}))),
        ("dataframe-split", post(js({"dataframe_split": {
            "columns": rev, "data": [list(reversed(r)) for r in rows]}}))),
        ("dataframe-records", post(js({"dataframe_records": objects}))),
        ("csv-no-header", post(csv_body, "text/csv")),
        ("csv-header", post(csv_header, "text/csv; charset=utf-8")),
        ("probabilities", post(js({"instances": rows, "probabilities": True}))),
        ("csv-probabilities", post(csv_body, "text/csv", query={"probabilities": "true"})),
        ("base64-body", post(js({"instances": rows}).encode(), "application/json")),
        ("malformed-json", post('{"instances": [[1, 2')),
        ("unknown-key", post(js({"rows": rows}))),
        ("text-plain", post(js({"instances": rows}), "text/plain")),
        ("too-many-rows", post(js({"instances": [rows[0]] * (max_rows + 1)}))),
        ("too-many-csv-rows", post("\n".join([",".join(map(repr, rows[0]))] * (max_rows + 1)),
                                   "text/csv")),
        ("wrong-count", post(js({"instances": [rows[0] + [1.0]]}))),
        ("non-numeric", post(js({"instances": [["abc"] + rows[0][1:]]}))),
        ("nan", post('{"instances": [[NaN%s]]}' % "".join(", %r" % v for v in rows[0][1:]))),
        ("get-health", ev.get("/health")),
        ("get-card", ev.get("/model")),
        ("get-page", ev.get("/", headers={"Accept": "text/html"})),
    ]
    return cases, rows


def check_contract(built, tmp_path):
    cases, rows = contract_cases(built.card)
    result = run_isolated(built.unzipped, cases, tmp_path)
    answers = result["answers"]

    # Isolation: nothing came from outside the package and the stdlib.
    assert result["no_site"] and result["isolated"] and result["dont_write_bytecode"]
    stdlib = os.path.realpath(sys.base_prefix) + os.sep
    package = os.path.realpath(built.unzipped) + os.sep
    for name, path in result["modules"].items():
        real = os.path.realpath(path)
        assert real.startswith(package) or real.startswith(stdlib), (name, path)
    onnx = built.card.get("runtime") == "onnxruntime"
    for name in (("onnxruntime", "numpy", "chalicelib", "app") if onnx else
                 ("sklearn", "numpy", "scipy", "joblib", "chalicelib", "app")):
        assert os.path.realpath(result["modules"][name]).startswith(package), name
    if onnx:  # a compiled model never imports the scikit-learn stack
        assert not {m.split(".")[0] for m in result["modules"]} & {"sklearn", "scipy", "joblib"}
    assert not any(p.endswith("__pycache__") for p in _walk_dirs(built.unzipped)
                   if p.startswith(os.path.join(built.unzipped, "sklearn")))

    def body(name, status):
        answer = answers[name]
        assert answer["statusCode"] == status, (name, answer)
        return json.loads(answer["body"])

    X = np.asarray(rows, dtype=np.float64)
    expected = built.estimator.predict(X).tolist()
    # the pickle's answers: exact through scikit-learn; through the ONNX
    # graph, labels exact and numbers within the card's stated tolerance
    rtol = built.card["onnx"]["agreement"]["rtol"] if onnx else 1e-12
    identity = {"name": built.card["name"], "version": built.card["version"]}
    for name in ("instances-lists", "instances-objects", "dataframe-split", "dataframe-records",
                 "csv-no-header", "csv-header", "base64-body"):
        got = body(name, 200)
        assert got["model"] == identity, name
        assert got["predictions"] == pytest.approx(expected, rel=rtol) \
            if built.card["task"] == "regression" else got["predictions"] == expected, name
        headers = answers[name]["headers"]
        assert headers["Content-Type"] == "application/json"
        assert headers["X-Model-Version"] == built.card["version"]
    if hasattr(built.estimator, "predict_proba"):
        proba = built.estimator.predict_proba(X).tolist()
        for name in ("probabilities", "csv-probabilities"):
            got = body(name, 200)
            assert got["predictions"] == expected
            assert got["classes"] == built.card["classes"]
            assert np.allclose(got["probabilities"], proba, rtol=rtol, atol=1e-15 if not onnx
                               else rtol), name
    else:
        for name in ("probabilities", "csv-probabilities"):
            got = body(name, 422)
            assert got["Code"] == "UnprocessableEntityError"
            assert "predict_proba" in got["Message"]
    assert body("malformed-json", 400)["Code"] == "BadRequestError"
    assert "malformed JSON" in body("malformed-json", 400)["Message"]
    assert "unknown key" in body("unknown-key", 400)["Message"]
    assert body("text-plain", 415)["Code"] == "UnsupportedMediaType"
    for name in ("too-many-rows", "too-many-csv-rows"):
        got = body(name, 413)
        assert got["Code"] == "RequestEntityTooLargeError" and str(MAX_ROWS) in got["Message"]
    n = len(built.card["features"])
    assert "expected %d values" % n in body("wrong-count", 422)["Message"]
    assert "expected a number" in body("non-numeric", 422)["Message"]
    nan = answers["nan"]
    if built.card["accepts_missing_values"]:
        assert nan["statusCode"] == 200, nan
    else:
        assert nan["statusCode"] == 422, nan
        assert "finite number" in json.loads(nan["body"])["Message"]
    assert body("get-health", 200) == dict(identity, status="ok")
    assert body("get-card", 200) == built.card
    page = answers["get-page"]  # the try-it page's template, style and script ship
    assert page["statusCode"] == 200, page
    assert page["headers"]["Content-Type"].startswith("text/html")
    assert "default-src 'none'" in page["headers"]["Content-Security-Policy"]
    assert built.card["name"] in page["body"] and "{{" not in page["body"]
    assert len(page["body"].encode()) <= 50 * 1024
    # one structured log line per request, every route through the one
    # wrapper (a 415 included), with the API Gateway request id
    logs = [json.loads(line) for line in result["stdout"].splitlines()
            if line.startswith('{"request_id"')]
    assert len(logs) == len(cases)
    assert all(entry["request_id"] for entry in logs)


def _walk_dirs(root):
    for dirpath, dirs, files in os.walk(root):
        yield dirpath


def check_zip(built, direct_upload=True):
    assert built.layer_path is None  # one zip: no layer next to it, none asked of Chalice
    assert not json.load(open(os.path.join(built.project, ".chalice", "config.json")))[
        "stages"]["prod"].get("automatic_layer")
    assert "Reusing existing deployment package" in built.package_output, built.package_output
    cached = [f for f in os.listdir(os.path.join(built.project, ".chalice", "deployments"))
              if f.endswith(".zip")]
    assert len(cached) == 1, cached  # the stale one is gone
    assert sha256(os.path.join(built.project, ".chalice", "deployments", cached[0])) == \
        sha256(built.zip_path)  # `chalice package` shipped our build, byte for byte
    size = os.path.getsize(built.zip_path)
    assert size <= 50 * MiB or not direct_upload
    with zipfile.ZipFile(built.zip_path) as zf:
        infos = {i.filename: i for i in zf.infolist()}
        assert zf.testzip() is None
        unzipped = sum(i.file_size for i in infos.values())
        assert unzipped <= 250 * MiB
        model = built.model_rel
        for name in (model + "/model.json", "app.py", "chalice/app.py",
                     "chalicelib/protocols/service.py"):
            assert name in infos, name
        # the stage's model only: no other model directory ships
        assert {n.split("/")[1] for n in infos if n.startswith("model/")} == \
            {model.split("/")[1]}
        card = json.loads(zf.read(model + "/model.json"))
        assert card == built.card
        # only the artifact the served runtime opens ships
        if card.get("runtime") == "onnxruntime":
            assert hashlib.sha256(zf.read(model + "/model.onnx")).hexdigest() == \
                card["onnx"]["sha256"]
            assert model + "/model.joblib" not in infos
        else:
            assert hashlib.sha256(zf.read(model + "/model.joblib")).hexdigest() == card["sha256"]
            assert model + "/model.onnx" not in infos
        assert "chalicelib/__pycache__/gone.cpython-312.pyc" not in infos
        # test suites stay out (numpy/_core/tests/_natype.py ships if imported)
        assert not [n for n in infos if "/tests/" in n and "_natype." not in n]
        assert not [n for n in infos if n.startswith(("sklearn/datasets/", "scipy/io/"))]
        for name, info in infos.items():
            mode = info.external_attr >> 16
            assert mode & 0o444 == 0o444, (name, oct(mode))  # readable by Lambda's user
            if name.endswith(".pyc"):
                flags = int.from_bytes(zf.read(name)[4:8], "little")
                assert flags == 0b01, name  # hash-based, unchecked: never recompiled
    return size, unzipped, len(infos)


# ---------------------------------------------------------------- tests


def test_bundled_model_package(bundled, tmp_path):
    size, unzipped, files = check_zip(bundled)
    print("bundled: %.2f MiB zipped, %.2f MiB unzipped, %d files"
          % (size / MiB, unzipped / MiB, files))
    check_contract(bundled, tmp_path)


def test_byo_model_package(byo, tmp_path):
    size, unzipped, files = check_zip(byo)
    print("byo: %.2f MiB zipped, %.2f MiB unzipped, %d files"
          % (size / MiB, unzipped / MiB, files))
    assert byo.card["estimator"] == "RandomForestRegressor"
    with zipfile.ZipFile(byo.zip_path) as zf:
        names = set(zf.namelist())
    assert any(n.startswith("sklearn/tree/_tree.") and n.endswith(".so") for n in names)
    check_contract(byo, tmp_path)


def check_split(built):
    """A function zip and a layer zip, shipped by Chalice's automatic_layer
    byte for byte as the build wrote them: each within the 50 MiB direct
    upload, together within 250 MiB unzipped; the app, the model and pandas
    in the function, numpy, scipy and scikit-learn under the layer's
    ``python/``; the SAM template publishes the layer and the function uses it."""
    out = built.package_output
    assert "Reusing existing app deployment package" in out, out
    assert "Reusing existing shared layer deployment package" in out, out
    with open(os.path.join(built.project, ".chalice", "config.json")) as f:
        assert json.load(f)["stages"]["prod"]["automatic_layer"] is True  # set by the build
    deployments = os.path.join(built.project, ".chalice", "deployments")
    cached = sorted(f for f in os.listdir(deployments) if f.endswith(".zip"))
    assert [c.split("-")[0] for c in cached] == ["appcode", "managed"], cached
    assert sha256(os.path.join(deployments, cached[0])) == sha256(built.zip_path)
    assert sha256(os.path.join(deployments, cached[1])) == sha256(built.layer_path)
    sizes = {}
    names = {}
    for label, path in (("function", built.zip_path), ("layer", built.layer_path)):
        with zipfile.ZipFile(path) as zf:
            assert zf.testzip() is None
            infos = zf.infolist()
            names[label] = {i.filename for i in infos}
            sizes[label] = (os.path.getsize(path), sum(i.file_size for i in infos))
            for info in infos:
                assert (info.external_attr >> 16) & 0o444 == 0o444, info.filename
                if info.filename.endswith(".pyc"):
                    assert int.from_bytes(zf.read(info)[4:8], "little") == 0b01, info.filename
        assert sizes[label][0] <= 50 * MiB, (label, sizes[label])
    assert sizes["function"][1] + sizes["layer"][1] <= 250 * MiB, sizes
    function_tops = {n.split("/")[0] for n in names["function"]}
    assert {"app.py", "chalice", "chalicelib", "model", "pandas"} <= function_tops
    assert "__pycache__/app.cpython-312.pyc" in names["function"]
    assert all(n.startswith("python/") for n in names["layer"])
    layer_tops = {n.split("/")[1] for n in names["layer"]}
    assert {"numpy", "numpy.libs", "scipy", "scipy.libs", "sklearn", "joblib"} <= layer_tops
    assert not function_tops & layer_tops, function_tops & layer_tops
    with zipfile.ZipFile(built.zip_path) as zf:
        assert json.loads(zf.read(built.model_rel + "/model.json")) == built.card
        assert hashlib.sha256(zf.read(built.model_rel + "/model.joblib")).hexdigest() == \
            built.card["sha256"]
    with open(os.path.join(built.out_dir, "sam.json")) as f:
        resources = json.load(f)["Resources"]
    layers = [name for name, r in resources.items()
              if r["Type"] == "AWS::Serverless::LayerVersion"]
    assert len(layers) == 1
    assert resources[layers[0]]["Properties"]["ContentUri"] == "./layer-deployment.zip"
    assert resources["APIHandler"]["Properties"]["CodeUri"] == "./deployment.zip"
    assert resources["APIHandler"]["Properties"]["Layers"] == [{"Ref": layers[0]}]
    return sizes


def test_dataframe_pipeline_package(tabular, bundled, tmp_path):
    """The DataFrame pipeline served by scikit-learn ships pandas, which puts
    the one zip over the 50 MiB direct upload: the build splits it into a
    function zip and a layer zip, each deployable directly. Run as Lambda
    runs it (the function as /var/task, the layer as /opt/python, a fresh
    isolated interpreter), it answers every format with the notebook's own
    predictions and the typed errors; pandas ships for it and not for the
    bundled matrix model, which stays one zip."""
    import io
    sizes = check_split(tabular)
    print("tabular (pandas): function %.2f MiB zipped (%.2f unzipped), layer %.2f MiB zipped "
          "(%.2f unzipped)" % (sizes["function"][0] / MiB, sizes["function"][1] / MiB,
                               sizes["layer"][0] / MiB, sizes["layer"][1] / MiB))
    assert "budget: " in tabular.build_output
    assert "layout: function + layer (the one zip would be" in tabular.build_output
    with zipfile.ZipFile(bundled.zip_path) as b:
        assert not any(n.startswith("pandas/") for n in b.namelist())
    frame = tabular.notebook
    records = json.loads(frame.to_json(orient="records"))
    columns = list(frame.columns)
    csv = io.StringIO()
    frame.to_csv(csv, index=False)
    js = json.dumps
    bad = [dict(records[0], color="purple")]
    cases = [
        ("records", ev.post_model(js({"dataframe_records": records}))),
        ("instances", ev.post_model(js({"instances": records, "probabilities": True}))),
        ("split", ev.post_model(js({"dataframe_split": {
            "columns": columns, "data": [[r[c] for c in columns] for r in records]}}))),
        ("csv", ev.post_model(csv.getvalue(), "text/csv")),
        ("unknown-category", ev.post_model(js({"instances": bad}))),
        ("number-for-string", ev.post_model(js({"instances": [dict(records[0], city=7)]}))),
    ]
    result = run_isolated(tabular.sys_path, cases, tmp_path, max_rows=100)
    assert result["sys_path"][:2] == tabular.sys_path.split(os.pathsep)
    # pandas from the function, the scikit-learn stack from the layer,
    # nothing from anywhere but the two and the standard library
    task = os.path.realpath(tabular.unzipped) + os.sep
    opt = os.path.realpath(tabular.opt) + os.sep
    stdlib = os.path.realpath(sys.base_prefix) + os.sep
    where = {name: os.path.realpath(path) for name, path in result["modules"].items()}
    for name in ("app", "chalicelib", "pandas"):
        assert where[name].startswith(task), (name, where[name])
    for name in ("numpy", "scipy", "sklearn", "joblib"):
        assert where[name].startswith(opt), (name, where[name])
    assert all(p.startswith((task, opt, stdlib)) for p in where.values())
    answers = {name: (a["statusCode"], json.loads(a["body"])) for name, a in result["answers"].items()}
    expected = tabular.estimator.predict(frame).tolist()
    for name in ("records", "instances", "split", "csv"):
        assert answers[name][0] == 200, answers[name]
        assert answers[name][1]["predictions"] == expected, name
    assert np.allclose(answers["instances"][1]["probabilities"],
                       tabular.estimator.predict_proba(frame), rtol=1e-12, atol=1e-15)
    assert answers["unknown-category"][0] == 422
    assert 'instances[0].color: expected one of "blue", "green", "red", got "purple"' == \
        answers["unknown-category"][1]["Message"]
    assert answers["number-for-string"] == (422, {
        "Code": "UnprocessableEntityError",
        "Message": "instances[0].city: expected a string, got 7"})
    assert "does not have valid feature names" not in result["stdout"]


@pytest.fixture(scope="module")
def tabular_compiled(tmp_path_factory):
    """The same DataFrame pipeline published with the defaults: compiled to
    ONNX, one graph input per column."""
    built, task = _packaged_tabular(tmp_path_factory, "tabular-onnx", "3.1.0")
    yield built
    make_writable(task)
    make_writable(task + "-opt")


def test_compiled_dataframe_pipeline_package(tabular_compiled, tmp_path):
    """A DataFrame model compiled to ONNX: the package carries ONNX Runtime
    and numpy and nothing of pandas, scikit-learn or scipy, fits the direct
    upload, and answers the notebook's labels (probabilities within the
    card's tolerance) and the same typed errors."""
    built = tabular_compiled
    assert built.card["runtime"] == "onnxruntime" and built.card["input"] == "dataframe"
    size, unzipped, files = check_zip(built)
    print("tabular (ONNX): %.2f MiB zipped, %.2f MiB unzipped, %d files"
          % (size / MiB, unzipped / MiB, files))
    with zipfile.ZipFile(built.zip_path) as zf:
        tops = {n.split("/")[0] for n in zf.namelist()}
    assert not tops & {"pandas", "sklearn", "scipy", "joblib"}
    frame = built.notebook
    records = json.loads(frame.to_json(orient="records"))
    cases = [
        ("records", ev.post_model(json.dumps({"dataframe_records": records,
                                              "probabilities": True}))),
        ("unknown-category", ev.post_model(json.dumps(
            {"instances": [dict(records[0], color="purple")]}))),
    ]
    result = run_isolated(built.unzipped, cases, tmp_path, max_rows=100)
    assert not {m.split(".")[0] for m in result["modules"]} & {"pandas", "sklearn", "scipy"}
    status, body = (result["answers"]["records"]["statusCode"],
                    json.loads(result["answers"]["records"]["body"]))
    assert status == 200, body
    assert body["predictions"] == built.estimator.predict(frame).tolist()
    assert np.allclose(body["probabilities"], built.estimator.predict_proba(frame), rtol=0,
                       atol=built.card["onnx"]["agreement"]["rtol"])
    bad = result["answers"]["unknown-category"]
    assert bad["statusCode"] == 422
    assert json.loads(bad["body"])["Message"] == \
        'instances[0].color: expected one of "blue", "green", "red", got "purple"'


def test_the_packaged_lambda_holds_every_hostile_artifact(byo, tmp_path):
    """The hostile-artifact techniques (tools/fixtures/malicious.py) against the trimmed package
    itself: each model directory is served by the unzipped zip, isolated,
    with a secret in the environment. The init phase survives (exit 0, no
    segfault), health and predictions are 503 with the reason, and the
    secret never comes back."""
    from tools.fixtures import malicious
    held = []
    for name, (_, reason, *_) in malicious.TECHNIQUES.items():
        d = tmp_path / ("m%d" % len(held))
        malicious.build_technique(name, d)
        malicious.write_card(str(d), malicious.CARD_WIDTHS[name])
        cases = [("health", ev.get("/health")),
                 ("predict", ev.post_model(json.dumps({"instances": [[1.0, 2.0, 3.0, 4.0]]})))]
        run_dir = tmp_path / ("run%d" % len(held))
        run_dir.mkdir()
        result = run_isolated(byo.unzipped, cases, run_dir,
                              extra_env={"MODEL_DIR": str(d),
                                         "AWS_SECRET_ACCESS_KEY": malicious.SECRET + "rest",
                                         **malicious.TECHNIQUE_ENV.get(name, {})})
        for case in ("health", "predict"):
            answer = result["answers"][case]
            assert answer["statusCode"] == 503, (name, answer)
            message = json.loads(answer["body"])["Message"]
            # the trimmed package may lack a module the payload needs (the
            # forest's package has no sklearn.compose): refused by name first
            assert reason in message or "not on the allowlist" in message, (name, answer)
        assert malicious.SECRET not in json.dumps(result), name
        held.append(name)
    assert held == list(malicious.TECHNIQUES)


def test_trimming_follows_the_model(bundled, byo):
    """What ships depends on what the model imports: the forest served by
    scikit-learn carries the estimator's own modules and not ONNX Runtime;
    the bundled model, compiled to ONNX, carries ONNX Runtime and nothing of
    scikit-learn, scipy or joblib."""
    with zipfile.ZipFile(bundled.zip_path) as a, zipfile.ZipFile(byo.zip_path) as b:
        bundled_names, byo_names = set(a.namelist()), set(b.namelist())
    assert "sklearn/ensemble/_forest.pyc" in byo_names
    assert not any(n.startswith("onnxruntime/") for n in byo_names)
    assert any(n.startswith("onnxruntime/capi/onnxruntime_pybind11_state") for n in bundled_names)
    assert not any(n.startswith(("sklearn/", "scipy/", "joblib/", "scipy.libs/"))
                   for n in bundled_names)


# Runs isolated like ISOLATED_RUNNER: answers the cases with the lazy modules
# as the package leaves them, then forces every module of the shipped lazy
# list to run (one attribute read each) and answers the same cases again.
LAZY_RUNNER = ISOLATED_RUNNER.replace("""answers = {}
for name, event in cases:
    answers[name] = app.app(event, Context())""", """import importlib
from chalicelib.ops import lazy_imports
with open(lazy_imports.LIST_FILE) as f:
    listed = json.load(f)["modules"]
def answer():
    return {name: app.app(event, Context()) for name, event in cases}
lazy_first = answer()
pending = [n for n in listed if n in sys.modules and lazy_imports.is_lazy(sys.modules[n])]
forced = []
for name in listed:
    module = importlib.import_module(name)
    module.__doc__  # any attribute but the import system's metadata runs it
    if not lazy_imports.is_lazy(module):
        forced.append(name)
answers = answer()
answers = {"lazy": lazy_first, "forced": answers, "listed": listed, "pending": pending,
           "forced_names": forced}""")


@pytest.mark.parametrize("which", ["bundled_sklearn", "byo", "bundled"])
def test_lazy_modules_load_when_forced(which, request, tmp_path):
    """The build ships the modules no request ran as a lazy list; the app,
    unzipped and isolated, leaves them unrun through every request; forcing
    each one to run afterwards works, and every answer stays the same. The
    bundled iris model and the forest on the scikit-learn path, and the
    bundled model compiled to ONNX (numpy and the standard library only)."""
    built = request.getfixturevalue(which)
    with zipfile.ZipFile(built.zip_path) as zf:
        listed = json.loads(zf.read("chalicelib/_lazy_modules.json"))["modules"]
        names = set(zf.namelist())
    assert "lazy imports: %d of the" % len(listed) in built.build_output
    sklearn_path = built.card.get("runtime") != "onnxruntime" or which == "bundled_sklearn"
    # measured: 129 modules for the iris pipeline on scikit-learn (scipy.integrate,
    # scipy.ndimage, numpy.f2py, asyncio, ...), 18 through ONNX Runtime
    assert len(listed) >= (50 if sklearn_path else 5), listed
    assert any(n.startswith("scipy.") for n in listed) == sklearn_path, listed
    tops = {n.split("/", 1)[0] for n in names}
    shipped = [n for n in listed if n.split(".", 1)[0] in tops]  # the others: stdlib
    assert shipped and all(n.split(".", 1)[0] in sys.stdlib_module_names
                           for n in listed if n not in shipped)
    for name in shipped:  # every lazy module of a dependency ships, as bytecode
        base = name.replace(".", "/")
        assert base + ".pyc" in names or base + "/__init__.pyc" in names, name
    cases, rows = contract_cases(built.card)
    events_file, out_file = tmp_path / "events.json", tmp_path / "answers.json"
    events_file.write_text(json.dumps(cases))
    with open(os.path.join(built.project, ".chalice", "config.json")) as f:
        config = json.load(f)  # the stage's environment (MODEL_RUNTIME for bundled_sklearn)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
           **config.get("environment_variables", {}),
           **config["stages"]["prod"].get("environment_variables", {}),
           "MAX_ROWS": str(MAX_ROWS), "LOG_REQUESTS": "false", "LAMBDA_TASK_ROOT": built.unzipped}
    proc = subprocess.run([PYTHON, "-I", "-S", "-B", "-c", LAZY_RUNNER, built.unzipped,
                           str(events_file), str(out_file)], cwd=built.unzipped, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout
    result = json.loads(out_file.read_text())["answers"]
    assert result["listed"] == listed
    # the operator's switch: LAZY_IMPORTS=off imports everything eagerly
    proc = subprocess.run([PYTHON, "-I", "-S", "-B", "-c", LAZY_RUNNER, built.unzipped,
                           str(events_file), str(tmp_path / "eager.json")], cwd=built.unzipped,
                          env=dict(env, LAZY_IMPORTS="off"), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout
    eager = json.loads((tmp_path / "eager.json").read_text())["answers"]
    assert eager["pending"] == [] and eager["lazy"] == result["lazy"]
    # the requests ran none of them (those imported stayed lazy) ...
    assert len(result["pending"]) >= len(listed) // 2, result["pending"]
    # ... each runs when used, and the answers do not change
    assert result["forced_names"] == listed
    assert result["forced"] == result["lazy"]
    got = json.loads(result["forced"]["instances-lists"]["body"])["predictions"]
    expected = built.estimator.predict(np.asarray(rows, dtype=np.float64)).tolist()
    assert got == pytest.approx(expected, rel=1e-12) if built.card["task"] == "regression" \
        else got == expected


# ---------------------------------------------------------------- loud failures


@pytest.fixture
def project_copy(tmp_path):
    return copy_project(str(tmp_path / "project"))


def test_build_refuses_a_model_whose_sha_does_not_match(project_copy):
    card_path = os.path.join(project_copy, "model", "iris", "model.json")
    card = json.load(open(card_path))
    card["sha256"] = "0" * 64
    os.chmod(card_path, 0o644)
    with open(card_path, "w") as f:
        json.dump(card, f)
    result = build(project_copy)
    assert result.returncode == 2, result.stdout
    assert "model.joblib has sha256" in result.stdout and "card says 000" in result.stdout
    assert not os.path.isdir(os.path.join(project_copy, ".chalice", "deployments")) or not \
        os.listdir(os.path.join(project_copy, ".chalice", "deployments"))


def test_build_refuses_a_package_without_the_model(project_copy):
    shutil.rmtree(os.path.join(project_copy, "vendor"))
    result = build(project_copy)
    assert result.returncode == 2, result.stdout
    assert "no model card model/iris/model.json" in result.stdout


def test_build_refuses_a_pin_without_a_compatible_wheel(project_copy, tmp_path):
    # PyYAML 5.3.1 predates Python 3.12: only sdists and old wheels exist.
    # Offline (no index, only the wheel cache) so the answer is deterministic.
    with open(os.path.join(project_copy, "requirements.txt"), "a") as f:
        f.write("PyYAML==5.3.1\n")
    wheels = tmp_path / "wheels"
    shutil.copytree(WHEELS, wheels, ignore=shutil.ignore_patterns(".lock"))
    result = run([PYTHON, "-m", "tools.build.package", "--project-dir", project_copy,
                  "--wheels-dir", str(wheels)], cwd=REPO,
                 env={"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheels)})
    assert result.returncode == 2, result.stdout
    assert "no wheel of PyYAML==5.3.1 fits the Lambda runtime (python3.12" in result.stdout


def test_build_refuses_an_unpinned_dependency(project_copy):
    path = os.path.join(project_copy, "requirements.txt")
    lines = [line for line in open(path) if not line.startswith("threadpoolctl==")]
    with open(path, "w") as f:
        f.writelines(lines)
    result = build(project_copy)
    assert result.returncode == 2, result.stdout
    assert "requires threadpoolctl" in result.stdout
    assert "which requirements.txt does not pin" in result.stdout


def test_size_limits_are_loud():
    from tools.build import package as bp
    with pytest.raises(bp.BuildError, match="over Lambda's 50 MiB limit.*aws cloudformation"):
        bp.check_size({"zipped": 50 * MiB + 1, "unzipped": 100 * MiB}, direct_upload=True)
    bp.check_size({"zipped": 50 * MiB + 1, "unzipped": 100 * MiB})  # the S3 route: a warning
    with pytest.raises(bp.BuildError, match="over Lambda's 250 MiB limit"):
        bp.check_size({"zipped": 30 * MiB, "unzipped": 250 * MiB + 1})
    bp.check_size({"zipped": 39 * MiB, "unzipped": 200 * MiB})


def test_a_split_builds_one_zip_figures_say_they_come_before_the_split(capsys):
    """Over 50 MiB as one zip the build splits: its negative room is the
    reason, not a failure, and the lines say so."""
    from tools.build import package as bp
    bp.check_size({"zipped": 53 * MiB, "unzipped": 155 * MiB,
                   "by_top": {"model": MiB // 10, "scipy": 16 * MiB}}, model_rel="model", split=True)
    out = capsys.readouterr().out
    assert "53.0 MiB zipped as one zip, before the split into function + layer (-3.0 MiB left" in out
    assert "room for the model under the 50 MiB direct upload: -2.9 MiB zipped in one zip" in out
