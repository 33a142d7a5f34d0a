"""Errors carry their place as data (``loc``) and each protocol names it in
the client's own terms: the parser raises once, the protocols relocate."""
import io
import json

import numpy as np
import pytest

from chalicelib.http.errors import (Column, Line, Position, Row, Tensor, Unprocessable,
                                    place)
from chalicelib.schema.parsing import parse_csv, parse_payload
from tests.conftest import FEATURES, IRIS_ROWS, body_of


@pytest.fixture
def schema(api):
    return api.service.model.ready().schema


def _error(schema, payload):
    with pytest.raises(Unprocessable) as caught:
        parse_payload(payload, schema, 100)
    return caught.value


def test_the_parser_reports_where_as_data(schema):
    rows = [dict(zip(FEATURES, r)) for r in IRIS_ROWS]
    rows[1]["petal_width"] = "wide"
    error = _error(schema, {"instances": rows})
    assert error.loc == ("instances", 1, "petal_width")
    assert error.detail == 'expected a number, got "wide"'
    assert error.message == 'instances[1].petal_width: expected a number, got "wide"'

    lists = [list(r) for r in IRIS_ROWS]
    lists[2][3] = None
    error = _error(schema, {"dataframe_split": {"columns": FEATURES, "data": lists}})
    assert error.loc == ("dataframe_split", "data", 2, Position(3, "petal_width"))
    assert error.message.startswith("dataframe_split.data[2][3] (petal_width): ")


def test_a_csv_error_names_its_line_and_column(schema):
    text = "5.1,3.5,1.4,0.2\n6.2,2.9,x,1.3\n"
    with pytest.raises(Unprocessable) as caught:
        parse_csv(text, schema, 100)
    assert caught.value.loc == (Line(2), Column(3, "petal_length"))
    assert caught.value.message == 'CSV line 2, column 3 (petal_length): expected a number, got "x"'


def test_place_renders_every_part():
    assert place(("instances", 3, "x")) == "instances[3].x"
    assert place((Tensor("x"), 3)) == 'input "x"[3]'
    assert place(("inputs", Row(4))) == "inputs, row 4"
    assert place((Line(7), Column(None, "city"))) == "CSV line 7, column city"


def test_relocated_keeps_the_kind_and_the_detail():
    error = Unprocessable("expected a number", ("instances", 0, "x"))
    moved = error.relocated(("inputs", 0, "x"))
    assert type(moved) is Unprocessable and moved.status == 422
    assert moved.message == "inputs[0].x: expected a number"


def _post(api, path, body, content_type="application/json"):
    return api.client.http.post(path, headers={"Content-Type": content_type},
                                 body=body if isinstance(body, bytes) else json.dumps(body))


def _bad_rows():
    rows = [list(r) for r in IRIS_ROWS]
    rows[1][2] = "tall"
    return rows


@pytest.mark.parametrize("path, body, key, place_text", [
    # each protocol names the place with the key the client sent
    ("/model", {"instances": _bad_rows()}, "Message", "instances[1][2] (petal_length)"),
    ("/invocations", {"inputs": _bad_rows()}, "message", "inputs[1][2] (petal_length)"),
    ("/invocations", _bad_rows(), "message", "rows[1][2] (petal_length)"),
    ("/v1/models/iris-classifier:predict", {"inputs": _bad_rows()}, "error",
     "inputs[1][2] (petal_length)"),
])
def test_each_protocol_names_the_clients_own_place(api, path, body, key, place_text):
    response = _post(api, path, body)
    assert 400 <= response.status_code < 500, response.body
    message = body_of(response)[key]
    assert message.startswith(place_text + ": "), message


def test_open_inference_names_the_tensor_and_row(api):
    tensors = [{"name": name, "shape": [3], "datatype": "FP64" if name != "petal_width" else "BYTES",
                "data": [r[j] for r in IRIS_ROWS] if name != "petal_width" else ["a", "b", "c"]}
               for j, name in enumerate(FEATURES)]
    response = _post(api, "/v2/models/iris-classifier/infer", {"inputs": tensors})
    assert response.status_code in (400, 422), response.body
    assert body_of(response)["error"].startswith('input "petal_width"[0]: '), response.body

    rows = {"name": "batch", "shape": [3, 4], "datatype": "BYTES",
            "data": [str(v) for r in IRIS_ROWS for v in r[:3]] + ["?", "?", "?"]}
    response = _post(api, "/v2/models/iris-classifier/infer", {"inputs": [rows]})
    assert response.status_code in (400, 422), response.body
    assert body_of(response)["error"].startswith("batch[0]"), response.body


