"""GET /openapi.json: an OpenAPI 3.1 document generated from the model card,
valid, honest about the stage's auth, and checked by schemathesis against a
real ``chalice local`` on loopback: no 5xx, every response conforms."""
import contextlib
import json
import os
import re
import subprocess
import sys
import time

import joblib
import numpy as np
import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_openapi

from chalice.test import Client

import app as app_module
from chalicelib.page import openapi
from chalicelib.protocols import service
from chalicelib.schema.card import ModelCard
from tests.conftest import BUNDLED_MODEL, FEATURES, IRIS_ROWS, PROJECT_DIR, body_of, chalice_local

BIN = os.path.dirname(sys.executable)
BYO_FEATURES = ["age", "income", "tenure_months"]
CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,"
          "response_headers_conformance,response_schema_conformance")
# chalice local's development server (http.server) answers 501 itself for
# methods it has no handler for (TRACE, QUERY): not the app, and not what
# API Gateway does; schemathesis's "unexpected method" probes skip them.
SCHEMATHESIS_TOML = """\
[phases.coverage]
unexpected-methods = ["get", "put", "post", "delete", "options", "patch"]
"""


def document_of(api):
    response = api.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    return body_of(response)


def validator(document, name):
    """A JSON Schema validator for ``components.schemas[name]`` of ``document``."""
    return Draft202012Validator({"$ref": "#/components/schemas/" + name,
                                 "components": document["components"]})


@pytest.fixture(scope="module")
def byo_model_dir(tmp_path_factory):
    """A bring-your-own regressor with other feature names that accepts
    missing values, published like a user would."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    from publisher.publish import publish
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    X[::7, 1] = np.nan
    estimator = HistGradientBoostingRegressor(max_iter=10, random_state=0)
    estimator.fit(X, np.nan_to_num(X[:, 0]) * 2 + 1)
    work = tmp_path_factory.mktemp("byo")
    joblib.dump(estimator, work / "churn.joblib")
    publish(str(work / "churn.joblib"), name="churn", version="2.1.0",
            features=BYO_FEATURES, out_dir=str(work / "model"))
    return str(work / "model")


def test_document_validates_as_openapi_3_1_and_is_served(api):
    document = document_of(api)
    validate_openapi(document)
    assert document["openapi"] == "3.1.0"
    # The app's own routes, and every protocol route (test_every_route_of_the_app_is_described).
    assert {"/model", "/health", "/openapi.json", "/invocations", "/"} <= set(document["paths"])
    assert set(document["paths"]["/model"]) == {"post", "get"}
    post = document["paths"]["/model"]["post"]
    assert set(post["requestBody"]["content"]) == {"application/json", "text/csv"}
    assert set(post["responses"]) == {"200", "400", "413", "415", "422", "500", "503"}
    assert post["responses"]["200"]["headers"]["X-Model-Version"]["required"] is True
    assert set(document["paths"]["/health"]["get"]["responses"]) == {"200", "503"}
    assert "securitySchemes" not in document["components"]  # dev: API_AUTH=none


def test_every_route_of_the_app_is_described(api):
    """Every route Chalice serves (the peers' protocols and the try-it page
    included) is an operation of the document, with the errors in its
    protocol's shape."""
    import app as app_module
    paths = document_of(api)["paths"]
    routes = {(path, method.lower()) for path, entries in app_module.app.routes.items()
              for method in entries}
    described = {(path, method) for path, ops in paths.items() for method in ops}
    assert routes == described
    infer = paths["/v2/models/{name}/infer"]["post"]
    assert infer["responses"]["422"]["content"]["application/json"]["schema"] == \
        {"$ref": "#/components/schemas/KServeError"}
    assert paths["/invocations"]["post"]["responses"]["400"]["content"]["application/json"][
        "schema"] == {"$ref": "#/components/schemas/MLflowError"}


def test_request_schema_follows_the_bundled_card(api):
    document = document_of(api)
    schemas = document["components"]["schemas"]
    assert schemas["Record"]["required"] == FEATURES
    assert set(schemas["Record"]["properties"]) == set(FEATURES)
    assert schemas["Record"]["additionalProperties"] is False
    assert (schemas["Row"]["minItems"], schemas["Row"]["maxItems"]) == (4, 4)
    # no null (no missing values); the training range in each description
    assert [v["type"] for v in schemas["Row"]["prefixItems"]] == ["number"] * 4
    assert schemas["Row"]["prefixItems"][0]["description"] == "seen in training: 4.3 to 7.9"
    assert document["paths"]["/model"]["post"]["requestBody"]["content"]["application/json"][
        "example"] == json.load(open(os.path.join(BUNDLED_MODEL, "model.json")))["example"]
    assert schemas["Prediction"]["properties"]["predictions"]["items"] == {
        "enum": ["setosa", "versicolor", "virginica"]}
    assert document["info"]["version"] == "1.0.0"


