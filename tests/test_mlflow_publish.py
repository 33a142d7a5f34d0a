"""Publishing from MLflow against a real tracking server on loopback
(``mlflow server``, SQLite backend, proxied artifact root in a temp dir):
models logged and registered with ``mlflow.sklearn.log_model`` are
published from every URI form, and the app then answers what the
notebook's estimator predicts."""
import json
import os
import subprocess
import sys

import pytest

from publisher.mlflow_source import sha256_file
from publisher.publish import PublishError, publish_mlflow
from tests.conftest import PROJECT_DIR, body_of
from tests.mlflow_models import REVIEWS, churn_frame, log_all
from tests.mlflow_tracking import tracking_server


@pytest.fixture(scope="module")
def tracking(tmp_path_factory):
    with tracking_server(tmp_path_factory.mktemp("mlflow")) as uri:
        yield uri, log_all(uri)


def _publish(tracking, uri, out, **options):
    tracking_uri, _ = tracking
    return publish_mlflow(uri, tracking_uri=tracking_uri, out_dir=str(out), **options)


def _invocations(api, frame):
    body = {"dataframe_split": json.loads(frame.to_json(orient="split", index=False))}
    response = api.client.http.post("/invocations", headers={"Content-Type": "application/json"},
                                    body=json.dumps(body))
    assert response.status_code == 200, response.body
    return body_of(response)["predictions"]


def test_alias_publishes_the_champion_with_its_signature_as_the_schema(tracking, tmp_path,
                                                                        serve):
    _, logged = tracking
    champion = logged["churn_v2"]
    card = _publish(tracking, "models:/churn@champion", tmp_path / "churn")
    assert (card["name"], card["version"]) == ("churn", champion.version)
    features = {f["name"]: f for f in card["features"]}
    assert [f["name"] for f in card["features"]] == ["plan", "tenure", "monthly"]
    assert features["plan"]["type"] == "string"
    assert features["plan"]["categories"] == ["basic", "plus", "pro"]
    assert features["tenure"]["type"] == "integer"   # MLflow's long
    assert features["monthly"]["type"] == "number"   # MLflow's double
    assert card["input"] == "dataframe"
    source = card["mlflow"]
    assert source["source_uri"] == "models:/churn@champion"
    assert source["alias"] == "champion" and source["registry_version"] == champion.version
    assert source["registered_model"] == "churn" and source["run_id"] == champion.run_id
    assert source["serialization_format"] == "pickle"
    # A pickle is published as it is: the checksum the card checks at start
    # is the MLflow artifact's own.
    assert source["artifact_sha256"] == card["sha256"] == sha256_file(
        str(tmp_path / "churn" / "model.joblib"))
    assert "tracking" not in json.dumps(source)  # the server's address stays private
    assert card["audit"]["refused"] == 0 and not card["audit"]["trusted"]
    X, _ = churn_frame(300, 0)  # the notebook's training frame; its head is the example
    assert card["example"]["instances"] == json.loads(X.head(3).to_json(orient="records"))
    test, _ = churn_frame(40, 7)
    api = serve(MODEL_DIR=str(tmp_path / "churn"))
    assert _invocations(api, test) == champion.estimator.predict(test).tolist()


def test_a_version_number_publishes_that_version(tracking, tmp_path, serve):
    _, logged = tracking
    first = logged["churn_v1"]
    card = _publish(tracking, "models:/churn/1", tmp_path / "v1")
    assert card["version"] == "1" and "alias" not in card["mlflow"]
    assert card["mlflow"]["run_id"] == first.run_id
    assert card["mlflow"]["serialization_format"] == "cloudpickle"
    test, _ = churn_frame(40, 11)
    notebook = first.estimator.predict(test).tolist()
    assert notebook != logged["churn_v2"].estimator.predict(test).tolist()  # two real versions
    assert _invocations(serve(MODEL_DIR=str(tmp_path / "v1")), test) == notebook


