"""The peers' own conformance checks, ported: one module per peer (MLflow,
KServe V1 and V2, the Open Inference Protocol, Triton, SageMaker). Each
check's docstring names its source (repository, path, test name, or the
specification section) and says how it was adapted: the peers test their
own toy models, these checks send the same requests shaped for the served
model (the bundled iris classifier: four number features, three classes).

Checks run through Chalice's test client on the real app; the few that
need a peer's real client library run it against a real ``chalice local``
(the session's ``local_url``). Answers are compared with what ``POST
/model`` answers for the same rows, in the same run. Checks of behaviour
this product deliberately does not have are kept as skipped checks whose
reason starts with "out of scope" (docs/protocols-conformance.md), so that
``python -m tools.harden.conformance_table`` counts them per peer.
"""
import json

import pytest
from chalice.test import Client

import app as app_module
from chalicelib.protocols import service
from tests.conftest import BUNDLED_MODEL, FEATURES, IRIS_ROWS

NAME, VERSION = "iris-classifier", "1.0.0"
CLASSES = ["setosa", "versicolor", "virginica"]


def out_of_scope(reason):
    """A ported check of something this product deliberately does not do."""
    return pytest.mark.skip(reason="out of scope: " + reason)


class Peer:
    """The real app behind Chalice's test client, with request helpers."""

    def __init__(self, client):
        self.client = client

    def get(self, path, headers=None):
        return self.client.http.get(path, headers=headers or {})

    def post(self, path, body, content_type="application/json", headers=None):
        if not isinstance(body, (str, bytes)):
            body = json.dumps(body)
        headers = dict(headers or {})
        if content_type is not None:
            headers.setdefault("Content-Type", content_type)
        return self.client.http.post(path, headers=headers, body=body)

    def reference(self, rows=IRIS_ROWS):
        """``POST /model``'s answer for ``rows``, with probabilities."""
        response = self.post("/model", {"instances": rows, "probabilities": True})
        assert response.status_code == 200, response.body
        return json.loads(response.body)


def serve(model_dir):
    saved = app_module.SERVICE
    app_module.SERVICE = service.from_environment(
        {"MODEL_DIR": str(model_dir), "LOG_REQUESTS": "false"})
    client = Client(app_module.app)
    client.__enter__()

    def close():
        client.__exit__(None, None, None)
        app_module.SERVICE = saved
    return Peer(client), close


@pytest.fixture(scope="module")
def peer():
    """The app serving the bundled iris classifier."""
    served, close = serve(BUNDLED_MODEL)
    yield served
    close()


@pytest.fixture
def unavailable(tmp_path):
    """The app whose model cannot be loaded (no card in its directory)."""
    served, close = serve(tmp_path)
    yield served
    close()


def body_of(response):
    return json.loads(response.body)


__all__ = ["CLASSES", "FEATURES", "IRIS_ROWS", "NAME", "VERSION", "Peer", "body_of",
           "out_of_scope"]
