"""The MLflow deployments target ``sklearn-serverless``.

    mlflow deployments create -t sklearn-serverless[:/STAGE] --name NAME -m MODEL_URI [-C k=v]
    mlflow deployments update|delete|get|list|predict|run-local|help -t sklearn-serverless ...

Owned here: what a deployment is and where it lives. Each deployment NAME of
a stage is a copy of this project under ``$SKLEARN_SERVERLESS_HOME/STAGE/NAME/``
(default ``mlflow-deployments/`` in the project), whose Chalice app is
``sklearn-serverless-NAME``: the model is published into the copy with
:func:`publisher.publish.publish_mlflow`, built with ``tools.build.package``
and deployed with ``chalice deploy --stage STAGE``; Chalice's own record of
what it created stays in the copy, so ``update`` updates in place and
``delete`` runs ``chalice delete``. ``deployment.json`` beside the copy
records the model (URI, name, version, checksum), the URL and the id (never
the value) of the API key made for the stage. ``run_local`` serves the same
copy with ``chalice local``; while it runs, ``predict`` on a deployment that
is not deployed goes to it.

The plugin needs the project checkout (``pip install -e .``), not only the
installed modules: it copies ``app.py``, ``chalicelib/`` and ``.chalice/``.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request

from mlflow.deployments import BaseDeploymentClient, PredictionsResponse
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import (INVALID_PARAMETER_VALUE, RESOURCE_ALREADY_EXISTS,
                                          RESOURCE_DOES_NOT_EXIST)

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = "sklearn-serverless"
HOME_ENV = "SKLEARN_SERVERLESS_HOME"
DEFAULT_STAGE = "prod"
RECORD = "deployment.json"
LOCAL_RECORD = "local.json"
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
CONFIG = {
    "memory": "Lambda memory in MB (128-10240; default: the stage's lambda_memory_size)",
    "runtime": "auto (default: ONNX Runtime when the model compiles and agrees) or "
               "scikit-learn (serve the pickle)",
    "auth": "none, api_key or iam (default: the stage's API_AUTH; prod: api_key)",
    "api_key_name": "the name of the API key made for an api_key stage (default: mlflow)",
    "version": "the card's version (default: the registry version)",
    "tracking_uri": "the MLflow tracking server (default: MLFLOW_TRACKING_URI)",
    "force": "true: publish a model saved with another scikit-learn",
    "trust": "true: publish even if the audit finds code, callables or file reads",
    "wheels_dir": "the build's wheel cache (default: build/wheels in the project)",
    "port": "run-local only: the loopback port (default 8000)",
    "stage": "run-local only (MLflow passes it no target): the stage (default %s)"
             % DEFAULT_STAGE,
}


def target_help():
    return (
        "sklearn-serverless: a scikit-learn model as an AWS Lambda behind API Gateway, "
        "built and deployed with Chalice.\n\n"
        "Target URI: sklearn-serverless (stage %s) or sklearn-serverless:/STAGE, STAGE being "
        "a stage of .chalice/config.json (dev: no auth; prod: API keys).\n"
        "Model URI: models:/NAME/VERSION, models:/NAME@ALIAS, runs:/RUN_ID/PATH or an MLmodel "
        "directory of the sklearn flavor; its signature becomes the served schema.\n"
        "Deployment NAME: lower-case letters, digits and '-' (the app is sklearn-serverless-NAME)."
        "\n\nConfig (-C key=value):\n%s\n\n"
        "AWS credentials and region come from the usual AWS configuration. predict POSTs the "
        "input to the deployment's /invocations (MLflow's dataframe_split), with the stage's "
        "API key (x-api-key) when it has one; while run-local serves a deployment that is not "
        "deployed, predict goes to it. State: $%s (default: mlflow-deployments/ in the "
        "project)." % (DEFAULT_STAGE, "\n".join("  %-13s %s" % item for item in CONFIG.items()),
                       HOME_ENV))


def _error(message, code=INVALID_PARAMETER_VALUE):
    return MlflowException(message, error_code=code)


def stage_of(target_uri):
    _, _, rest = (target_uri or TARGET).partition(":")
    stage = rest.strip("/") or DEFAULT_STAGE
    stages = _project_config(PROJECT_DIR)["stages"]
    if stage not in stages:
        raise _error("target %s: stage %r is not in .chalice/config.json (%s)"
                     % (target_uri, stage, ", ".join(sorted(stages))))
    return stage


def _project_config(project):
    with open(os.path.join(project, ".chalice", "config.json")) as f:
        return json.load(f)


def _config(config):
    config = dict(config or {})
    unknown = set(config) - set(CONFIG)
    if unknown:
        raise _error("unknown config %s; known: %s" % (", ".join(sorted(unknown)),
                                                      ", ".join(CONFIG)))
    if config.get("runtime", "auto") not in ("auto", "scikit-learn"):
        raise _error("config runtime must be auto or scikit-learn")
    if config.get("auth", "none") not in ("none", "api_key", "iam"):
        raise _error("config auth must be none, api_key or iam")
    if "memory" in config:
        try:
            memory = int(config["memory"])
        except (TypeError, ValueError):
            memory = 0
        if not 128 <= memory <= 10240:
            raise _error("config memory must be a number of MB from 128 to 10240")
        config["memory"] = memory
    if "port" in config:
        if not str(config["port"]).isdigit() or not 1 <= int(config["port"]) <= 65535:
            raise _error("config port must be a port number")
        config["port"] = int(config["port"])
    for flag in ("force", "trust"):
        config[flag] = str(config.get(flag, "false")).lower() in ("1", "true", "yes")
    return config


class Deployment:
    """``HOME/STAGE/NAME``: the project copy, Chalice's state and our record."""

    def __init__(self, stage, name):
        if not NAME_RE.match(name or ""):
            raise _error("deployment name must be 1-40 lower-case letters, digits or '-', "
                         "starting with a letter or digit; got %r" % name)
        self.stage, self.name = stage, name
        self.dir = os.path.join(home(), stage, name)
        self.project = os.path.join(self.dir, "project")
        self.local_project = os.path.join(self.dir, "local-project")

    @property
    def app_name(self):
        return "%s-%s" % (TARGET, self.name)

    def record(self):
        try:
            with open(os.path.join(self.dir, RECORD)) as f:
                return json.load(f)
        except FileNotFoundError:
            return None

    def write_record(self, record):
        _write_json(os.path.join(self.dir, RECORD), record)

    def chalice_state(self):
        path = os.path.join(self.project, ".chalice", "deployed", "%s.json" % self.stage)
        try:
            with open(path) as f:
                return {r["name"]: r for r in json.load(f).get("resources", [])}
        except FileNotFoundError:
            return {}