def test_a_run_uri_and_a_tensor_signature(tracking, tmp_path, serve):
    _, logged = tracking
    iris = logged["iris"]
    card = _publish(tracking, iris.model_uri, tmp_path / "iris", name="iris", version="7")
    assert [(f["name"], f["type"]) for f in card["features"]] == [
        ("x0", "number"), ("x1", "number"), ("x2", "number"), ("x3", "number")]
    assert card.get("input", "matrix") == "matrix"
    assert card["mlflow"]["run_id"] == iris.run_id
    assert card["example"]["instances"] == [dict(zip(["x0", "x1", "x2", "x3"], row))
                                            for row in [[5.1, 3.5, 1.4, 0.2], [4.9, 3.0, 1.4, 0.2],
                                                        [4.7, 3.2, 1.3, 0.2]]]
    rows = [[5.9, 3.0, 5.1, 1.8], [5.0, 3.6, 1.4, 0.2], [6.3, 2.5, 4.9, 1.5]]
    api = serve(MODEL_DIR=str(tmp_path / "iris"))
    response = api.post({"instances": rows})
    assert body_of(response)["predictions"] == iris.estimator.predict(rows).tolist()


def test_skops_is_converted_then_audited_and_unpickled_as_any_artifact(tracking, tmp_path,
                                                                        serve):
    _, logged = tracking
    card = _publish(tracking, logged["iris_skops"].model_uri, tmp_path / "skops",
                    name="iris", version="1")
    assert card["mlflow"]["serialization_format"] == "skops"
    assert card["mlflow"]["artifact_sha256"] != card["sha256"]  # the joblib made from it
    assert card["audit"]["refused"] == 0
    rows = [[5.9, 3.0, 5.1, 1.8], [5.0, 3.6, 1.4, 0.2]]
    api = serve(MODEL_DIR=str(tmp_path / "skops"))
    assert body_of(api.post({"instances": rows}))["predictions"] == \
        logged["iris"].estimator.predict(rows).tolist()


def test_a_local_mlmodel_directory_of_a_text_model(tracking, tmp_path, serve):
    import mlflow.artifacts
    tracking_uri, logged = tracking
    local = mlflow.artifacts.download_artifacts("models:/reviews/1", dst_path=str(tmp_path / "dl"),
                                                tracking_uri=tracking_uri)
    card = publish_mlflow(local, name="reviews", version="1", out_dir=str(tmp_path / "reviews"))
    assert card["features"] == [{"name": "text", "type": "text"}]
    assert card["input"] == "texts"
    assert card["example"]["instances"] == REVIEWS[:2]
    assert card["mlflow"]["source_uri"] == local
    texts = ["great, works", "bad quality, broke", "love the value"]
    api = serve(MODEL_DIR=str(tmp_path / "reviews"))
    assert body_of(api.post({"instances": texts}))["predictions"] == \
        logged["reviews"].estimator.predict(texts).tolist()


@pytest.mark.parametrize("key, expected", [
    ("renamed", "the signature and the estimator disagree: the estimator was fitted on the "
                "columns plan, tenure, monthly, the signature names plan, months, monthly"),
    ("plan_as_number", "the signature and the estimator disagree: column plan: the estimator's "
                       "categories are strings (basic, plus, pro), the signature says number"),
    ("needs_lightgbm", "the model's requirements.txt needs lightgbm==4.7.0, which "
                       "requirements.txt does not pin"),
])
def test_refusals_name_the_disagreement(tracking, tmp_path, key, expected):
    _, logged = tracking
    with pytest.raises(PublishError) as caught:
        _publish(tracking, logged[key].model_uri, tmp_path / key, name="x", version="1")
    assert expected in str(caught.value)
    assert not (tmp_path / key / "model.json").exists()


@pytest.mark.parametrize("uri, expected", [
    ("models:/churn@nobody", "models:/churn@nobody is not in the model registry"),
    ("models:/churn/99", "models:/churn/99 is not in the model registry"),
    ("models:/churn/latest", "the version must be a number"),
    ("runs:/0123456789abcdef/model", "cannot be downloaded"),
])
def test_unknown_uris_are_refused_clearly(tracking, tmp_path, uri, expected):
    with pytest.raises(PublishError) as caught:
        _publish(tracking, uri, tmp_path / "x")
    assert expected in str(caught.value)


def test_the_command_line_publishes_from_the_registry(tracking, tmp_path):
    tracking_uri, logged = tracking
    out = tmp_path / "cli"
    proc = subprocess.run(
        [sys.executable, "-m", "publisher.publish", "models:/churn@champion",
         "--tracking-uri", tracking_uri, "--out", str(out)],
        cwd=PROJECT_DIR, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, PYTHONWARNINGS="ignore"))
    assert proc.returncode == 0, proc.stderr
    assert "published churn %s" % logged["churn_v2"].version in proc.stdout
    card = json.loads((out / "model.json").read_text())
    assert card["mlflow"]["alias"] == "champion"
