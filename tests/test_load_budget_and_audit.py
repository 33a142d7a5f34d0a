"""The load budget (bytes, time, address space) and the publish-time audit
stored on the card, with its ``--trust`` / ``TRUST_MODEL_PICKLE`` opt-outs."""
import json
import resource

import joblib
import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from chalicelib.http.errors import ModelLoadError
from chalicelib.safeload.load_budget import MAX_MB_ENV, TIMEOUT_ENV, address_space_limit
from chalicelib.safeload.loading import TRUST_MODEL_PICKLE_ENV, load_artifact
from tests.conftest import body_of

X = np.abs(np.random.RandomState(0).normal(size=(40, 4)))
Y = np.array([0, 1] * 20)


def test_time_budget_turns_a_slow_load_into_a_refusal(tmp_path, monkeypatch):
    path = tmp_path / "m.joblib"
    joblib.dump(RandomForestClassifier(n_estimators=5, random_state=0).fit(X, Y), path)
    monkeypatch.setenv(TIMEOUT_ENV, "0.000001")
    with pytest.raises(ModelLoadError, match="time budget"):
        load_artifact(str(path))
    monkeypatch.delenv(TIMEOUT_ENV)
    assert load_artifact(str(path)).n_estimators == 5


def test_byte_budget_is_checked_before_allocating_and_can_be_raised(tmp_path, monkeypatch):
    model = LinearRegression().fit(X, X[:, 0])
    model.big_ = np.zeros(3 << 20, dtype=np.uint8)          # 3 MiB
    path = tmp_path / "m.joblib"
    joblib.dump(model, path, compress=3)                     # a few KB on disk
    monkeypatch.setenv(MAX_MB_ENV, "1")
    with pytest.raises(ModelLoadError, match="past its load budget of 1 MiB"):
        load_artifact(str(path))
    monkeypatch.setenv(MAX_MB_ENV, "16")
    assert load_artifact(str(path)).big_.nbytes == 3 << 20


def test_address_space_limit_turns_an_allocation_into_memory_error_and_is_restored():
    before = resource.getrlimit(resource.RLIMIT_AS)
    with address_space_limit(64 << 20):
        with pytest.raises(MemoryError):
            np.ones(1 << 30, dtype=np.uint8)
    assert resource.getrlimit(resource.RLIMIT_AS) == before
    assert np.ones(64 << 20, dtype=np.uint8).sum() == 64 << 20


def test_publish_stores_the_audit_on_the_card(tmp_path):
    from publisher.publish import publish
    path = tmp_path / "rf.joblib"
    joblib.dump(make_pipeline(FunctionTransformer(np.log1p),
                              RandomForestClassifier(5, random_state=0)).fit(X, Y), path)
    card = publish(str(path), name="rf", version="1", out_dir=str(tmp_path / "out"))
    audit = json.loads((tmp_path / "out" / "model.json").read_text())["audit"]
    assert audit == card["audit"]
    assert "sklearn.ensemble._forest.RandomForestClassifier" in audit["globals"]
    assert audit["outside_core"] == ["numpy.log1p"]
    assert audit["findings"] == [{"kind": "callable", "where": "Pipeline.steps[0][1].func",
                                  "detail": "numpy.log1p is called with the model's input",
                                  "refused": False}]
    assert audit["refused"] == 0 and audit["trusted"] is False
    assert audit["limits"]["file_writes"] == "none"


@pytest.fixture
def function_with_arguments(tmp_path):
    """A model whose FunctionTransformer passes arguments to its function."""
    path = tmp_path / "kw.joblib"
    joblib.dump(make_pipeline(FunctionTransformer(np.positive, kw_args={"where": True}),
                              LogisticRegression()).fit(X, Y), path)
    return path


def test_publish_refuses_findings_unless_trusted(tmp_path, function_with_arguments, capsys):
    from publisher.publish import main
    out = tmp_path / "out"
    args = [str(function_with_arguments), "--name", "kw", "--version", "1", "--out", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "model can read files or call functions" in err and "--trust" in err
    assert not out.exists()
    assert main(args + ["--trust"]) == 0
    audit = json.loads((out / "model.json").read_text())["audit"]
    assert audit["trusted"] is True and audit["refused"] >= 1


def test_the_app_refuses_the_same_findings_unless_trust_model_pickle(
        serve, tmp_path, function_with_arguments, monkeypatch):
    from publisher.publish import publish
    out = tmp_path / "out"
    publish(str(function_with_arguments), name="kw", version="1", out_dir=str(out), trust=True)
    monkeypatch.delenv(TRUST_MODEL_PICKLE_ENV, raising=False)
    response = serve(MODEL_DIR=out).get("/health")
    assert response.status_code == 503
    assert "model can read files or call functions" in body_of(response)["Message"]
    assert TRUST_MODEL_PICKLE_ENV in body_of(response)["Message"]
    monkeypatch.setenv(TRUST_MODEL_PICKLE_ENV, "true")
    assert serve(MODEL_DIR=out).get("/health").status_code == 200