def test_npy_rows_are_named_npy(api):
    buffer = io.BytesIO()
    np.save(buffer, np.array([[5.1, 3.5, 1.4, np.inf]]), allow_pickle=False)
    response = _post(api, "/invocations", buffer.getvalue(), "application/x-npy")
    assert response.status_code in (400, 422), response.body
    assert body_of(response)["message"].startswith("npy[0][3] (petal_width): "), response.body


def test_a_batch_row_error_is_named_by_its_row():
    from chalicelib.batch.records import _reason
    assert _reason(Unprocessable("expected a number", (Line(9), Column(2, "x")))) == \
        "row, column 2 (x): expected a number"
    assert _reason(Unprocessable("expected a number", ("instances", 0, "x"))) == \
        "row.x: expected a number"
    assert _reason(Unprocessable("expected 4 values", (Line(9),))) == "expected 4 values"


def test_a_typed_row_names_the_value_by_its_index_as_sent():
    from chalicelib.schema.features import Schema
    typed = Schema([{"name": "city", "type": "string"}, {"name": "age", "type": "integer"}],
                   False, "dataframe")
    error = _error(typed, {"instances": [["Oslo", 40], ["Rome", "old"]]})
    assert error.loc == ("instances", 1, Position(1, "age"))
    assert error.message == 'instances[1][1] (age): expected an integer, got "old"'
    # columns sent in another order: the index is the client's, not the card's
    error = _error(typed, {"dataframe_split": {"columns": ["age", "city"],
                                               "data": [[40, "Oslo"], ["old", "Rome"]]}})
    assert error.loc == ("dataframe_split", "data", 1, Position(0, "age"))


def test_request_structure_errors_carry_their_place_as_data():
    from chalicelib.http.errors import BadRequest
    from chalicelib.protocols import mlflow, open_inference
    with pytest.raises(BadRequest) as caught:
        mlflow.read_params({"probabilities": 1})
    assert caught.value.loc == ("params", "probabilities")
    assert caught.value.message == "params.probabilities: expected true or false"

    tensor = {"name": "x", "shape": [2], "datatype": "FP64", "data": [1.0, "a"]}
    with pytest.raises(Unprocessable) as caught:
        open_inference._tensors([tensor], b"")
    assert caught.value.loc == ("inputs", Position(0, "x"), "data", 1)
    assert caught.value.message == 'inputs[0] (x).data[1]: expected a FP64 value, got "a"'

    good = dict(tensor, data=[1.0, 2.0])
    with pytest.raises(BadRequest) as caught:
        open_inference._tensors([good, {"name": ""}], b"")
    assert caught.value.loc == ("inputs", 1, "name")


@pytest.mark.parametrize("spec, place_text", [
    ({"name": "petal_length", "shape": [-1], "datatype": "FP64", "data": []},
     "inputs[0] (petal_length).shape: "),
    ({"name": "petal_length", "shape": [1], "datatype": "FP128", "data": [1.0]},
     "inputs[0] (petal_length).datatype: "),
    ({"name": 7, "shape": [1], "datatype": "FP64", "data": [1.0]}, "inputs[0].name: "),
])
def test_open_inference_names_the_tensor_field(api, spec, place_text):
    response = _post(api, "/v2/models/iris-classifier/infer", {"inputs": [spec]})
    assert response.status_code == 400, response.body
    assert body_of(response)["error"].startswith(place_text), response.body


def test_probabilities_of_a_model_without_them_is_named_probabilities(api):
    model = api.service.model.ready()
    model.has_proba, saved = False, model.has_proba
    try:
        with pytest.raises(Unprocessable) as caught:
            model.infer(np.asarray(IRIS_ROWS, dtype=float), probabilities=True)
    finally:
        model.has_proba = saved
    assert caught.value.loc == ("probabilities",)
    assert caught.value.message.startswith("probabilities: model ")
