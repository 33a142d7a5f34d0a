"""A remote artifact that S3 cannot serve at init is tried again by later
requests, with bounded exponential backoff, in the same process: each 503
says when the next attempt is (in its message and ``Retry-After``), and the
first request after S3 recovers is served.

S3 is moto's server on loopback; its failures are real ones: the bucket
does not exist yet, or a loopback proxy in front of moto closes every
connection until it is told to forward. The retry itself is the app's own
code, run for real; only its first delay is shortened for the test.
"""
import hashlib
import json
import os
import socket
import threading
import time

import pytest

from chalicelib.http.errors import ModelLoadError
from chalicelib.runtimes import served_model
from tests.aws_emulator import running_emulator
from tests.conftest import BUNDLED_MODEL, IRIS_ROWS, body_of

BUCKET = "late-bucket"
KEY = "iris/1/model.joblib"
FIRST_DELAY = 0.3


class FlakyProxy:
    """A TCP proxy on 127.0.0.1: closes every connection while ``refusing``,
    forwards to ``target`` (host, port) once it is cleared."""

    def __init__(self, target):
        self.target = target
        self.refusing = True
        self.accepted = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.accepted += 1
            if self.refusing:
                conn.close()
                continue
            upstream = socket.create_connection(self.target)
            for a, b in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.listener.close()


@pytest.fixture
def emulator():
    with running_emulator() as emu:
        yield emu


@pytest.fixture
def remote_model(tmp_path):
    """The bundled model's card naming its pickle at s3://late-bucket/..."""
    with open(os.path.join(BUNDLED_MODEL, "model.joblib"), "rb") as f:
        data = f.read()
    card = json.load(open(os.path.join(BUNDLED_MODEL, "model.json")))
    card.update(artifact="s3://%s/%s" % (BUCKET, KEY), runtime="scikit-learn",
                sha256=hashlib.sha256(data).hexdigest(),
                onnx={"not_used": "the artifact is served from S3"})
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "model.json").write_text(json.dumps(card))
    return model_dir, data


def _aws_env(monkeypatch, emulator, tmp_path, endpoint=None):
    for name in [k for k in os.environ if k.upper().startswith("AWS_")]:
        monkeypatch.delenv(name)
    for name, value in emulator.env({}).items():
        monkeypatch.setenv(name, value)
    if endpoint:
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("MODEL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(served_model, "RETRY_FIRST_S", FIRST_DELAY)


def _unavailable(api):
    response = api.post({"instances": IRIS_ROWS})
    assert response.status_code == 503, response.body
    return body_of(response)["Message"], int(response.headers["Retry-After"])


def _wait_for_attempt(api):
    time.sleep(api.service.model.retry_after() or 0)
    while api.service.model.retry_after() not in (None, 1) or \
            api.service.model._retry_at > time.monotonic():
        time.sleep(0.05)


def test_missing_bucket_then_created_is_served_without_a_new_instance(
        emulator, remote_model, serve, monkeypatch, tmp_path):
    model_dir, data = remote_model
    _aws_env(monkeypatch, emulator, tmp_path)
    api = serve(MODEL_DIR=model_dir)
    message, retry_after = _unavailable(api)
    assert "does not exist in S3 (NoSuchBucket)" in message
    assert "the next attempt to load it is in 1 s" in message and retry_after == 1
    # Still missing at the second attempt: the delay doubles.
    _wait_for_attempt(api)
    message, _ = _unavailable(api)
    assert api.service.model._failures == 2
    assert api.service.model._retry_at - time.monotonic() > FIRST_DELAY * 1.5
    s3 = emulator.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=data)
    _wait_for_attempt(api)
    response = api.post({"instances": IRIS_ROWS})
    assert response.status_code == 200, response.body
    assert "Retry-After" not in response.headers
    assert api.get("/health").status_code == 200


def test_connections_refused_then_forwarded_recover(emulator, remote_model, serve,
                                                    monkeypatch, tmp_path):
    model_dir, data = remote_model
    s3 = emulator.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=data)
    host, port = emulator.endpoint_url.rsplit("/", 1)[-1].rsplit(":", 1)
    proxy = FlakyProxy((host, int(port)))
    try:
        _aws_env(monkeypatch, emulator, tmp_path, "http://127.0.0.1:%d" % proxy.port)
        api = serve(MODEL_DIR=model_dir)
        message, retry_after = _unavailable(api)
        assert "cannot be downloaded from S3" in message and retry_after >= 1
        assert proxy.accepted >= 1
        proxy.refusing = False
        _wait_for_attempt(api)
        response = api.post({"instances": IRIS_ROWS})
        assert response.status_code == 200, response.body
    finally:
        proxy.close()


def test_the_backoff_is_bounded(monkeypatch):
    # The loader is replaced here only to count delays without S3; the
    # tests above run the same code against the emulator.
    model = served_model.ServedModel("/nonexistent")
    delays = []
    def failing(*_):
        raise ModelLoadError("s3 down", retryable=True)
    monkeypatch.setattr(served_model, "load_model_dir", failing)
    for _ in range(12):
        model._load()
        delays.append(model._retry_at - time.monotonic())
    assert delays[0] == pytest.approx(served_model.RETRY_FIRST_S, abs=0.1)
    assert max(delays) <= served_model.RETRY_MAX_S + 0.1
    assert delays[-1] == pytest.approx(served_model.RETRY_MAX_S, abs=0.1)


def test_a_failure_that_cannot_pass_is_not_retried(tmp_path, serve):
    card = json.load(open(os.path.join(BUNDLED_MODEL, "model.json")))
    card["sha256"] = "0" * 64
    (tmp_path / "model.json").write_text(json.dumps(card))
    for name in ("model.joblib", "model.onnx"):
        (tmp_path / name).write_bytes(open(os.path.join(BUNDLED_MODEL, name), "rb").read())
    api = serve(MODEL_DIR=tmp_path, MODEL_RUNTIME="scikit-learn")
    response = api.post({"instances": IRIS_ROWS})
    assert "does not match the card's" in body_of(response)["Message"]
    assert response.status_code == 503 and "Retry-After" not in response.headers
    assert "next attempt" not in body_of(response)["Message"]