@pytest.mark.parametrize("payload", [
    {"instances": IRIS_ROWS},
    {"instances": [dict(zip(FEATURES, r)) for r in IRIS_ROWS], "probabilities": True},
    {"dataframe_split": {"columns": FEATURES[::-1], "data": [r[::-1] for r in IRIS_ROWS]}},
    {"dataframe_split": {"data": IRIS_ROWS, "index": [0, 1, 2]}},
    {"dataframe_records": [dict(zip(FEATURES, r)) for r in IRIS_ROWS]},
], ids=["lists", "objects", "split", "split-default-columns", "records"])
def test_what_the_schema_accepts_the_app_answers_200_and_conforms(api, payload):
    document = document_of(api)
    validator(document, "PredictRequest").validate(payload)
    response = api.post(payload)
    assert response.status_code == 200, response.body
    validator(document, "Prediction").validate(body_of(response))


@pytest.mark.parametrize("payload", [
    {"instances": [[1, 2, 3]]},                                   # 3 of 4 values
    {"instances": [[1, 2, 3, True]]},                             # a boolean
    {"instances": [[1, 2, 3, None]]},                             # null, no missing values
    {"instances": [dict(zip(FEATURES[:3], [1, 2, 3]))]},          # a missing feature
    {"instances": [dict(zip(FEATURES + ["x"], [1, 2, 3, 4, 5]))]},  # an unknown one
    {"instances": IRIS_ROWS, "dataframe_records": []},            # two formats
    {"instances": IRIS_ROWS, "probabilities": "yes"},
    {"dataframe_split": {"columns": FEATURES[:3], "data": [[1, 2, 3]]}},
    {"rows": IRIS_ROWS},
])
def test_what_the_schema_refuses_the_app_refuses(api, payload):
    document = document_of(api)
    assert not validator(document, "PredictRequest").is_valid(payload)
    response = api.post(payload)
    assert response.status_code in (400, 422), response.body
    error_schema = document["paths"]["/model"]["post"]["responses"][
        str(response.status_code)]["content"]["application/json"]["schema"]
    Draft202012Validator(dict(error_schema, components=document["components"])).validate(
        body_of(response))


def test_schema_is_generated_from_a_byo_card(serve, byo_model_dir):
    api = serve(MODEL_DIR=byo_model_dir)
    document = document_of(api)
    validate_openapi(document)
    schemas = document["components"]["schemas"]
    assert schemas["Record"]["required"] == BYO_FEATURES
    assert all(p["type"] == ["number", "null"] for p in schemas["Record"]["properties"].values())
    assert (schemas["Row"]["minItems"], schemas["Row"]["maxItems"]) == (3, 3)
    assert schemas["Row"]["items"] == {"type": ["number", "null"]}
    assert schemas["DataframeSplit"]["properties"]["dataframe_split"]["properties"][
        "columns"]["items"] == {"enum": BYO_FEATURES}
    assert document["info"]["title"].startswith("churn") and document["info"]["version"] == "2.1.0"
    payload = {"instances": [{"tenure_months": 3, "income": None, "age": 41.5}]}
    validator(document, "PredictRequest").validate(payload)
    response = api.post(payload)
    assert response.status_code == 200, response.body
    validator(document, "Prediction").validate(body_of(response))


