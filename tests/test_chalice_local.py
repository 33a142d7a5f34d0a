"""A real ``chalice local`` on a free loopback port (the ``local_url``
fixture), spoken to over HTTP; and ``make serve`` itself, which starts it."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

from tests.conftest import IRIS_ROWS, PROJECT_DIR, free_port
from tools.build.project_copy import copy_project


def request(url, body=None, content_type="application/json"):
    data = body.encode() if isinstance(body, str) else body
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    if data is not None:
        req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read())


def test_predicts_over_http(local_url):
    status, headers, body = request(local_url + "/model", json.dumps({"instances": IRIS_ROWS}))
    assert status == 200
    assert body["predictions"] == ["setosa", "versicolor", "virginica"]
    assert headers["X-Model-Version"] == "1.0.0"


def test_csv_and_errors_over_http(local_url):
    status, _, body = request(local_url + "/model", "5.1,3.5,1.4,0.2\n", "text/csv")
    assert (status, body["predictions"]) == (200, ["setosa"])
    status, _, body = request(local_url + "/model", '{"instances": [[1, 2, "x", 4]]}')
    assert status == 422 and "instances[0][2] (petal_length)" in body["Message"]
    status, _, body = request(local_url + "/model", "hello", "text/plain")
    assert status == 415 and set(body) == {"Code", "Message"}


def test_health_and_card_over_http(local_url):
    assert request(local_url + "/health")[0] == 200
    status, _, card = request(local_url + "/model")
    assert status == 200 and card["name"] == "iris-classifier"


def test_make_serve_keeps_serving_while_its_files_are_read(tmp_path):
    """Chalice's reloader restarts the server on any event under the project
    when watchdog is installed (mkdocs brings it into the dev venv), a file
    merely opened included: the server reading its own model would restart
    it forever. ``make serve`` must come up once and stay up."""
    project = copy_project(str(tmp_path / "project"))
    for name in ("Makefile", "requirements-dev.txt"):
        shutil.copy2(os.path.join(PROJECT_DIR, name), project)
    port = free_port()
    url = "http://127.0.0.1:%d/health" % port
    stamp = os.path.join(sys.prefix, ".installed-serve")  # this venv has the runtime already
    log_path = tmp_path / "serve.log"
    with open(log_path, "w+b") as log:
        proc = subprocess.Popen(["make", "-s", "-o", stamp, "serve", "VENV=" + sys.prefix,
                                 "PORT=%d" % port], cwd=project, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 90
            while True:
                try:
                    with urllib.request.urlopen(url, timeout=5) as answer:
                        assert answer.status == 200
                    break
                except OSError:
                    assert proc.poll() is None and time.monotonic() < deadline, \
                        log_path.read_text()
                    time.sleep(0.3)
            for _ in range(3):  # what a user, an editor or the server itself does
                with open(os.path.join(project, "model", "iris", "model.json")) as card:
                    card.read()
                time.sleep(1)
            with urllib.request.urlopen(url, timeout=5) as answer:
                assert answer.status == 200
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
    assert "Restarting local dev server" not in log_path.read_text()
