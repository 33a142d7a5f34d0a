"""One model, one directory: publishing writes ``model/NAME/`` and never
another model's directory, a stage serves the one its ``MODEL_DIR`` names
(default the bundled ``model/iris``), ``make model`` rebuilds the bundled
one whatever else ``model/`` holds, and the build ships the stage's model
only. Everything runs in throwaway copies of the project."""
import hashlib
import json
import os
import subprocess
import sys

import joblib
import pytest
from sklearn.datasets import load_diabetes
from sklearn.linear_model import Ridge

from publisher.publish import PublishError, publish
from tests.conftest import IRIS_ROWS
from tests.packaging import serve_in_stage
from tools.build.common import BuildError
from tools.build.model import model_dir_in_package
from tools.build.project_copy import copy_project

PYTHON = sys.executable
# Asks the copy's own app (no MODEL_DIR: the stage default) for a prediction.
SERVE_DEFAULT = """
import json
from chalice.test import Client
import app
with Client(app.app) as client:
    r = client.http.post("/model", headers={"Content-Type": "application/json"},
                         body=json.dumps({"instances": %r}))
    print(json.dumps({"status": r.status_code, "body": json.loads(r.body),
                      "model": r.headers.get("X-Model-Name")}))
""" % (IRIS_ROWS,)


def digests(directory):
    return {name: hashlib.sha256(open(os.path.join(directory, name), "rb").read()).hexdigest()
            for name in sorted(os.listdir(directory))}


