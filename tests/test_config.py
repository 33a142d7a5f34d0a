"""The configuration: every setting declared once (chalicelib/http/config.py),
read by one rule, and the docs' configuration table in step with it."""
import json
import os
import re

import pytest

from chalicelib.http import config
from chalicelib.protocols import model_api, service
from tests.conftest import BUNDLED_MODEL, PROJECT_DIR

PLATFORM = {"OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"}


def _documented():
    with open(os.path.join(PROJECT_DIR, "docs", "configuration.md"), encoding="utf-8") as f:
        text = f.read()
    table = text.split("## Environment variables", 1)[1].split("\n## ", 1)[0]
    return {name for row in table.splitlines() if row.startswith("| `")
            for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split("|")[1])}


def test_every_declared_setting_is_documented_and_every_documented_one_declared():
    declared = {setting.name for setting in config.SETTINGS}
    assert _documented() - PLATFORM == declared


@pytest.mark.parametrize("raw, value", [("true", True), ("ON", True), ("1", True), ("yes", True),
                                        ("false", False), ("off", False), ("0", False),
                                        ("", True), ("  ", True)])
def test_a_switch_reads_one_way_everywhere(raw, value):
    # LOG_REQUESTS defaults to on: unset or empty keeps the default.
    assert config.LOG_REQUESTS.get({"LOG_REQUESTS": raw}) is value


def test_a_switch_with_another_value_is_refused_naming_it():
    with pytest.raises(config.ConfigError, match="TRUST_MODEL_PICKLE must be true or false"):
        config.TRUST_MODEL_PICKLE.get({"TRUST_MODEL_PICKLE": "maybe"})


def test_the_config_is_read_once_and_frozen():
    svc = service.from_environment({"MODEL_DIR": BUNDLED_MODEL, "MAX_ROWS": "7",
                                    "AWS_CHALICE_CLI_MODE": "1"})
    assert (svc.config.max_rows, svc.config.model_dir) == (7, BUNDLED_MODEL)
    with pytest.raises(AttributeError):
        svc.config.max_rows = 8


def test_a_bad_value_leaves_the_app_up_with_the_reason_as_its_503():
    svc = service.from_environment({"MODEL_DIR": BUNDLED_MODEL, "LOG_REQUESTS": "sometimes"})
    assert svc.config.problem == ("configuration error: LOG_REQUESTS must be true or false, "
                                  "got 'sometimes'")
    assert svc.model.error == svc.config.problem


def test_a_wrong_auth_fails_at_init():
    with pytest.raises(config.ConfigError, match="API_AUTH must be one of none, api_key, iam"):
        service.from_environment({"MODEL_DIR": BUNDLED_MODEL, "API_AUTH": "cognito"})


@pytest.mark.parametrize("name", ["MODEL_LOAD_TIMEOUT_S", "MODEL_LOAD_MAX_MB",
                                  "MODEL_LOAD_ISOLATED", "PREDICT_DEADLINE_S"])
def test_a_bad_load_setting_is_the_models_503_naming_it(monkeypatch, name):
    monkeypatch.setenv(name, "soon")
    svc = service.from_environment({"MODEL_DIR": BUNDLED_MODEL, "LOG_REQUESTS": "false"})
    reply = model_api.health(svc, None)
    assert reply.status == 503
    assert "%s must be" % name in json.loads(reply.body)["Message"]


def test_the_prediction_deadline_is_read_at_load(monkeypatch):
    monkeypatch.setenv("PREDICT_DEADLINE_S", "2.5")
    svc = service.from_environment({"MODEL_DIR": BUNDLED_MODEL, "LOG_REQUESTS": "false"})
    assert svc.model.ready().runtime == "onnxruntime"
    assert svc.model.ready().estimator.deadline_s == 2.5