def home():
    return os.path.abspath(os.environ.get(HOME_ENV) or os.path.join(PROJECT_DIR,
                                                                   "mlflow-deployments"))


def _write_json(path, data):
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".record-")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


# --- preparing a project copy ---------------------------------------------------


def prepare(deployment, project, model_uri, config):
    """A fresh copy of the project at ``project`` serving ``model_uri`` with
    ``config``; Chalice's deploy state of an earlier copy is carried over.
    Returns the published card."""
    from publisher.publish import PublishError, publish_mlflow
    from tools.build.project_copy import copy_project
    os.makedirs(deployment.dir, exist_ok=True)
    fresh = tempfile.mkdtemp(dir=deployment.dir, prefix=".project-")
    os.rmdir(fresh)
    try:
        copy_project(fresh)
        state = os.path.join(project, ".chalice", "deployed")
        if os.path.isdir(state):
            shutil.copytree(state, os.path.join(fresh, ".chalice", "deployed"))
        _configure(fresh, deployment, config)
        try:
            card = publish_mlflow(model_uri, version=config.get("version"),
                                  tracking_uri=config.get("tracking_uri"),
                                  out_dir=os.path.join(fresh, "model", deployment.name),
                                  force=config["force"],
                                  trust=config["trust"],
                                  onnx=config.get("runtime", "auto") == "auto")
        except (PublishError, ValueError) as exc:
            raise _error("publish refused %s: %s" % (model_uri, exc)) from None
        old = project + ".old"
        shutil.rmtree(old, ignore_errors=True)
        if os.path.isdir(project):
            os.rename(project, old)
        os.rename(fresh, project)
        shutil.rmtree(old, ignore_errors=True)
        return card
    finally:
        shutil.rmtree(fresh, ignore_errors=True)


def _configure(project, deployment, config):
    path = os.path.join(project, ".chalice", "config.json")
    settings = _project_config(project)
    settings["app_name"] = deployment.app_name
    stage = settings["stages"][deployment.stage]
    # The copy holds the bundled model too; the stage serves this deployment's.
    stage.setdefault("environment_variables", {})["MODEL_DIR"] = "model/%s" % deployment.name
    if "memory" in config:
        stage["lambda_memory_size"] = config["memory"]
    if "auth" in config:
        stage.setdefault("environment_variables", {})["API_AUTH"] = config["auth"]
    _write_json(path, settings)


