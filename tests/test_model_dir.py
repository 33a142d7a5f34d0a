"""MODEL_DIR, the card's checksum and the model's life cycle: loaded once at
start, lazily under Chalice's CLI, and a broken model leaves the app up."""
import json
import logging
import os
import subprocess
import sys

import pytest

from chalicelib.protocols import model_api, service
from tests.conftest import BUNDLED_MODEL, IRIS_ROWS, PROJECT_DIR, body_of


def assert_unavailable(api, *fragments):
    for response in (api.post({"instances": IRIS_ROWS}), api.get("/health"), api.get("/model")):
        assert response.status_code == 503, response.body
        body = body_of(response)
        assert set(body) == {"Code", "Message"}
        for fragment in fragments:
            assert fragment in body["Message"]


def rewrite_card(model_dir, **changes):
    path = model_dir / "model.json"
    card = json.loads(path.read_text())
    card.update(changes)
    path.write_text(json.dumps(card))


def test_model_dir_serves_another_model_directory(serve, model_copy):
    rewrite_card(model_copy, name="iris-copy", version="7.1")
    api = serve(MODEL_DIR=model_copy)
    response = api.post({"instances": IRIS_ROWS})
    assert response.status_code == 200
    assert body_of(response)["model"] == {"name": "iris-copy", "version": "7.1"}
    assert response.headers["X-Model-Version"] == "7.1"


def test_checksum_mismatch_is_503_and_logged(serve, pickled_model_copy, caplog):
    with open(pickled_model_copy / "model.joblib", "ab") as f:
        f.write(b"tampered")
    with caplog.at_level(logging.ERROR):
        api = serve(MODEL_DIR=pickled_model_copy)
    assert_unavailable(api, "sha256", "does not match the card")
    assert "does not match the card" in caplog.text


def test_unloadable_artifact_is_503(serve, pickled_model_copy):
    data = b"not a pickle at all"
    (pickled_model_copy / "model.joblib").write_bytes(data)
    import hashlib
    rewrite_card(pickled_model_copy, sha256=hashlib.sha256(data).hexdigest())
    assert_unavailable(serve(MODEL_DIR=pickled_model_copy), "artifact does not load")


@pytest.mark.parametrize("remove,fragment", [("model.json", "no model card"),
                                             ("model.joblib", "no model artifact")])
def test_missing_files_are_503(serve, pickled_model_copy, remove, fragment):
    os.remove(pickled_model_copy / remove)
    assert_unavailable(serve(MODEL_DIR=pickled_model_copy), fragment)


def test_invalid_card_is_503(serve, model_copy):
    (model_copy / "model.json").write_text('{"name": "x"}')
    assert_unavailable(serve(MODEL_DIR=model_copy), "model card lacks")


def test_feature_count_disagreeing_with_estimator_is_503(serve, pickled_model_copy):
    rewrite_card(pickled_model_copy, features=[{"name": "a", "type": "number"}])
    assert_unavailable(serve(MODEL_DIR=pickled_model_copy), "estimator expects 4 features but is given 1")


def test_invalid_setting_is_503_not_a_crash(serve):
    assert_unavailable(serve(MAX_ROWS="lots"), "MAX_ROWS must be a positive integer")


def test_model_loads_once_not_per_request(api, monkeypatch):
    calls = []
    monkeypatch.setattr(api.service.model, "_load", lambda: calls.append(1))
    for _ in range(3):
        assert api.post({"instances": IRIS_ROWS}).status_code == 200
    assert calls == []


def test_loaded_at_start_unless_chalice_cli_imports(tmp_path):
    eager = service.from_environment({"MODEL_DIR": BUNDLED_MODEL})
    assert eager.model.estimator is not None
    lazy = service.from_environment({"MODEL_DIR": BUNDLED_MODEL,
                                     "AWS_CHALICE_CLI_MODE": "true"})
    assert lazy.model.estimator is None
    model_api.health(lazy, None)
    assert lazy.model.estimator is not None


def test_importing_app_in_cli_mode_does_not_load_the_model():
    code = ("import app, sys; m = app.SERVICE.model; "
            "print(m.estimator is None, 'sklearn.linear_model' in sys.modules)")
    env = dict(os.environ, AWS_CHALICE_CLI_MODE="true")
    out = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_DIR, env=env,
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "False"]
