"""The request contract of POST /model, GET /model and GET /health, through
Chalice's test client and the real bundled model."""
import json

import numpy as np
import pytest

from tests.conftest import FEATURES, IRIS_ROWS, body_of

ERROR_KEYS = {"Code", "Message"}


def expected(iris_model, rows=IRIS_ROWS):
    return iris_model.predict(np.asarray(rows, dtype=float)).tolist()


def assert_error(response, status, *fragments):
    assert response.status_code == status, response.body
    body = body_of(response)
    assert set(body) == ERROR_KEYS
    for fragment in fragments:
        assert fragment in body["Message"], body["Message"]
    return body


def records(rows=IRIS_ROWS):
    return [dict(zip(FEATURES, row)) for row in rows]


@pytest.mark.parametrize("payload", [
    {"instances": IRIS_ROWS},
    {"instances": [dict(reversed(list(r.items()))) for r in records()]},
    {"dataframe_split": {"columns": FEATURES, "data": IRIS_ROWS}},
    {"dataframe_split": {"columns": FEATURES[::-1], "data": [r[::-1] for r in IRIS_ROWS]}},
    {"dataframe_split": {"data": IRIS_ROWS, "index": [0, 1, 2]}},
    {"dataframe_records": records()},
], ids=["lists", "objects", "split", "split-reordered", "split-no-columns", "records"])
def test_every_json_format_predicts_like_the_model(api, iris_model, payload):
    response = api.post(payload)
    assert response.status_code == 200, response.body
    body = body_of(response)
    assert body["predictions"] == expected(iris_model) == ["setosa", "versicolor", "virginica"]
    assert body["model"] == {"name": "iris-classifier", "version": "1.0.0"}
    assert response.headers["X-Model-Version"] == "1.0.0"
    assert response.headers["Content-Type"] == "application/json"


@pytest.mark.parametrize("content_type", [
    "application/json", "application/json; charset=utf-8", "Application/JSON;Charset=UTF-8", None])
def test_json_content_types(api, iris_model, content_type):
    response = api.post({"instances": IRIS_ROWS}, content_type=content_type)
    assert response.status_code == 200, response.body
    assert body_of(response)["predictions"] == expected(iris_model)


def test_probabilities_in_classes_order(api, iris_model):
    body = body_of(api.post({"instances": IRIS_ROWS, "probabilities": True}))
    assert body["classes"] == iris_model.classes_.tolist()
    proba = iris_model.predict_proba(np.asarray(IRIS_ROWS))
    assert np.allclose(body["probabilities"], proba, rtol=0, atol=1e-15)
    assert all(type(p) is float for row in body["probabilities"] for p in row)
    assert body["predictions"] == expected(iris_model)


def test_probabilities_false_adds_nothing(api):
    body = body_of(api.post({"instances": IRIS_ROWS, "probabilities": False}))
    assert set(body) == {"predictions", "model"}


def test_csv_without_header(api, iris_model):
    text = "\n".join(",".join(map(str, r)) for r in IRIS_ROWS) + "\n"
    response = api.post(text, content_type="text/csv")
    assert response.status_code == 200, response.body
    assert body_of(response)["predictions"] == expected(iris_model)


def test_csv_header_in_any_order_crlf_and_blank_lines(api, iris_model):
    order = [3, 0, 2, 1]
    lines = [",".join(FEATURES[i] for i in order)]
    lines += [",".join(str(r[i]) for i in order) for r in IRIS_ROWS]
    text = "\r\n".join(lines[:2] + [""] + lines[2:]) + "\r\n\r\n"
    response = api.post(text, content_type="text/csv; charset=utf-8")
    assert response.status_code == 200, response.body
    assert body_of(response)["predictions"] == expected(iris_model)


def test_csv_probabilities_by_query_parameter(api):
    text = "5.1,3.5,1.4,0.2\n"
    body = body_of(api.post(text, content_type="text/csv", query="?probabilities=true"))
    assert len(body["probabilities"][0]) == 3


def test_response_is_plain_json_with_labels_as_trained(api):
    response = api.post({"instances": IRIS_ROWS[:1]})
    text = response.body.decode()
    assert json.loads(text)["predictions"] == ["setosa"]