def run(args, cwd, **env):
    environ = {k: v for k, v in os.environ.items() if k != "MODEL_DIR"}
    environ.update(env)
    return subprocess.run([PYTHON, *args], cwd=cwd, env=environ, capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def ridge(tmp_path_factory):
    data = load_diabetes()
    path = tmp_path_factory.mktemp("ridge") / "ridge.joblib"
    joblib.dump(Ridge(alpha=0.5).fit(data.data, data.target), path)
    return str(path)


@pytest.fixture
def project(tmp_path):
    return copy_project(str(tmp_path / "project"))


def test_a_second_model_leaves_the_bundled_one_and_the_default(project, ridge):
    bundled = os.path.join(project, "model", "iris")
    before = digests(bundled)
    done = run(["-m", "publisher.publish", ridge, "--name", "diabetes", "--version", "1.0.0"],
               cwd=project)
    assert done.returncode == 0, done.stderr
    assert sorted(os.listdir(os.path.join(project, "model"))) == ["diabetes", "iris"]
    assert json.load(open(os.path.join(project, "model", "diabetes", "model.json")))["name"] \
        == "diabetes"
    assert digests(bundled) == before  # byte-identical
    # what it did, what it inferred, what would improve the card
    out = done.stdout
    assert "published diabetes 1.0.0 (Ridge) in model/diabetes" in out
    assert "inferred: 10 features from n_features_in_ only: named x0..x9" in out
    assert "no --sample: 10 numeric columns" in out and "without ranges" in out
    assert "no feature names: --features" in out and "no --metrics" in out
    assert "make serve MODEL=diabetes" in out
    # the app still serves iris by default, and `make model` still finds it
    served = run(["-c", SERVE_DEFAULT], cwd=project)
    assert served.returncode == 0, served.stderr
    answer = json.loads(served.stdout.strip().splitlines()[-1])
    assert answer["status"] == 200 and answer["model"] == "iris-classifier"
    assert answer["body"]["predictions"] == ["setosa", "versicolor", "virginica"]
    rebuilt = run(["-m", "publisher.train"], cwd=project)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "byte-identical to the rebuild" in rebuilt.stdout
    assert digests(bundled) == before
    assert os.path.isfile(os.path.join(project, "model", "diabetes", "model.json"))


def test_a_stage_serves_the_model_its_config_names(project, ridge):
    assert run(["-m", "publisher.publish", ridge, "--name", "diabetes", "--version", "1"],
               cwd=project).returncode == 0
    serve_in_stage(project, "model/diabetes", stage="dev")
    # chalice local applies the stage's variables; so does this, by hand
    served = run(["-c", SERVE_DEFAULT.replace("%r" % (IRIS_ROWS,), "[[0.0] * 10]")],
                 cwd=project, MODEL_DIR="model/diabetes")
    answer = json.loads(served.stdout.strip().splitlines()[-1])
    assert answer["status"] == 200 and answer["model"] == "diabetes", answer
    assert model_dir_in_package({"MODEL_DIR": "model/diabetes"}) == "model/diabetes"


def test_publishing_again_is_refused_and_force_replaces_that_directory_only(tmp_path, ridge):
    models = tmp_path / "model"
    first = publish(ridge, name="r", version="1", out_dir=str(models / "r"))
    (models / "other").mkdir()
    (models / "other" / "model.json").write_text("{}")
    with pytest.raises(PublishError, match=r"already holds a model \(r 1\).*--force"):
        publish(ridge, name="r", version="2", out_dir=str(models / "r"))
    assert json.loads((models / "r" / "model.json").read_text())["version"] == "1"
    # a file of the earlier model (a graph) does not survive next to the new card
    stale = models / "r" / "model.onnx"
    had_graph = stale.exists()
    second = publish(ridge, name="r", version="2", out_dir=str(models / "r"), force=True,
                     onnx=False)
    assert second["version"] == "2" and first["sha256"] == second["sha256"]
    assert sorted(os.listdir(models / "r")) == ["model.joblib", "model.json"], had_graph
    assert (models / "other" / "model.json").read_text() == "{}"
    assert sorted(os.listdir(models)) == ["other", "r"]  # no staging left behind


def test_force_never_replaces_a_directory_that_is_not_a_model(tmp_path, ridge):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(PublishError, match="holds files a model directory does not"):
        publish(ridge, name="r", version="1", out_dir=str(tmp_path), force=True)
    assert (tmp_path / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("name", ["../escape", "a/b", ".hidden", ""])
def test_a_name_that_is_no_directory_name_is_refused(name, ridge):
    with pytest.raises(PublishError, match="cannot name a model directory"):
        publish(ridge, name=name, version="1")


def test_make_model_refuses_to_overwrite_a_foreign_model_in_model_iris(project, ridge):
    bundled = os.path.join(project, "model", "iris")
    done = run(["-m", "publisher.publish", ridge, "--name", "iris", "--version", "1",
                "--force"], cwd=project)
    assert done.returncode == 0, done.stderr
    refused = run(["-m", "publisher.train"], cwd=project)
    assert refused.returncode == 1
    assert "holds the model 'iris', not the bundled iris-classifier" in refused.stderr
    assert "Traceback" not in refused.stderr
    replaced = run(["-m", "publisher.train", "--replace"], cwd=project)
    assert replaced.returncode == 0, replaced.stderr
    assert json.load(open(os.path.join(bundled, "model.json")))["name"] == "iris-classifier"


def test_the_build_stages_the_stages_model_only(project, ridge, tmp_path):
    from tools.build.chalice_view import ChaliceView, stage_app
    assert run(["-m", "publisher.publish", ridge, "--name", "diabetes", "--version", "1"],
               cwd=project).returncode == 0
    for stage, served, left_out in (("prod", "iris", "diabetes"), ("dev", "diabetes", "iris")):
        if stage == "dev":
            serve_in_stage(project, "model/diabetes", stage="dev")
        view = ChaliceView(project, stage)
        app_dir = str(tmp_path / stage)
        entries = stage_app(view, app_dir, model_dir_in_package(view.environment))
        shipped = {p.split("/")[1] for p in entries if p.startswith("model/")}
        assert shipped == {served}, (stage, shipped)
        assert os.path.isfile(os.path.join(app_dir, "model", served, "model.json"))
        assert not os.path.exists(os.path.join(app_dir, "model", left_out))


@pytest.mark.parametrize("configured,expected", [
    (None, "model/iris"), ("model/churn", "model/churn"), ("/var/task/model/churn", "model/churn"),
    ("./model/churn/", "model/churn")])
def test_model_dir_in_package(configured, expected):
    env = {"MODEL_DIR": configured} if configured else {}
    assert model_dir_in_package(env) == expected


@pytest.mark.parametrize("configured", ["/opt/model", "model/../app.py", "chalicelib",
                                        "/var/task/../etc"])
def test_model_dir_outside_the_models_is_refused(configured):
    with pytest.raises(BuildError):
        model_dir_in_package({"MODEL_DIR": configured})


def test_model_policy_reads_the_card_of_the_stage(project):
    from tools.ops.model_policy import stage_card
    assert stage_card(project, "prod") == os.path.join("model", "iris", "model.json")
    serve_in_stage(project, "model/churn")
    assert stage_card(project, "prod") == os.path.join("model", "churn", "model.json")
