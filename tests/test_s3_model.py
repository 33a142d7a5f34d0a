"""A model whose artifact lives in S3 (``publisher.publish --upload``), proven
against moto's S3 server on loopback (tests/aws_emulator.py).

* The app (Chalice test client) downloads the artifact named by the card,
  verifies its sha256 and serves it; a changed object (wrong sha256) and a
  missing one are a 503 saying why, with nothing unpickled.
* The stage policy: ``tools.ops.model_policy`` adds s3:GetObject on exactly that
  object, and the build refuses a policy without it or with more.
* The packaged Lambda: ``tools.build.package`` + ``chalice package``, the zip
  unzipped read-only and run isolated (``python -I -S -B``) as in
  tests/test_package.py, with one addition: a directory holding only the
  venv's boto3, botocore and their dependencies (s3transfer, jmespath,
  urllib3, dateutil, six) on ``sys.path`` *after* the package. That is what
  Lambda's python3.12 runtime provides in ``/var/runtime``, behind
  ``/var/task``; the package itself ships no boto3 (asserted).
"""
import hashlib
import json
import os
import subprocess
import sys
import zipfile

import joblib
import numpy as np
import pytest

from tests.aws_emulator import running_emulator
from tests.conftest import body_of
from tools.ops import lambda_events as ev
from tools.ops import model_policy
from tools.build.package import extract_read_only
from tools.build.project_copy import copy_project, make_writable

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = sys.executable
CHALICE = os.path.join(os.path.dirname(sys.executable), "chalice")
WHEELS = os.path.join(REPO, "build", "wheels")
BUCKET = "models-bucket"
KEY = "forest/1.0.0/model.joblib"
URI = "s3://%s/%s" % (BUCKET, KEY)
MiB = 1 << 20
# What the Lambda python3.12 runtime has in /var/runtime (boto3 and what it imports).
RUNTIME_MODULES = ("boto3", "botocore", "s3transfer", "jmespath", "urllib3", "dateutil", "six.py")

RUNNER = r"""
import json, sys
package, runtime, events_file, out_file = sys.argv[1:5]
stdlib = [p for p in sys.path if p]
sys.path[:] = [package] + stdlib + [runtime]
with open(events_file) as f:
    cases = json.load(f)
import app
class Context:
    function_name = "sklearn-serverless-prod"
    aws_request_id = "00000000-0000-0000-0000-000000000001"
    memory_limit_in_mb = "512"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:sklearn-serverless-prod"
    def get_remaining_time_in_millis(self):
        return 10000
answers = {name: app.app(event, Context()) for name, event in cases}
modules = {n: getattr(m, "__file__", None) for n, m in sys.modules.items()
           if getattr(m, "__file__", None)}
with open(out_file, "w") as f:
    json.dump({"answers": answers, "modules": modules}, f)
"""


def train_forest(path, n_estimators=50):
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier
    X, y = make_classification(n_samples=2000, n_features=20, n_informative=8, random_state=0)
    forest = RandomForestClassifier(n_estimators=n_estimators, random_state=0).fit(X, y)
    joblib.dump(forest, path)
    return forest, X[:5]


@pytest.fixture(scope="module")
def emulator():
    with running_emulator() as emu:
        emu.client("s3").create_bucket(Bucket=BUCKET)
        yield emu


@pytest.fixture(scope="module")
def forest(tmp_path_factory):
    base = tmp_path_factory.mktemp("forest")
    path = str(base / "forest.joblib")
    model, rows = train_forest(path)
    return path, model, rows


def publish(emulator, artifact, out_dir, cwd=REPO, *extra):
    return subprocess.run(
        [PYTHON, "-m", "publisher.publish", artifact, "--name", "s3-forest", "--version", "1.0.0",
         "--upload", URI, "--out", str(out_dir), *extra],
        cwd=cwd, env=emulator.env(), capture_output=True, text=True, timeout=300)


def put_original(emulator, artifact):
    with open(artifact, "rb") as f:
        emulator.client("s3").put_object(Bucket=BUCKET, Key=KEY, Body=f.read())


# ---------------------------------------------------------------- the app


