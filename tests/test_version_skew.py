"""Version skew: a model whose card says another scikit-learn saved it is
refused with a clear 503, unless ALLOW_VERSION_SKEW=true accepts the risk."""
import json

import pytest
import sklearn

from chalicelib.schema.card import ModelCard
from chalicelib.http.errors import ModelLoadError
from chalicelib.safeload.loading import ALLOW_VERSION_SKEW_ENV, check_versions
from tests.conftest import IRIS_ROWS, body_of

OTHER_VERSION = "1.0.2"
assert OTHER_VERSION != sklearn.__version__


def set_saved_version(model_dir, version, drop=False):
    path = model_dir / "model.json"
    card = json.loads(path.read_text())
    if drop:
        card["versions"].pop("scikit-learn", None)
    else:
        card["versions"]["scikit-learn"] = version
    path.write_text(json.dumps(card))


def assert_refused_for_skew(api):
    for response in (api.post({"instances": IRIS_ROWS}), api.get("/health"), api.get("/model")):
        assert response.status_code == 503, response.body
        body = body_of(response)
        assert set(body) == {"Code", "Message"}
        assert body["Code"] == "ServiceUnavailable"
        assert "model not available" in body["Message"]
        assert "saved with scikit-learn" in body["Message"]
        assert ALLOW_VERSION_SKEW_ENV in body["Message"]


def test_other_sklearn_version_is_503_with_a_clear_message(serve, pickled_model_copy, monkeypatch):
    monkeypatch.delenv(ALLOW_VERSION_SKEW_ENV, raising=False)
    set_saved_version(pickled_model_copy, OTHER_VERSION)
    assert_refused_for_skew(serve(MODEL_DIR=pickled_model_copy))


def test_card_without_sklearn_version_is_refused(serve, pickled_model_copy, monkeypatch):
    monkeypatch.delenv(ALLOW_VERSION_SKEW_ENV, raising=False)
    set_saved_version(pickled_model_copy, None, drop=True)
    assert_refused_for_skew(serve(MODEL_DIR=pickled_model_copy))


@pytest.mark.parametrize("value", ["true", "1", "yes", "TRUE"])
def test_allow_version_skew_serves_it(serve, pickled_model_copy, monkeypatch, value):
    monkeypatch.setenv(ALLOW_VERSION_SKEW_ENV, value)
    set_saved_version(pickled_model_copy, OTHER_VERSION)
    api = serve(MODEL_DIR=pickled_model_copy)
    assert api.get("/health").status_code == 200
    response = api.post({"instances": IRIS_ROWS})
    assert response.status_code == 200, response.body
    assert body_of(response)["predictions"] == ["setosa", "versicolor", "virginica"]


@pytest.mark.parametrize("value", ["false", "0", "", "no", "maybe"])
def test_anything_but_an_explicit_true_refuses(serve, pickled_model_copy, monkeypatch, value):
    monkeypatch.setenv(ALLOW_VERSION_SKEW_ENV, value)
    set_saved_version(pickled_model_copy, OTHER_VERSION)
    assert api_health(serve(MODEL_DIR=pickled_model_copy)) == 503


def api_health(api):
    return api.get("/health").status_code


def test_matching_version_serves(serve, pickled_model_copy, monkeypatch):
    monkeypatch.delenv(ALLOW_VERSION_SKEW_ENV, raising=False)
    set_saved_version(pickled_model_copy, sklearn.__version__)
    assert api_health(serve(MODEL_DIR=pickled_model_copy)) == 200


def test_check_versions_directly(pickled_model_copy):
    card = ModelCard(json.loads((pickled_model_copy / "model.json").read_text()))
    card.versions = {"scikit-learn": OTHER_VERSION}
    with pytest.raises(ModelLoadError, match="saved with scikit-learn %s but this runtime has %s"
                       % (OTHER_VERSION, sklearn.__version__)):
        check_versions(card, allow_skew=False)
    check_versions(card, allow_skew=True)
    card.versions = "not a mapping"
    with pytest.raises(ModelLoadError):
        check_versions(card, allow_skew=False)
