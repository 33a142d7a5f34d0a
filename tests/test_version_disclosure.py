"""Responses never disclose the runtime's library versions.

``GET /model`` returns the card as published: its ``versions`` are
provenance (the environment that published the model, and the scikit-learn
that saved it). To tell the two apart, the card here records numpy, joblib
and Python versions this runtime does not have; no response (body or
header) of any route carries the runtime's own.
"""
import json
import platform

import joblib
import numpy as np
import scipy
import sklearn

from tests.conftest import IRIS_ROWS, body_of

PROVENANCE = {"numpy": "1.26.4", "joblib": "1.3.2", "python": "3.11.0"}


def _runtime_versions():
    versions = {"numpy": np.__version__, "joblib": joblib.__version__,
                "python": platform.python_version(), "scipy": scipy.__version__}
    return {k: v for k, v in versions.items() if v not in PROVENANCE.values()}


def _with_provenance(model_copy, sklearn_version=None):
    path = model_copy / "model.json"
    card = json.loads(path.read_text())
    card["versions"].update(PROVENANCE)
    if sklearn_version:
        card["versions"]["scikit-learn"] = sklearn_version
    path.write_text(json.dumps(card))
    return model_copy


def _everything(api):
    responses = [api.get("/model"), api.get("/health"), api.get("/openapi.json"),
                 api.post({"instances": IRIS_ROWS}), api.post({"instances": [[1]]}),
                 api.post({"rows": []})]
    return responses, "\n".join(r.body if isinstance(r.body, str) else r.body.decode()
                                for r in responses) + json.dumps([dict(r.headers)
                                                                  for r in responses])


def test_get_model_shows_provenance_not_the_runtime(serve, model_copy):
    api = serve(MODEL_DIR=_with_provenance(model_copy))
    responses, text = _everything(api)
    assert responses[0].status_code == 200
    card = body_of(responses[0])
    assert card["versions"]["numpy"] == PROVENANCE["numpy"]
    assert card["versions"]["python"] == PROVENANCE["python"]
    for name, version in _runtime_versions().items():
        assert version not in text, "runtime %s version %s disclosed" % (name, version)


def test_version_skew_503_names_the_saved_version_only(serve, pickled_model_copy):
    api = serve(MODEL_DIR=_with_provenance(pickled_model_copy, sklearn_version="0.24.2"))
    responses, text = _everything(api)
    assert all(r.status_code in (503, 200) for r in responses)   # openapi is static
    assert "0.24.2" in body_of(responses[1])["Message"]
    assert sklearn.__version__ not in text
    for version in _runtime_versions().values():
        assert version not in text