def stage_auth(project, stage):
    settings = _project_config(project)
    env = dict(settings.get("environment_variables", {}),
               **settings["stages"][stage].get("environment_variables", {}))
    return (env.get("API_AUTH") or "none").lower()


def _run(args, cwd, what):
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise _error("%s failed (exit %d):\n%s" % (what, proc.returncode, tail))
    return proc.stdout + proc.stderr


def _chalice(project, *args):
    chalice = os.path.join(os.path.dirname(sys.executable), "chalice")
    return _run([chalice, "--project-dir", project, *args], project, "chalice %s" % args[0])


def build_and_deploy(deployment, config):
    wheels = config.get("wheels_dir") or os.path.join(PROJECT_DIR, "build", "wheels")
    _run([sys.executable, "-m", "tools.build.package", "--project-dir", deployment.project,
          "--stage", deployment.stage, "--wheels-dir", wheels, "--direct-upload"],
         PROJECT_DIR, "the build (tools.build.package)")
    _chalice(deployment.project, "deploy", "--stage", deployment.stage)


def _api_key(deployment, config):
    """The id of the stage's API key for this deployment (made once, with
    its usage plan, by tools.ops.api_keys), or None when the stage has no keys."""
    if stage_auth(deployment.project, deployment.stage) != "api_key":
        return None
    from tools.ops.api_keys import ApiKeyError, Keys, Project
    name = config.get("api_key_name") or "mlflow"
    try:
        keys = Keys(Project(deployment.project, deployment.stage))
        keys.create(name)
        return keys.plan_keys(keys.find_plan())[name]
    except ApiKeyError as exc:
        raise _error("API key: %s" % exc) from None


def _describe(deployment, card, model_uri, key_id):
    resources = deployment.chalice_state()
    api = resources.get("rest_api", {})
    return {
        "name": deployment.name, "stage": deployment.stage, "flavor": "sklearn",
        "model_uri": model_uri, "model_name": card["name"], "model_version": card["version"],
        "sha256": card["sha256"], "runtime": card["runtime"],
        "mlflow": card.get("mlflow", {}), "app_name": deployment.app_name,
        "function_arn": resources.get("api_handler", {}).get("lambda_arn"),
        "rest_api_id": api.get("rest_api_id"), "url": api.get("rest_api_url"),
        "api_key_id": key_id,
    }


