"""SageMaker's inference-container contract, ported from the SageMaker
scikit-learn container's serving tests and the inference toolkit.

Source: aws/sagemaker-scikit-learn-container ``test/unit/test_serving.py``
(commit eae7b6b1eea5263fa3bd0584d896a55921aa4826), which calls the
container's ``default_input_fn`` / ``default_output_fn`` on arrays of one
column; here the same bodies go through ``POST /invocations`` of the served
four-feature model, so rows have four values. The ``ContentType`` header
rule is aws/sagemaker-inference-toolkit
``src/sagemaker_inference/utils.py`` ``retrieve_content_type_header``; the
``/ping`` rule is SageMaker's documented container contract ("Your
container must respond ... with an HTTP 200 status code and an empty
body").
"""
import io
import json

import numpy as np
import pytest

from tests.conformance.conftest import IRIS_ROWS, body_of, out_of_scope


def invoke(peer, body, content_type="application/json", accept=None, headers=None):
    headers = dict(headers or {})
    if accept:
        headers["Accept"] = accept
    return peer.post("/invocations", body, content_type, headers)


def npy(array):
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array))
    return buffer.getvalue()


@pytest.mark.parametrize("rows", [
    [[5, 3, 1, 0], [6, 3, 5, 2]],
    [[5.0, 3.0, 1.0, 0.0], [6.0, 3.0, 5.0, 2.0]],
    [["5", "3", "1", "0"], ["6", "3", "5", "2"]],
])
def test_input_fn_json(peer, rows):
    """test_input_fn_json: JSON arrays of integers, floats and numeric
    strings (``'["42", "6", "9"]'`` is read as float32 numbers) are all
    read as numbers. Adapted: rows of four values; the predictions are the
    same rows' as numbers from ``POST /model``."""
    response = invoke(peer, json.dumps(rows))
    assert response.status_code == 200, response.body
    numbers = [[float(v) for v in row] for row in rows]
    assert body_of(response) == peer.reference(numbers)["predictions"]


@pytest.mark.parametrize("body", ["5,3,1,0\n6,3,5,2\n", "5.0,3.0,1.0,0.0\n6.0,3.0,5.0,2.0\n"])
def test_input_fn_csv(peer, body):
    """test_input_fn_csv: one row per line, integers or floats, no header.
    Adapted: four values per line; a CSV request's JSON answer is MLflow's
    ``{"predictions": [...]}`` (MLflow reads CSV on this route too; only
    SageMaker sends arrays and NPY), so the CSV answer is asked for here."""
    response = invoke(peer, body, "text/csv", accept="text/csv")
    assert response.status_code == 200
    assert response.body.decode().splitlines() == \
        peer.reference([[5, 3, 1, 0], [6, 3, 5, 2]])["predictions"]


@pytest.mark.parametrize("dtype", [np.int64, np.float32, np.float64])
def test_input_fn_npy(peer, dtype):
    """test_input_fn_npz: ``.npy`` arrays of integers, float32 and float64
    are read. Adapted: a [2, 4] array."""
    rows = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]).astype(dtype)
    response = invoke(peer, npy(rows), "application/x-npy")
    assert response.status_code == 200
    assert body_of(response) == peer.reference(rows.astype(np.float64).tolist())["predictions"]


def test_input_fn_bad_content_type(peer):
    """test_input_fn_bad_content_type: ``application/not_supported`` is an
    unsupported format (the toolkit's 415). Unchanged."""
    response = invoke(peer, "", "application/not_supported")
    assert response.status_code == 415


def test_output_fn_json(peer):
    """test_output_fn_json: the JSON answer is the array itself
    (``encoders.array_to_json(prediction.tolist())``) as application/json.
    Adapted: the iris rows' predictions."""
    response = invoke(peer, json.dumps(IRIS_ROWS), accept="application/json")
    assert response.headers["Content-Type"] == "application/json"
    assert body_of(response) == peer.reference()["predictions"]


def test_output_fn_csv(peer):
    """test_output_fn_csv: one line per prediction, as text/csv. Adapted:
    labels, one per line."""
    response = invoke(peer, json.dumps(IRIS_ROWS), accept="text/csv")
    assert response.headers["Content-Type"].startswith("text/csv")
    assert response.body.decode().splitlines() == peer.reference()["predictions"]


def test_output_fn_npy(peer):
    """test_output_fn_npz: the NPY answer is ``encoders.array_to_npy`` of
    the predictions. Adapted: labels as a unicode array."""
    response = invoke(peer, npy(IRIS_ROWS), "application/x-npy", accept="application/x-npy")
    assert response.headers["Content-Type"] == "application/x-npy"
    answer = np.load(io.BytesIO(response.body), allow_pickle=False)
    assert answer.tolist() == peer.reference()["predictions"]


def test_output_fn_bad_accept(peer):
    """test_input_fn_bad_accept (it calls default_output_fn with
    ``application/not_supported``): an Accept the container cannot write is
    refused (406). Unchanged."""
    response = invoke(peer, json.dumps(IRIS_ROWS), accept="application/not_supported")
    assert response.status_code == 406


def test_ping_is_200_with_an_empty_body(peer):
    """SageMaker's container contract for ``GET /ping``: 200 and an empty body."""
    response = peer.get("/ping")
    assert response.status_code == 200 and response.body == b""


def test_content_type_spelled_as_some_aws_services_send_it(peer):
    """sagemaker-inference-toolkit ``retrieve_content_type_header``: the
    content type is read from ``Content-Type`` or its other spellings
    (``ContentType``). Adapted: a CSV body with only ``ContentType``."""
    response = peer.client.http.post("/invocations", headers={"ContentType": "text/csv"},
                                     body="5.1,3.5,1.4,0.2\n6.2,2.9,4.3,1.3\n")
    assert response.status_code == 200
    assert body_of(response)["predictions"] == peer.reference(IRIS_ROWS[:2])["predictions"]


def test_one_row_as_a_flat_array(peer):
    """test_input_fn_json's ``'[42, 6, 9]'``: a flat array. Adapted: the
    container hands the estimator a 1-D array (one value per row of a
    one-feature model); for a four-feature model a flat array of four
    values is one row."""
    response = invoke(peer, json.dumps(IRIS_ROWS[0]))
    assert body_of(response) == peer.reference(IRIS_ROWS[:1])["predictions"]


def test_csv_with_too_few_values_is_a_client_error(peer):
    """test_serving.py's input functions raise for an unreadable body (the
    toolkit answers 4xx, never a crash). Adapted: three values per line."""
    response = invoke(peer, "1,2,3\n", "text/csv")
    assert 400 <= response.status_code < 500
    assert set(body_of(response)) == {"error_code", "message"}


@out_of_scope("user modules (model_fn, input_fn, predict_fn, output_fn, transform_fn) and "
              "the multi-model server: the app serves the card's one model")
def test_user_module_transformer():
    """test_user_module_transformer_with_transform_and_other_fn,
    test_user_module_transformer_with_transform_and_no_other_fn,
    test_default_model_fn, test_predict_fn, test/unit/test_serving_mms.py,
    test/unit/test_handler_service.py."""


@out_of_scope("/execution-parameters and batch transform's record splitting (SageMaker's "
              "own batch jobs)")
def test_execution_parameters():
    """serving.py's execution_parameters_fn route (DummyUserModule in test_serving.py)."""
