"""SnapStart runtime hooks (chalicelib/ops/snapstart.py), called as Lambda's
runtime calls them.

The registry is the runtime's own ``snapshot_restore_py`` (its PyPI release,
a dev dependency); tests/snapstart_runtime.py imports the app as the init
phase does, calls the before-snapshot hooks, then forks two "restored"
copies of the process: identical memory, like two environments restored from
one snapshot. Only AWS can prove that Lambda really calls them (see docs/proven.md).
"""
import json
import os
import subprocess
import sys

import pytest

from chalicelib.protocols import service
from chalicelib.ops import snapstart
from tests.conftest import BUNDLED_MODEL, PROJECT_DIR, body_of


def _runtime(mode, **extra):
    env = {k: v for k, v in os.environ.items() if k != "AWS_CHALICE_CLI_MODE"}
    env.update(MODEL_DIR=BUNDLED_MODEL, LOG_REQUESTS="true", API_AUTH="api_key",
               AWS_LAMBDA_FUNCTION_NAME="sklearn-serverless-prod", **extra)
    proc = subprocess.run([sys.executable, "-m", "tests.snapstart_runtime", mode],
                          cwd=PROJECT_DIR, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def with_hooks():
    return _runtime("hooks")


def test_importing_the_app_registers_both_hooks(with_hooks):
    assert with_hooks["loaded_at_init"] is True
    assert with_hooks["before_snapshot"] == ["chalicelib.ops.snapstart.before_snapshot"]
    assert with_hooks["after_restore"] == ["chalicelib.ops.snapstart.after_restore"]


def test_before_snapshot_warms_the_model_through_the_request_path(with_hooks, api):
    [warm] = with_hooks["warm_up"]
    example = json.load(open(os.path.join(BUNDLED_MODEL, "model.json")))["example"]
    expected = body_of(api.post(example, query="?probabilities=true"))
    got = json.loads(warm)
    assert got["predictions"] == expected["predictions"]
    assert got["classes"] == expected["classes"]
    [row], [expected_row] = got["probabilities"], expected["probabilities"]
    assert row == pytest.approx(expected_row, rel=1e-12)


def test_restored_copies_get_their_own_random_state(with_hooks):
    first, second = (c["draws"] for c in with_hooks["copies"])
    assert first["random"] != second["random"]
    assert first["numpy"] != second["numpy"]


def test_without_the_hook_restored_copies_would_share_random_state():
    """The control: the problem the after-restore hook solves is real. It is
    real for a model served by scikit-learn, which seeds numpy's global
    generator at init (ONNX Runtime never imports numpy.random, so each copy
    would seed its own on first use)."""
    first, second = (c["draws"] for c in _runtime("none", MODEL_RUNTIME="scikit-learn")["copies"])
    assert first == second


def test_each_restored_copy_reports_its_own_cold_start(with_hooks):
    for copy in with_hooks["copies"]:
        assert copy["status"] == 200
        assert json.loads(copy["body"])["predictions"] == ["setosa"]
        [record] = copy["log"]
        assert record["cold_start"] is True
    # the warm-up wrote no request line and did not use up the first request
    assert sum(len(c["log"]) for c in with_hooks["copies"]) == 2


def test_before_snapshot_loads_a_model_that_init_did_not(monkeypatch):
    svc = service.from_environment({"MODEL_DIR": BUNDLED_MODEL, "AWS_CHALICE_CLI_MODE": "1"})
    assert svc.model.estimator is None
    warm = snapstart.before_snapshot(svc)
    assert svc.model.estimator is not None
    # the warm-up really ran the estimator: the same answer as predict_proba
    import numpy as np
    example = svc.model.card.raw["example"]["instances"][0]
    proba = svc.model.estimator.predict_proba(np.array([[example[f] for f in svc.model.card.feature_names]]))
    assert json.loads(warm)["probabilities"][0] == pytest.approx(proba[0].tolist(), rel=1e-12)


def test_before_snapshot_never_raises(tmp_path, model_copy):
    broken = service.from_environment({"MODEL_DIR": str(tmp_path)})
    assert snapstart.before_snapshot(broken) is None  # no model: nothing to warm, no error
    card = json.loads((model_copy / "model.json").read_text())
    card["example"] = {"instances": [["not a number"] * 4]}
    (model_copy / "model.json").write_text(json.dumps(card))
    svc = service.from_environment({"MODEL_DIR": str(model_copy)})
    assert snapstart.before_snapshot(svc) is None  # a warm-up that does not fit is skipped
    assert svc.model.error is None


def test_the_cards_example_is_the_warm_up_request(model_copy):
    card = json.loads((model_copy / "model.json").read_text())
    card["example"] = {"instances": [[6.7, 3.0, 5.2, 2.3], [5.1, 3.5, 1.4, 0.2]]}
    (model_copy / "model.json").write_text(json.dumps(card))
    svc = service.from_environment({"MODEL_DIR": str(model_copy)})
    assert json.loads(snapstart.before_snapshot(svc))["predictions"] == ["virginica", "setosa"]


def test_register_is_a_no_op_without_the_runtime(monkeypatch):
    monkeypatch.setitem(sys.modules, "snapshot_restore_py", None)  # import fails
    assert snapstart.register(object()) is False
