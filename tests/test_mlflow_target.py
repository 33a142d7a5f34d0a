"""The ``sklearn-serverless`` MLflow deployments target, driven by the real
``mlflow deployments`` CLI (subprocesses) with the entry point declared in
pyproject.toml: the model comes from a real tracking server on loopback;
create/get/list/update/delete run against the AWS emulator (moto on
loopback, tests/aws_emulator.py); run-local and predict against
``chalice local`` on loopback.

What this cannot prove: moto runs no function code, so predict against a
deployed API Gateway URL is not exercised (the key it would send is read
back from the emulator); the answers are proven through chalice local.
"""
import ast
import json
import os
import socket
import subprocess
import sys
import time
import tomllib

import pytest

from tests.aws_emulator import running_emulator
from tests.conftest import PROJECT_DIR, free_port
from tests.mlflow_models import churn_frame, churn_model, log
from tests.mlflow_tracking import tracking_server
from tests.packaging import WHEELS

MLFLOW = os.path.join(os.path.dirname(sys.executable), "mlflow")


def _register_entry_points(site):
    """What ``pip install -e .`` registers, read from pyproject.toml, as a
    dist-info on a path only the subprocesses see (the shared venv is left
    as it is)."""
    with open(os.path.join(PROJECT_DIR, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    info = site / ("%s-%s.dist-info" % (project["name"].replace("-", "_"), project["version"]))
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: %s\nVersion: %s\n"
                                   % (project["name"], project["version"]))
    lines = []
    for group, points in project["entry-points"].items():
        lines.append("[%s]" % group)
        lines += ["%s = %s" % item for item in points.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow-target")
    _register_entry_points(root / "site")
    with tracking_server(root) as uri:
        import mlflow
        from mlflow.tracking import MlflowClient
        mlflow.set_tracking_uri(uri)
        mlflow.set_experiment("target-tests")
        estimator, X = churn_model(C=10.0)
        logged = log(estimator, serialization_format="cloudpickle", example=X.head(3),
                     registered="churn")
        MlflowClient(uri).set_registered_model_alias("churn", "champion", logged.version)
        env = dict(os.environ, PYTHONPATH="%s:%s" % (root / "site", PROJECT_DIR),
                   MLFLOW_TRACKING_URI=uri, SKLEARN_SERVERLESS_HOME=str(root / "home"),
                   PYTHONWARNINGS="ignore")
        yield env, logged, root


def cli(env, *args, check=True):
    proc = subprocess.run([MLFLOW, "deployments", *args], cwd=PROJECT_DIR, env=env,
                          capture_output=True, text=True, timeout=1800)
    if check and proc.returncode != 0:
        raise AssertionError("mlflow deployments %s exited %d\n%s\n%s"
                             % (" ".join(args), proc.returncode, proc.stdout, proc.stderr))
    return proc


def test_help_documents_the_config(setup):
    env, _, _ = setup
    out = cli(env, "help", "-t", "sklearn-serverless").stdout
    for key in ("memory", "runtime", "auth", "api_key_name", "sklearn-serverless:/STAGE"):
        assert key in out


def test_create_get_list_update_delete_against_the_emulator(setup, monkeypatch):
    env, logged, root = setup
    target = "sklearn-serverless:/prod"
    with running_emulator() as emulator:
        aws = emulator.env(env)
        cli(aws, "create", "-t", target, "--name", "churn", "-m", "models:/churn@champion",
            "-C", "wheels_dir=%s" % WHEELS, "-C", "memory=768")
        lam, apigw = emulator.client("lambda"), emulator.client("apigateway")
        [function] = lam.list_functions()["Functions"]
        assert function["FunctionName"] == "sklearn-serverless-churn-prod"
        assert function["MemorySize"] == 768
        assert function["Environment"]["Variables"]["API_AUTH"] == "api_key"
        [api] = apigw.get_rest_apis()["items"]  # named by app.py's Chalice(app_name=...)

        got = _described(cli(aws, "get", "-t", target, "--name", "churn").stdout)
        assert got["model_name"] == "churn" and got["model_version"] == logged.version
        assert got["mlflow"]["alias"] == "champion" and got["mlflow"]["run_id"] == logged.run_id
        assert got["function_arn"] == function["FunctionArn"]
        assert got["rest_api_id"] == api["id"] and api["id"] in got["url"]
        # prod takes API keys: one was made in the stage's usage plan, and the
        # key predict would send is the emulator's value for that id.
        [plan] = apigw.get_usage_plans()["items"]
        [key] = apigw.get_usage_plan_keys(usagePlanId=plan["id"])["items"]
        assert key["id"] == got["api_key_id"] and key["name"] == "mlflow"
        for name, value in aws.items():
            if name.upper().startswith("AWS_"):
                monkeypatch.setenv(name, value)
        from publisher.mlflow_target import _key_value
        assert _key_value(got) == apigw.get_api_key(apiKey=key["id"],
                                                    includeValue=True)["value"]

        assert "churn" in cli(aws, "list", "-t", target).stdout

        cli(aws, "update", "-t", target, "--name", "churn", "-C", "memory=1024")
        [function] = lam.list_functions()["Functions"]
        assert function["FunctionName"] == "sklearn-serverless-churn-prod"
        assert function["MemorySize"] == 1024
        assert [a["id"] for a in apigw.get_rest_apis()["items"]] == [api["id"]]

        refused = cli(aws, "create", "-t", target, "--name", "churn", "-m",
                      "models:/churn@champion", check=False)
        assert refused.returncode != 0 and "already exists" in refused.stderr

        cli(aws, "delete", "-t", target, "--name", "churn")
        assert lam.list_functions()["Functions"] == []
        assert apigw.get_rest_apis()["items"] == []
        assert apigw.get_usage_plans()["items"] == []
        assert apigw.get_api_keys()["items"] == []
        assert "churn" not in cli(aws, "list", "-t", target).stdout


def _described(text):
    """The deployment ``mlflow deployments get`` prints ("key: value" lines)."""
    described = {}
    for line in text.splitlines():
        key, sep, value = line.partition(": ")
        if sep and key.strip() in ("model_name", "model_version", "function_arn",
                                   "rest_api_id", "url", "api_key_id", "mlflow"):
            described[key.strip()] = ast.literal_eval(value) if value.startswith("{") \
                else value
    return described


def test_run_local_serves_and_predict_answers_what_the_notebook_predicts(setup):
    env, logged, root = setup
    port = free_port()
    target = "sklearn-serverless:/dev"
    log_path = root / "run-local.log"
    with open(log_path, "w+b") as log_file:
        server = subprocess.Popen(
            [MLFLOW, "deployments", "run-local", "-t", target, "--name", "churn-local",
             "-m", "models:/churn@champion", "-C", "port=%d" % port, "-C", "stage=dev"],
            cwd=PROJECT_DIR, env=env, stdout=log_file, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 600
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        log_file.seek(0)
                        raise AssertionError(log_file.read().decode()[-3000:])
                    time.sleep(0.5)
            test, _ = churn_frame(25, 5)
            (root / "input.json").write_text(test.to_json(orient="records"))
            cli(env, "predict", "-t", target, "--name", "churn-local", "--input-path",
                str(root / "input.json"), "--output-path", str(root / "output.json"))
            answer = json.loads((root / "output.json").read_text())
            assert answer["predictions"] == logged.estimator.predict(test).tolist()
        finally:
            server.terminate()
            server.wait(timeout=30)
    missing = cli(env, "predict", "-t", target, "--name", "churn-local", "--input-path",
                  str(root / "input.json"), check=False)
    assert missing.returncode != 0 and "run-local is not serving it" in missing.stderr
