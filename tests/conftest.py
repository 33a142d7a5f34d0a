"""Shared fixtures: the real app behind Chalice's test client, with a fresh
service per test so that MODEL_DIR and limits can vary."""
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time

import zipfile

import pytest
from chalice.test import Client

import app as app_module
from chalicelib.protocols import service

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUNDLED_MODEL = os.path.join(PROJECT_DIR, "model")
IRIS_ROWS = [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [6.7, 3.0, 5.2, 2.3]]
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


class Api:
    """A Chalice test client bound to one Service, with JSON helpers."""

    def __init__(self, client, service_):
        self.client = client
        self.service = service_

    def post(self, body, content_type="application/json", query=""):
        if not isinstance(body, (str, bytes)):
            body = json.dumps(body)
        headers = {} if content_type is None else {"Content-Type": content_type}
        return self.client.http.post("/model" + query, headers=headers, body=body)

    def get(self, path):
        return self.client.http.get(path)


def body_of(response):
    return json.loads(response.body)


@pytest.fixture
def serve(monkeypatch):
    """``serve(**env)`` -> Api for the real app with a service built from env."""
    opened = []

    def _serve(**env):
        env = {k: str(v) for k, v in env.items()}
        env.setdefault("MODEL_DIR", BUNDLED_MODEL)
        env.setdefault("LOG_REQUESTS", "false")
        monkeypatch.setattr(app_module, "SERVICE", service.from_environment(env))
        client = Client(app_module.app)
        client.__enter__()
        opened.append(client)
        return Api(client, app_module.SERVICE)

    yield _serve
    for client in opened:
        client.__exit__(None, None, None)


@pytest.fixture
def api(serve):
    return serve()


@pytest.fixture
def model_copy(tmp_path):
    """A writable copy of the bundled model directory (served by ONNX Runtime)."""
    target = tmp_path / "model"
    target.mkdir()
    for name in ("model.joblib", "model.json", "model.onnx"):
        shutil.copyfile(os.path.join(BUNDLED_MODEL, name), target / name)
    return target


@pytest.fixture
def pickled_model_copy(model_copy):
    """The bundled model directory as a model that was not compiled to ONNX:
    served by scikit-learn from its pickle (what the pickle checks guard)."""
    card = json.loads((model_copy / "model.json").read_text())
    card["runtime"] = "scikit-learn"
    card["onnx"] = {"not_used": "a test of the scikit-learn runtime"}
    (model_copy / "model.json").write_text(json.dumps(card))
    os.remove(model_copy / "model.onnx")
    return model_copy


@pytest.fixture(scope="session")
def iris_model():
    import joblib
    return joblib.load(os.path.join(BUNDLED_MODEL, "model.joblib"))


CHALICE = os.path.join(os.path.dirname(sys.executable), "chalice")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def chalice_local(log_path, stage=None, **env):
    """A real ``chalice local`` on a free 127.0.0.1 port, yielding its URL
    (``stage``: the config stage whose variables it applies; default dev).
    No autoreload, so edits elsewhere in the tree do not restart it mid-run;
    its output goes to ``log_path`` (a pipe nobody reads would fill and stall
    it)."""
    port = free_port()
    environ = dict(os.environ, AWS_DEFAULT_REGION="us-east-1", **env)
    with open(log_path, "w+b") as log:
        proc = subprocess.Popen([CHALICE, "local", "--no-autoreload", "--host", "127.0.0.1",
                                 "--port", str(port)] + (["--stage", stage] if stage else []),
                                cwd=PROJECT_DIR, env=environ, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        log.seek(0)
                        raise RuntimeError("chalice local did not start: %s" % log.read().decode())
                    time.sleep(0.2)
            yield "http://127.0.0.1:%d" % port
        finally:
            proc.terminate()
            proc.wait(timeout=10)


@pytest.fixture(scope="session")
def local_url(tmp_path_factory):
    """URL of a real ``chalice local`` serving the project as it is."""
    with chalice_local(tmp_path_factory.mktemp("chalice-local") / "output.log") as url:
        yield url


class BuiltProject:
    def __init__(self, path, output):
        self.path = path
        self.output = output


@pytest.fixture(scope="session")
def built_project(tmp_path_factory):
    """A copy of the project built once by ``tools.build_package`` (what
    ``make build`` runs), shared by the package, template and deploy tests.
    A stale cached zip and a stray .pyc are planted first: the build must not
    ship them."""
    from tests.packaging import build_package, copy_project
    project = copy_project(tmp_path_factory.mktemp("built") / "project")
    deployments = project / ".chalice" / "deployments"
    deployments.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(deployments / ("0" * 32 + "-python3.12.zip"), "w") as zf:
        zf.writestr("app.py", "raise SystemExit('stale package')\n")
    stray = project / "chalicelib" / "__pycache__"
    stray.mkdir(exist_ok=True)
    (stray / "gone.cpython-312.pyc").write_bytes(b"stale")
    return BuiltProject(project, build_package(project))


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: publishes real models (tens of seconds each)")