@pytest.fixture
def s3_env(emulator, monkeypatch, tmp_path):
    """The test process's boto3 talks to the emulator only; a fresh /tmp."""
    for name in [k for k in os.environ if k.upper().startswith("AWS_")]:
        monkeypatch.delenv(name)
    for name, value in emulator.env({}).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MODEL_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_publish_upload_writes_a_card_naming_the_object(emulator, forest, tmp_path):
    artifact, model, rows = forest
    out = tmp_path / "model"
    done = publish(emulator, artifact, out)
    assert done.returncode == 0, done.stderr
    assert URI in done.stdout
    card = json.loads((out / "model.json").read_text())
    assert card["artifact"] == URI
    with open(artifact, "rb") as f:
        data = f.read()
    assert card["sha256"] == hashlib.sha256(data).hexdigest()
    assert not (out / "model.joblib").exists()  # it is in S3, not in the package
    stored = emulator.client("s3").get_object(Bucket=BUCKET, Key=KEY)["Body"].read()
    assert stored == data


def test_publish_refuses_a_bad_upload_uri(emulator, forest, tmp_path):
    done = subprocess.run(
        [PYTHON, "-m", "publisher.publish", forest[0], "--name", "x", "--version", "1",
         "--upload", "s3://Bad_Bucket", "--out", str(tmp_path / "m")],
        cwd=REPO, env=emulator.env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert "--upload" in done.stderr and "s3://bucket/key" in done.stderr


def test_app_serves_the_artifact_from_s3(emulator, forest, tmp_path, serve, s3_env):
    artifact, model, rows = forest
    out = tmp_path / "model"
    assert publish(emulator, artifact, out).returncode == 0
    api = serve(MODEL_DIR=out)
    response = api.post({"instances": rows.tolist(), "probabilities": True})
    assert response.status_code == 200, response.body
    body = body_of(response)
    assert body["predictions"] == model.predict(rows).tolist()
    assert np.allclose(body["probabilities"], model.predict_proba(rows), rtol=1e-12)
    card = json.loads((out / "model.json").read_text())
    cached = s3_env / ("model-%s.joblib" % card["sha256"])
    assert cached.is_file()  # downloaded once into the cache (Lambda's /tmp)


def test_changed_object_is_503_and_nothing_is_unpickled(emulator, forest, tmp_path, serve,
                                                        s3_env, caplog):
    artifact, model, rows = forest
    out = tmp_path / "model"
    assert publish(emulator, artifact, out).returncode == 0
    # Someone overwrites the object with another pickle (here: an os.system call).
    evil = b"\x80\x02cos\nsystem\nq\x00."
    emulator.client("s3").put_object(Bucket=BUCKET, Key=KEY, Body=evil)
    try:
        api = serve(MODEL_DIR=out)
        for response in (api.post({"instances": rows.tolist()}), api.get("/health")):
            assert response.status_code == 503, response.body
            message = body_of(response)["Message"]
            assert "does not match the card's sha256" in message
            assert BUCKET not in message  # the bucket is for the log, not the client
        assert "has sha256 %s" % hashlib.sha256(evil).hexdigest() in caplog.text
        assert not list(s3_env.glob("*"))  # nothing kept, not even the download
    finally:
        put_original(emulator, artifact)


def test_missing_object_is_503(emulator, forest, tmp_path, serve, s3_env):
    artifact, model, rows = forest
    out = tmp_path / "model"
    assert publish(emulator, artifact, out).returncode == 0
    emulator.client("s3").delete_object(Bucket=BUCKET, Key=KEY)
    try:
        api = serve(MODEL_DIR=out)
        response = api.post({"instances": rows.tolist()})
        assert response.status_code == 503, response.body
        assert "does not exist in S3 (NoSuchKey)" in body_of(response)["Message"]
    finally:
        put_original(emulator, artifact)


def test_card_refuses_an_artifact_that_is_neither_local_nor_s3(model_copy, serve):
    card = json.loads((model_copy / "model.json").read_text())
    card["artifact"] = "https://example.com/model.joblib"
    (model_copy / "model.json").write_text(json.dumps(card))
    response = serve(MODEL_DIR=model_copy).post({"instances": [[1, 2, 3, 4]]})
    assert response.status_code == 503
    assert "s3://bucket/key" in body_of(response)["Message"]


# ---------------------------------------------------------------- the policy


def test_policy_grants_exactly_the_object():
    card = {"artifact": URI}
    policy = {"Version": "2012-10-17", "Statement": [
        {"Sid": "WriteOwnLogs", "Effect": "Allow", "Action": "logs:PutLogEvents",
         "Resource": "arn:*:logs:*:*:log-group:x:*"}]}
    with pytest.raises(model_policy.PolicyError, match="does not grant s3:GetObject"):
        model_policy.check(policy, card)
    fixed = model_policy.updated(policy, card)
    model_policy.check(fixed, card)
    assert fixed["Statement"][0] == policy["Statement"][0]
    assert fixed["Statement"][1] == {"Sid": "ReadModelArtifact", "Effect": "Allow",
                                     "Action": "s3:GetObject",
                                     "Resource": "arn:aws:s3:::%s/%s" % (BUCKET, KEY)}
    wider = json.loads(json.dumps(fixed))
    wider["Statement"][1]["Resource"] = "arn:aws:s3:::%s/*" % BUCKET
    with pytest.raises(model_policy.PolicyError, match="beyond the model artifact"):
        model_policy.check(wider, card)
    more = json.loads(json.dumps(fixed))
    more["Statement"].append({"Effect": "Allow", "Action": "s3:PutObject",
                              "Resource": "arn:aws:s3:::%s/%s" % (BUCKET, KEY)})
    with pytest.raises(model_policy.PolicyError, match="beyond the model artifact"):
        model_policy.check(more, card)
    # Back to a local model: the grant goes, and a leftover one is refused.
    with pytest.raises(model_policy.PolicyError, match="ships in the package"):
        model_policy.check(fixed, {"artifact": "model.joblib"})
    assert model_policy.updated(fixed, {"artifact": "model.joblib"}) == policy
    with pytest.raises(model_policy.PolicyError, match="wildcard"):
        model_policy.object_arn("s3://%s/forest/*" % BUCKET)


# ---------------------------------------------------------------- the packaged Lambda


def runtime_dir(path):
    """Only boto3 and what it imports, from the venv: Lambda's /var/runtime."""
    import boto3
    site = os.path.dirname(os.path.dirname(boto3.__file__))
    os.makedirs(path)
    for name in RUNTIME_MODULES:
        os.symlink(os.path.join(site, name), os.path.join(path, name))
    return path


def run_packaged(package, runtime, cases, tmp_path, env):
    tmp_path.mkdir(parents=True, exist_ok=True)
    events, out = tmp_path / "events.json", tmp_path / "answers.json"
    events.write_text(json.dumps(cases))
    with open(os.path.join(REPO, ".chalice", "config.json")) as f:
        config = json.load(f)
    full = dict(env, LANG="C.UTF-8", PYTHONDONTWRITEBYTECODE="1",
                AWS_LAMBDA_FUNCTION_NAME="sklearn-serverless-prod", LAMBDA_TASK_ROOT=package,
                MODEL_CACHE_DIR=str(tmp_path / "tmp"))  # a fresh /tmp: a cold start
    full.update(config.get("environment_variables", {}))
    full.update(config["stages"]["prod"].get("environment_variables", {}))
    proc = subprocess.run([PYTHON, "-I", "-S", "-B", "-c", RUNNER, package, runtime,
                           str(events), str(out)], cwd=package, env=full,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout
    result = json.loads(out.read_text())
    result["stdout"] = proc.stdout
    return result


def build_env(emulator):
    """The emulator's AWS settings, but this machine's proxy kept for pip
    (the build downloads wheels from PyPI on a cold cache); loopback direct."""
    env = emulator.env()
    proxies = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
    for name in [k for k in env if k.lower() in proxies]:
        del env[name]
    env.update({k: v for k, v in os.environ.items() if k.lower() in proxies})
    no_proxy = ",".join(filter(None, [os.environ.get("NO_PROXY") or os.environ.get("no_proxy"),
                                      "127.0.0.1,localhost"]))
    env["NO_PROXY"] = env["no_proxy"] = no_proxy
    return env


@pytest.fixture(scope="module")
def packaged(emulator, forest, tmp_path_factory):
    base = tmp_path_factory.mktemp("s3pkg")
    project = copy_project(str(base / "project"))
    artifact = forest[0]
    done = publish(emulator, artifact, os.path.join(project, "model"), project)
    assert done.returncode == 0, done.stderr
    assert not os.path.lexists(os.path.join(project, "vendor", "model", "model.joblib"))
    env = build_env(emulator)
    refused = subprocess.run(
        [PYTHON, "-m", "tools.build.package", "--project-dir", project, "--wheels-dir", WHEELS],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert refused.returncode == 2
    assert "does not grant s3:GetObject on arn:aws:s3:::%s/%s" % (BUCKET, KEY) in refused.stderr
    granted = subprocess.run([PYTHON, "-m", "tools.ops.model_policy", "--project-dir", project],
                             cwd=REPO, capture_output=True, text=True, timeout=60)
    assert granted.returncode == 0, granted.stderr
    built = subprocess.run(
        [PYTHON, "-m", "tools.build.package", "--project-dir", project, "--wheels-dir", WHEELS],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert built.returncode == 0, built.stdout + built.stderr
    out = base / "out"
    packaged = subprocess.run([CHALICE, "--project-dir", project, "package", "--stage", "prod",
                               str(out)], cwd=project, env=env, capture_output=True, text=True,
                              timeout=900)
    assert packaged.returncode == 0, packaged.stdout + packaged.stderr
    assert "Reusing existing deployment package" in packaged.stdout + packaged.stderr
    task = str(base / "task")
    extract_read_only(str(out / "deployment.zip"), task)
    yield {"project": project, "zip": str(out / "deployment.zip"), "task": task,
           "build": built.stdout, "sam": json.loads((out / "sam.json").read_text()),
           "runtime": runtime_dir(str(base / "runtime"))}
    make_writable(task)


def test_packaged_lambda_serves_the_forest_from_s3(packaged, emulator, forest, tmp_path):
    artifact, model, rows = forest
    card = json.load(open(os.path.join(packaged["project"], "model", "model.json")))
    with zipfile.ZipFile(packaged["zip"]) as zf:
        names = set(zf.namelist())
        assert json.loads(zf.read("model/model.json")) == card  # the card ships
    assert "model/model.joblib" not in names  # the artifact does not
    assert not [n for n in names if n.startswith(("boto3/", "botocore/", "s3transfer/"))]
    print("s3 forest: %.2f MiB zipped (artifact %.2f MiB in S3)"
          % (os.path.getsize(packaged["zip"]) / MiB, os.path.getsize(artifact) / MiB))
    assert "artifact %s" % URI in packaged["build"] and "budget: " in packaged["build"]

    cases = [("predict", ev.post_model(json.dumps({"instances": rows.tolist(),
                                                   "probabilities": True}))),
             ("health", ev.get("/health"))]
    result = run_packaged(packaged["task"], packaged["runtime"], cases, tmp_path, emulator.env({}))
    answers = result["answers"]
    assert answers["predict"]["statusCode"] == 200, answers["predict"]
    body = json.loads(answers["predict"]["body"])
    assert body["predictions"] == model.predict(rows).tolist()
    assert np.allclose(body["probabilities"], model.predict_proba(rows), rtol=1e-12)
    assert answers["health"]["statusCode"] == 200
    # sklearn from the package, boto3 from the "runtime", nothing else outside the stdlib.
    package = os.path.realpath(packaged["task"]) + os.sep
    runtime = os.path.realpath(os.path.dirname(os.path.dirname(
        os.path.realpath(os.path.join(packaged["runtime"], "boto3"))))) + os.sep
    stdlib = os.path.realpath(sys.base_prefix) + os.sep
    for name, path in result["modules"].items():
        real = os.path.realpath(path)
        assert real.startswith((package, stdlib, runtime)), (name, path)
    assert os.path.realpath(result["modules"]["sklearn"]).startswith(package)
    assert os.path.realpath(result["modules"]["boto3"]).startswith(runtime)
    assert os.path.isfile(os.path.join(str(tmp_path / "tmp"), "model-%s.joblib" % card["sha256"]))


def test_packaged_lambda_answers_503_for_a_changed_or_missing_object(packaged, emulator, forest,
                                                                   tmp_path):
    artifact = forest[0]
    s3 = emulator.client("s3")
    cases = [("predict", ev.post_model(json.dumps({"instances": [[0.0] * 20]}))),
             ("health", ev.get("/health"))]
    try:
        s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"\x80\x04N.")  # another artifact
        changed = run_packaged(packaged["task"], packaged["runtime"], cases, tmp_path / "a",
                               emulator.env({}))
        s3.delete_object(Bucket=BUCKET, Key=KEY)
        missing = run_packaged(packaged["task"], packaged["runtime"], cases, tmp_path / "b",
                               emulator.env({}))
    finally:
        put_original(emulator, artifact)
    for result, reason in ((changed, "does not match the card's sha256"),
                           (missing, "does not exist in S3 (NoSuchKey)")):
        for name in ("predict", "health"):
            answer = result["answers"][name]
            assert answer["statusCode"] == 503, answer
            assert reason in json.loads(answer["body"])["Message"]