@pytest.mark.parametrize("body,fragment", [
    ("{not json", "malformed JSON"),
    ("", "request body is empty"),
    ("[]", "must be a JSON object"),
    ("null", "must be a JSON object"),
    ({"rows": IRIS_ROWS}, "accepted keys: instances, dataframe_split, dataframe_records, probabilities"),
    ({}, "expected exactly one of instances, dataframe_split, dataframe_records; got none"),
    ({"instances": IRIS_ROWS, "dataframe_records": records()}, "got instances and dataframe_records"),
    ({"instances": "abc"}, "instances: expected a list of rows"),
    ({"instances": []}, "instances: expected at least one row"),
    ({"instances": [5.1, 3.5]}, "instances[0]: expected a list of 4 numbers"),
    ({"instances": IRIS_ROWS, "probabilities": "yes"}, "probabilities: expected true or false"),
    ({"dataframe_split": [1]}, "dataframe_split: expected an object"),
    ({"dataframe_split": {"columns": FEATURES}}, "missing key 'data'"),
    ({"dataframe_records": [IRIS_ROWS[0]]}, "dataframe_records[0]: expected an object keyed by feature name"),
    ('{"instances": [[1,2,3,4]], "instances": [[1,2,3,4]]}', 'duplicate key "instances"'),
], ids=lambda v: v if isinstance(v, str) and len(v) < 30 else None)
def test_malformed_or_wrong_structure_is_400(api, body, fragment):
    assert_error(api.post(body), 400, fragment)


@pytest.mark.parametrize("payload,fragment", [
    ({"instances": [[5.1, 3.5, 1.4]]}, "instances[0]: expected 4 values (sepal_length, sepal_width, petal_length, petal_width), got 3"),
    ({"instances": [IRIS_ROWS[0], [1, 2, 3, 4, 5]]}, "instances[1]: expected 4 values"),
    ({"instances": [[5.1, 3.5, "abc", 0.2]]}, 'instances[0][2] (petal_length): expected a number, got "abc"'),
    ({"instances": [[5.1, 3.5, True, 0.2]]}, "instances[0][2] (petal_length): expected a number, got true"),
    ({"instances": [[5.1, 3.5, None, 0.2]]}, "instances[0][2] (petal_length): expected a number, got null"),
    ({"instances": [[5.1, 3.5, [1], 0.2]]}, "instances[0][2] (petal_length): expected a number, got a list"),
    ({"instances": [IRIS_ROWS[0]] * 3 + [[1, 2, 3, "abc"]]}, 'instances[3][3] (petal_width): expected a number, got "abc"'),
    ('{"instances": [[5.1, NaN, 1.4, 0.2]]}', "instances[0][1] (sepal_width): expected a finite number, got NaN"),
    ('{"instances": [[5.1, 3.5, 1.4, -Infinity]]}', "instances[0][3] (petal_width): expected a finite number, got -Infinity"),
    ('{"instances": [[5.1, 3.5, 1e400, 0.2]]}', "instances[0][2] (petal_length): expected a finite number, got Infinity"),
    ({"instances": records()[:3] + [{**records()[0], "petal_width": "abc"}]}, 'instances[3].petal_width: expected a number, got "abc"'),
    ({"instances": [{**records()[0], "color": 1}]}, 'instances[0]: unknown feature "color"'),
    ({"instances": [{k: v for k, v in records()[0].items() if k != "sepal_width"}]}, 'instances[0]: missing feature "sepal_width"'),
    ({"dataframe_split": {"columns": FEATURES[:3] + ["x"], "data": IRIS_ROWS}}, 'dataframe_split.columns: unknown feature "x"'),
    ({"dataframe_split": {"columns": FEATURES[:3], "data": IRIS_ROWS}}, 'dataframe_split.columns: missing feature "petal_width"'),
    ({"dataframe_split": {"columns": FEATURES, "data": [[1, 2, 3, False]]}}, "dataframe_split.data[0][3] (petal_width): expected a number, got false"),
    ({"dataframe_records": [{**records()[0], "sepal_length": None}]}, "dataframe_records[0].sepal_length: expected a number, got null"),
], ids=lambda v: None)
def test_values_that_do_not_fit_are_422(api, payload, fragment):
    assert_error(api.post(payload), 422, fragment)


def test_boolean_rows_are_refused_even_when_probabilities_is_true(api):
    assert_error(api.post({"instances": [[1, 2, 3, True]], "probabilities": True}), 422, "got true")