def test_security_scheme_follows_the_stage(monkeypatch):
    card = ModelCard.read(BUNDLED_MODEL)
    for auth, scheme, header in (("api_key", "api_key", "x-api-key"),
                                 ("iam", "sigv4", "Authorization")):
        document = openapi.build_document(card, max_rows=10, max_body_bytes=100, auth=auth)
        validate_openapi(document)
        assert document["components"]["securitySchemes"][scheme]["name"] == header
        for path, method in (("/model", "post"), ("/model", "get")):
            operation = document["paths"][path][method]
            assert operation["security"] == [{scheme: []}]
            assert {"403", "429"} <= set(operation["responses"])
        for path in ("/health", "/openapi.json"):
            assert "security" not in document["paths"][path]["get"]
    # And the served document follows the stage's config, read at init as
    # Lambda does (the prod stage's API_AUTH=api_key).
    monkeypatch.setattr(app_module, "SERVICE", service.from_environment(
        {"MODEL_DIR": BUNDLED_MODEL, "MAX_ROWS": "77", "LOG_REQUESTS": "false",
         "API_AUTH": "api_key"}))
    with Client(app_module.app, stage_name="prod", project_dir=PROJECT_DIR) as client:
        response = client.http.get("/openapi.json")
    assert response.status_code == 200
    document = json.loads(response.body)
    assert "api_key" in document["components"]["securitySchemes"]
    assert document["paths"]["/model"]["post"]["security"] == [{"api_key": []}]
    assert document["components"]["schemas"]["InstancesLists"]["properties"]["instances"][
        "maxItems"] == 77


def test_built_once_per_process(serve, model_copy, monkeypatch):
    calls = []
    build = openapi.build_document
    monkeypatch.setattr(openapi, "build_document",
                        lambda *a, **k: calls.append(1) or build(*a, **k))
    api = serve(MODEL_DIR=str(model_copy))
    first = api.get("/openapi.json").body
    assert api.get("/openapi.json").body == first
    assert len(calls) == 1


def test_served_even_when_the_card_is_unreadable(serve, model_copy):
    (model_copy / "model.json").write_text("{not json")
    api = serve(MODEL_DIR=str(model_copy))
    assert api.get("/health").status_code == 503
    document = document_of(api)
    validate_openapi(document)


# --------------------------------------------------------------------------
# schemathesis against a real `chalice local`.

def logged_statuses(log_path):
    """Statuses of POST /model from the app's one-line-per-request log
    (``chalice local``'s short form: ``POST /model -> 422, 0 rows, ...``)."""
    with open(log_path, encoding="utf-8", errors="replace") as f:
        return {int(m.group(1)) for m in re.finditer(r"^POST /model -> (\d+),", f.read(), re.M)}


def test_schemathesis_finds_no_5xx_and_no_nonconformance(byo_model_dir, tmp_path):
    """The bundled iris classifier and a BYO regressor that accepts missing
    values, each behind its own ``chalice local``; both runs in parallel."""
    config = tmp_path / "schemathesis.toml"
    config.write_text(SCHEMATHESIS_TOML)
    models = {"bundled": ({}, 50), "byo": ({"MODEL_DIR": byo_model_dir}, 30)}
    with contextlib.ExitStack() as stack:
        runs = {}
        started = time.monotonic()
        for model, (env, max_examples) in models.items():
            log_path = tmp_path / ("chalice-local-%s.log" % model)
            url = stack.enter_context(chalice_local(log_path, **env))
            out = stack.enter_context(open(tmp_path / ("st-%s.out" % model), "w+"))
            proc = subprocess.Popen(
                [os.path.join(BIN, "st"), "--no-color", "--config-file", str(config), "run",
                 url + "/openapi.json", "--checks", CHECKS, "--mode", "all",
                 # The app's own API; the peers' protocol routes are fuzzed by
                 # tests/test_protocol_fuzz.py in their own shapes.
                 "--include-path-regex", "^/(model|health|openapi\\.json)$",
                 "--phases", "examples,coverage,fuzzing", "--max-examples", str(max_examples),
                 "--seed", "1", "--workers", "1", "--generation-database", "none",
                 "--request-timeout", "30"],
                cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT, text=True)
            runs[model] = (proc, out, log_path)
        for model, (proc, out, log_path) in runs.items():
            try:
                returncode = proc.wait(timeout=300)
            finally:
                if proc.poll() is None:
                    proc.kill()
            out.seek(0)
            output = out.read()
            assert returncode == 0, output[-6000:]
            assert "No issues found" in output, output[-6000:]
            match = re.search(r"(\d+) generated, (\d+) passed", output)
            assert match and int(match.group(1)) >= 100, output[-2000:]
            # Both valid and invalid requests reached the model: the app's
            # request log saw predictions and client errors, no server error.
            statuses = logged_statuses(log_path)
            assert {200, 400, 422} <= statuses, statuses
            assert not any(s >= 500 for s in statuses), statuses
            print("schemathesis, %s model: %s cases, POST /model statuses %s (%.1f s)"
                  % (model, match.group(1), sorted(statuses), time.monotonic() - started))