class SklearnServerlessClient(BaseDeploymentClient):
    """create/update/delete/list/get/predict for one stage of the project."""

    def __init__(self, target_uri):
        super().__init__(target_uri)
        self.stage = stage_of(target_uri)

    def _deployment(self, name):
        return Deployment(self.stage, name)

    def create_deployment(self, name, model_uri, flavor=None, config=None, endpoint=None):
        _check_flavor(flavor)
        deployment = self._deployment(name)
        if deployment.record() is not None:
            raise _error("deployment %s already exists on stage %s (use update)"
                         % (name, self.stage), RESOURCE_ALREADY_EXISTS)
        return self._deploy(deployment, model_uri, _config(config))

    def update_deployment(self, name, model_uri=None, flavor=None, config=None, endpoint=None):
        _check_flavor(flavor)
        deployment = self._deployment(name)
        record = self._existing(deployment)
        config = dict(record.get("config", {}), **_config(config))
        return self._deploy(deployment, model_uri or record["model_uri"], _config(config))

    def _deploy(self, deployment, model_uri, config):
        card = prepare(deployment, deployment.project, model_uri, config)
        build_and_deploy(deployment, config)
        described = _describe(deployment, card, model_uri, _api_key(deployment, config))
        described["config"] = {k: v for k, v in config.items() if k not in ("force", "trust")
                               or v}
        deployment.write_record(described)
        return described

    def _existing(self, deployment):
        record = deployment.record()
        if record is None:
            raise _error("no deployment %s on stage %s" % (deployment.name, self.stage),
                         RESOURCE_DOES_NOT_EXIST)
        return record

    def delete_deployment(self, name, config=None, endpoint=None):
        deployment = self._deployment(name)
        record = self._existing(deployment)
        if record.get("api_key_id"):
            _delete_key(deployment, record)
        _chalice(deployment.project, "delete", "--stage", self.stage)
        shutil.rmtree(deployment.dir)

    def list_deployments(self, endpoint=None):
        stage_dir = os.path.join(home(), self.stage)
        names = sorted(os.listdir(stage_dir)) if os.path.isdir(stage_dir) else []
        return [record for record in (Deployment(self.stage, n).record() for n in names
                                      if NAME_RE.match(n)) if record is not None]

    def get_deployment(self, name, endpoint=None):
        return self._existing(self._deployment(name))

    def predict(self, deployment_name=None, inputs=None, endpoint=None):
        deployment = self._deployment(deployment_name)
        record = deployment.record()
        headers = {"Content-Type": "application/json"}
        if record is None:
            url = _local_url(deployment)
            if url is None:
                raise _error("no deployment %s on stage %s, and run-local is not serving it"
                             % (deployment_name, self.stage), RESOURCE_DOES_NOT_EXIST)
        else:
            url = record["url"]
            if record.get("api_key_id"):
                headers["x-api-key"] = _key_value(record)
        body = json.dumps(_payload(inputs)).encode()
        request = urllib.request.Request(url.rstrip("/") + "/invocations", data=body,
                                         headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                answer = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise _error("predict: %s answered %d: %s"
                         % (url, exc.code, exc.read()[:500].decode(errors="replace"))) from None
        except urllib.error.URLError as exc:
            raise _error("predict: %s cannot be reached: %s" % (url, exc.reason)) from None
        return PredictionsResponse.from_json(json.dumps(answer))

    def explain(self, deployment_name=None, df=None, endpoint=None):
        raise _error("explain is not offered by sklearn-serverless")


def _check_flavor(flavor):
    if flavor not in (None, "sklearn", "python_function"):
        raise _error("flavor %s is not served; sklearn-serverless serves the sklearn flavor"
                     % flavor)


def _payload(inputs):
    """MLflow's scoring request for ``inputs`` (what the CLI reads from
    --input-path: a DataFrame, or a dict already in MLflow's format)."""
    import pandas as pd
    if isinstance(inputs, pd.DataFrame):
        return {"dataframe_split": json.loads(inputs.to_json(orient="split", index=False))}
    if isinstance(inputs, dict):
        return inputs
    if isinstance(inputs, list):
        return {"inputs": inputs}
    raise _error("predict takes a DataFrame, a list of rows or an MLflow request object, "
                 "not %s" % type(inputs).__name__)


def _key_value(record):
    import boto3
    try:
        return boto3.client("apigateway").get_api_key(apiKey=record["api_key_id"],
                                                      includeValue=True)["value"]
    except Exception as exc:
        raise _error("the stage's API key %s cannot be read: %s"
                     % (record["api_key_id"], exc)) from None


def _delete_key(deployment, record):
    from tools.ops.api_keys import Keys, Project
    keys = Keys(Project(deployment.project, deployment.stage))
    plan = keys.find_plan()
    if plan is not None:
        for key_id in keys.plan_keys(plan).values():
            keys.apigw.delete_usage_plan_key(usagePlanId=plan["id"], keyId=key_id)
            keys.apigw.delete_api_key(apiKey=key_id)
        keys.apigw.delete_usage_plan(usagePlanId=plan["id"])


# --- run_local ------------------------------------------------------------------


def _local_url(deployment):
    try:
        with open(os.path.join(deployment.dir, LOCAL_RECORD)) as f:
            local = json.load(f)
        os.kill(local["pid"], 0)
    except (FileNotFoundError, ProcessLookupError, ValueError, KeyError):
        return None
    return local["url"]


def run_local(name, model_uri, flavor=None, config=None):
    """Publish ``model_uri`` into a copy of the project and serve it with
    ``chalice local`` on 127.0.0.1 until interrupted. MLflow hands a
    plugin's run_local no target URI, so the stage is ``-C stage=``."""
    _check_flavor(flavor)
    config = _config(config)
    stage = stage_of("%s:/%s" % (TARGET, config.pop("stage", DEFAULT_STAGE)))
    deployment = Deployment(stage, name)
    port = int(config.get("port", 8000))
    prepare(deployment, deployment.local_project, model_uri, config)
    url = "http://127.0.0.1:%d" % port
    chalice = os.path.join(os.path.dirname(sys.executable), "chalice")
    proc = subprocess.Popen([chalice, "local", "--no-autoreload", "--host", "127.0.0.1",
                             "--port", str(port), "--stage", stage],
                            cwd=deployment.local_project)
    local = os.path.join(deployment.dir, LOCAL_RECORD)
    _write_json(local, {"url": url, "pid": proc.pid})
    print("serving %s (%s) at %s; predict -t %s:/%s --name %s goes there while it runs"
          % (name, model_uri, url, TARGET, stage, name), flush=True)
    # A terminated plugin must not leave chalice local serving behind it.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        proc.wait()
    finally:
        if os.path.exists(local):
            os.remove(local)


def _interrupt(signum, frame):
    raise KeyboardInterrupt