@pytest.mark.parametrize("text,status,fragment", [
    ("sepal_length,sepal_width,petal_length,petal_width\n", 400, "no data rows"),
    ("5.1,3.5,1.4\n", 422, "CSV line 1: expected 4 values"),
    ("5.1,3.5,1.4,0.2,9\n", 422, "CSV line 1: expected 4 values"),
    ("5.1,3.5,1.4,0.2\n5.1,abc,1.4,0.2\n", 422, 'CSV line 2, column 2 (sepal_width): expected a number, got "abc"'),
    ("5.1,3.5,1.4,inf\n", 422, 'expected a number, got "inf"'),
    ("5.1,3.5,1.4,1_0\n", 422, 'expected a number, got "1_0"'),
    ("5.1,3.5,,0.2\n", 422, 'CSV line 1, column 3 (petal_length): expected a number, got ""'),
    ("sepal_length,sepal_width,petal_length,colour\n1,2,3,4\n", 422, 'CSV header: unknown feature "colour"'),
    ('5.1,"3.5,1.4,0.2\n', 400, "malformed CSV"),
])
def test_csv_errors(api, text, status, fragment):
    assert_error(api.post(text, content_type="text/csv"), status, fragment)


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", "application/json; charset=latin-1",
                                          "application/json, text/html"])
def test_unsupported_media_type_is_415(api, content_type):
    assert_error(api.post({"instances": IRIS_ROWS}, content_type=content_type), 415)


def test_too_many_rows_is_413(serve):
    api = serve(MAX_ROWS=3)
    assert api.post({"instances": IRIS_ROWS}).status_code == 200
    assert_error(api.post({"instances": IRIS_ROWS * 2}), 413, "6 rows exceed the limit of 3")
    assert_error(api.post("\n".join(["1,2,3,4"] * 4), content_type="text/csv"), 413, "limit")
    assert_error(api.post({"dataframe_records": records() * 2}), 413)


def test_default_row_limit_is_10000(api):
    rows = [IRIS_ROWS[0]] * 10_000
    assert api.post({"instances": rows}).status_code == 200
    assert_error(api.post({"instances": rows + rows[:1]}), 413, "10001 rows exceed the limit of 10000")


def test_body_size_limit_is_413(serve):
    api = serve(MAX_BODY_BYTES=100)
    assert_error(api.post({"instances": IRIS_ROWS * 3}), 413, "exceeds the limit of 100")


def test_model_exception_is_generic_500_and_logged(api, monkeypatch, caplog):
    def explode(X):
        raise RuntimeError("secret internal detail /path/to/file")
    monkeypatch.setattr(api.service.model.estimator, "predict", explode)
    response = api.post({"instances": IRIS_ROWS})
    body = assert_error(response, 500, "prediction failed")
    assert "secret" not in body["Message"]
    assert "secret internal detail" in caplog.text


def test_get_model_returns_the_card(api):
    response = api.get("/model")
    assert response.status_code == 200
    card = body_of(response)
    assert [f["name"] for f in card["features"]] == FEATURES
    assert card["classes"] == ["setosa", "versicolor", "virginica"]
    assert card["task"] == "classification"
    for key in ("sha256", "versions", "metrics", "created_at", "accepts_missing_values"):
        assert key in card


def test_health_ok(api):
    response = api.get("/health")
    assert response.status_code == 200
    assert body_of(response) == {"status": "ok", "name": "iris-classifier", "version": "1.0.0"}


def test_one_structured_log_line_per_request(serve, capsys):
    api = serve(LOG_REQUESTS="true")
    api.post({"instances": IRIS_ROWS})
    api.post({"instances": "x"})
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(l["status"], l["rows"], l["model_version"]) for l in lines] == [(200, 3, "1.0.0"), (400, 0, "1.0.0")]
    assert all(l["latency_ms"] >= 0 for l in lines)
    assert "5.1" not in json.dumps(lines)  # bodies are never logged


def test_probabilities_query_parameter_for_json_too(api):
    body = body_of(api.post({"instances": IRIS_ROWS}, query="?probabilities=true"))
    assert len(body["probabilities"]) == 3
    assert_error(api.post({"instances": IRIS_ROWS}, query="?probabilities=maybe"), 400,
                 "probabilities: expected true or false")
