"""MLflow's scoring server, ported from MLflow's own tests.

Source: mlflow/mlflow ``tests/pyfunc/test_scoring_server.py`` (commit
02531f8d12b83e392fb1a3b95f7a91ac694a08be) and the scoring server itself,
``mlflow/pyfunc/scoring_server/__init__.py`` of mlflow-skinny 3.17.2 (the
version pinned in requirements-dev.txt). MLflow's tests serve a
KNeighborsClassifier on iris' first two columns; here the served model is
the bundled iris classifier on four columns, so the rows have four values.
Statuses and ``error_code`` are MLflow's; the wording of messages is not
ported (out of scope).
"""
import io
import json

import numpy as np
import pandas as pd
import pytest

from chalicelib.protocols.identity import SERVER_VERSION
from tests.conformance.conftest import FEATURES, IRIS_ROWS, body_of, out_of_scope

JSON = "application/json"
X = np.array(IRIS_ROWS + [[5.9, 3.0, 5.1, 1.8], [4.9, 3.1, 1.5, 0.1]])


def invoke(peer, body, content_type=JSON):
    return peer.post("/invocations", body, content_type)


def assert_mlflow_error(response, status, code="BAD_REQUEST"):
    assert response.status_code == status, response.body
    body = body_of(response)
    assert body["error_code"] == code and isinstance(body["message"], str), body


def test_malformed_json_input(peer):
    """test_scoring_server_responds_to_malformed_json_input_with_error_code_and_message:
    a body that is not JSON is BAD_REQUEST (400). Unchanged."""
    assert_mlflow_error(invoke(peer, "this is,,,, not valid json"), 400)


@pytest.mark.parametrize("not_a_dict", [1, "1"])
def test_invalid_json_format_not_a_dict(peer, not_a_dict):
    """test_scoring_server_responds_to_invalid_json_format_with_error_code_and_message:
    a JSON number or string is BAD_REQUEST. Unchanged."""
    assert_mlflow_error(invoke(peer, json.dumps(not_a_dict)), 400)


def test_invalid_json_format_a_list(peer):
    """test_scoring_server_responds_to_invalid_json_format_with_error_code_and_message,
    its ``[1]`` case: BAD_REQUEST. Adapted: ``/invocations`` is also
    SageMaker's, which reads a JSON array as rows; an array that is not
    rows of the model (``[1]``) is MLflow's BAD_REQUEST."""
    assert_mlflow_error(invoke(peer, json.dumps([1])), 400)


@pytest.mark.parametrize("body", [{"not": "a serialized dataframe"},
                                  {"dataframe_records": [], "dataframe_split": {"data": []}}])
def test_invalid_json_format_keys(peer, body):
    """test_scoring_server_responds_to_invalid_json_format_with_error_code_and_message:
    no format key, or two, is BAD_REQUEST. Unchanged."""
    assert_mlflow_error(invoke(peer, body), 400)


def test_invalid_pandas_input_format(peer):
    """test_scoring_server_responds_to_invalid_pandas_input_format_with_stacktrace_and_error_code:
    ``dataframe_split`` given records and ``dataframe_records`` given a
    split object are BAD_REQUEST. Adapted: four columns."""
    frame = pd.DataFrame(X)
    assert_mlflow_error(invoke(peer, {"dataframe_split": frame.to_dict(orient="records")}), 400)
    records = json.loads(json.dumps({"dataframe_records": frame.to_dict(orient="split")}))
    assert_mlflow_error(invoke(peer, records), 400)


def test_invalid_dataframe(peer):
    """test_scoring_server_responds_to_invalid_dataframe_with_stacktrace_and_error_code:
    an index of 2 labels for 3 rows is BAD_REQUEST. Unchanged."""
    body = {"dataframe_split": {"index": [1, 2], "data": [[1], [2], [3]]}}
    assert_mlflow_error(invoke(peer, body), 400)


def test_incompatible_dataframe(peer):
    """test_scoring_server_responds_to_incompatible_inference_dataframe_with_stacktrace_and_error_code:
    ``pd.DataFrame(np.array(range(10)))`` (one column for a four-column
    model) is BAD_REQUEST. Adapted: sent as the client sends a DataFrame
    (``dataframe_split``); MLflow's ``stack_trace`` is out of scope."""
    frame = pd.DataFrame(np.array(range(10)))
    body = json.loads(json.dumps({"dataframe_split": frame.to_dict(orient="split")}))
    response = invoke(peer, body)
    assert_mlflow_error(response, 400)
    assert "stack_trace" not in body_of(response)


def test_invalid_csv(peer):
    """test_scoring_server_responds_to_invalid_csv_input_with_stacktrace_and_error_code:
    an empty CSV body is BAD_REQUEST. Unchanged (without ``stack_trace``)."""
    assert_mlflow_error(invoke(peer, "", "text/csv"), 400)


@pytest.mark.parametrize("content_type", [JSON, JSON + "; charset=UTF-8"])
def test_records_orientation(peer, content_type):
    """test_scoring_server_successfully_evaluates_correct_dataframes_with_pandas_records_orientation:
    ``pd.DataFrame(X).to_dict(orient="records")`` (no column names: keys
    0..n-1) is served positionally, with and without ``charset=UTF-8``.
    Adapted: the predictions are compared with ``POST /model``'s."""
    body = {"dataframe_records": pd.DataFrame(X).to_dict(orient="records")}
    response = invoke(peer, json.dumps(body), content_type)
    assert response.status_code == 200, response.body
    assert body_of(response)["predictions"] == peer.reference(X.tolist())["predictions"]


@pytest.mark.parametrize("content_type", [JSON, JSON + "; charset=UTF-8"])
def test_split_orientation(peer, content_type):
    """test_scoring_server_successfully_evaluates_correct_dataframes_with_pandas_split_orientation:
    ``pd.DataFrame(X).to_dict(orient="split")`` (columns 0..n-1 as
    integers, and an index) is served positionally. Adapted as above."""
    body = {"dataframe_split": pd.DataFrame(X).to_dict(orient="split")}
    response = invoke(peer, json.dumps(body), content_type)
    assert response.status_code == 200, response.body
    assert body_of(response)["predictions"] == peer.reference(X.tolist())["predictions"]


def test_unsupported_content_type(peer):
    """test_scoring_server_responds_to_invalid_content_type_request_with_unsupported_content_type_code:
    415. Unchanged."""
    body = pd.DataFrame(X).to_json(orient="split")
    response = invoke(peer, body, "not_a_supported_content_type")
    assert_mlflow_error(response, 415)


def test_unrecognized_content_type_parameter(peer):
    """test_scoring_server_responds_to_invalid_content_type_request_with_unrecognized_content_param:
    ``application/json; something=something`` is 415. Unchanged."""
    body = {"dataframe_split": pd.DataFrame(X, columns=FEATURES).to_dict(orient="split")}
    assert_mlflow_error(invoke(peer, json.dumps(body), JSON + "; something=something"), 415)


def test_mlflow_1x_format_parameter(peer):
    """scoring_server.invocations (mlflow-skinny 3.17.2): the 1.x protocol's
    ``format=pandas-split`` is an unrecognized parameter, 415 (MLflow 2.0
    moved the format into the body's keys). Unchanged."""
    body = pd.DataFrame(X, columns=FEATURES).to_json(orient="split")
    assert_mlflow_error(invoke(peer, body, JSON + "; format=pandas-split"), 415)


def test_non_utf8_charset(peer):
    """scoring_server.invocations (mlflow-skinny 3.17.2): a charset other
    than UTF-8 is 415. Unchanged."""
    body = {"instances": X.tolist()}
    assert_mlflow_error(invoke(peer, json.dumps(body), JSON + "; charset=latin-1"), 415)


def test_tf_serving_instances(peer):
    """test_scoring_server_successfully_evaluates_correct_tf_serving_sklearn:
    ``{"instances": X.tolist()}`` is 200. Adapted: four columns, answers
    compared with ``POST /model``'s."""
    response = invoke(peer, {"instances": X.tolist()})
    assert response.status_code == 200
    assert body_of(response)["predictions"] == peer.reference(X.tolist())["predictions"]


def test_tf_serving_inputs_as_columns(peer):
    """test_scoring_server_successfully_evaluates_correct_tf_serving_keras_inputs:
    ``{"inputs": {name: column}}`` is 200. Adapted: the model's four
    feature columns instead of Keras' two named inputs of two columns."""
    inputs = {name: X[:, i].tolist() for i, name in enumerate(FEATURES)}
    response = invoke(peer, {"inputs": inputs})
    assert response.status_code == 200
    assert body_of(response)["predictions"] == peer.reference(X.tolist())["predictions"]


def test_tf_serving_instances_as_objects(peer):
    """test_scoring_server_successfully_evaluates_correct_tf_serving_keras_instances:
    ``{"instances": [{name: value}]}`` is 200. Adapted: one object per row
    keyed by the model's features."""
    instances = [dict(zip(FEATURES, row)) for row in X.tolist()]
    response = invoke(peer, {"instances": instances})
    assert response.status_code == 200
    assert body_of(response)["predictions"] == peer.reference(X.tolist())["predictions"]


def test_params_not_in_the_schema_are_ignored(peer):
    """test_serving_model_with_param_schema, its last case: a param the
    model does not declare is ignored (200). Adapted: this app's one param
    is ``probabilities``."""
    body = {"dataframe_split": pd.DataFrame(X).to_dict(orient="split"),
            "params": {"invalid_param": "value"}}
    response = invoke(peer, json.dumps(body))
    assert response.status_code == 200, response.body


def test_invalid_param_value(peer):
    """test_serving_model_with_param_schema, its "invalid value" case: 400.
    Adapted: ``probabilities`` given a string instead of a boolean."""
    body = {"dataframe_split": pd.DataFrame(X).to_dict(orient="split"),
            "params": {"probabilities": "invalid_value1"}}
    assert invoke(peer, json.dumps(body)).status_code == 400


def test_value_errors_are_invalid_parameter_value_400(peer):
    """scoring_server (mlflow-skinny 3.17.2): schema enforcement fails with
    ``MlflowException.invalid_parameter_value``, whose HTTP status is 400.
    Adapted: three values for a four-feature model."""
    assert_mlflow_error(invoke(peer, {"instances": [[1.0, 2.0, 3.0]]}), 400,
                        "INVALID_PARAMETER_VALUE")


def test_csv_as_pandas_writes_it(peer):
    """scoring_server.parse_csv_input: "a valid CSV-formatted Pandas
    DataFrame produced using the pandas.DataFrame.to_csv() method", the
    header on line 1. Adapted: every form ``to_csv`` writes (index or not,
    names or positional) gives one prediction per row."""
    expected = peer.reference(X.tolist())["predictions"]
    for frame in (pd.DataFrame(X), pd.DataFrame(X, columns=FEATURES)):
        for index in (True, False):
            response = invoke(peer, frame.to_csv(index=index), "text/csv")
            assert response.status_code == 200, response.body
            assert body_of(response)["predictions"] == expected


def test_ping_and_version(peer):
    """scoring_server.init's ``/ping`` (200 once the model is loaded) and
    ``/version`` ("Returns the current mlflow version": the server's own
    version, not the model's). Adapted: this server's version."""
    assert peer.get("/ping").status_code == 200
    response = peer.get("/version")
    assert response.status_code == 200 and response.body.decode() == SERVER_VERSION


def test_ping_of_a_model_that_failed_to_load(unavailable):
    """scoring_server.init's ``ping``: "We declare it healthy if we can load
    the model successfully". Adapted: MLflow answers 404 for no model; this
    app 503 (the model could not be loaded) in MLflow's error shape."""
    response = unavailable.get("/ping")
    assert response.status_code == 503
    assert body_of(response)["error_code"] == "TEMPORARILY_UNAVAILABLE"


def test_scoring_server_client(local_url):
    """test_scoring_server_client: MLflow's own ``ScoringServerClient``
    waits for the server, invokes ``pd.DataFrame(X)`` (no column names) and
    reads ``get_version()`` as the server's version. Adapted: against
    ``chalice local``; predictions compared with ``POST /model``'s."""
    import urllib.request
    from mlflow.pyfunc.scoring_server.client import ScoringServerClient
    host, port = local_url.split("//", 1)[1].split(":")
    client = ScoringServerClient(host=host, port=int(port))
    client.wait_server_ready(timeout=30)
    request = urllib.request.Request(local_url + "/model", method="POST",
                                     data=json.dumps({"instances": X.tolist()}).encode(),
                                     headers={"Content-Type": JSON})
    with urllib.request.urlopen(request, timeout=30) as answer:
        expected = json.loads(answer.read())["predictions"]
    result = client.invoke(pd.DataFrame(X)).get_predictions(predictions_format="ndarray")
    assert result.tolist() == expected
    assert client.get_version() == SERVER_VERSION


@out_of_scope("MLflow's stack_trace field: a traceback is never returned to a client here "
              "(the detail is logged)")
def test_stack_trace_in_errors():
    """test_scoring_server_responds_to_invalid_csv_input_with_stacktrace_and_error_code
    and the two other ``*_with_stacktrace_*`` tests assert ``stack_trace``."""


@out_of_scope("the exact wording of MLflow's error messages (statuses and error_code are "
              "checked)")
def test_error_message_wording():
    """test_scoring_server_responds_to_malformed_json_input_with_error_code_and_message,
    test_scoring_server_responds_to_invalid_json_format_with_error_code_and_message,
    test_scoring_server_responds_to_invalid_pandas_input_format_with_stacktrace_and_error_code:
    their ``assert expected_message in message``."""


@out_of_scope("MLflow's in-process parsers (infer_and_parse_data, parse_csv_input) and "
              "their pandas dtype inference; this app types values by the model card")
def test_parse_json_input_and_dtypes():
    """test_parse_json_input_records_oriented, test_parse_json_input_split_oriented,
    test_records_oriented_json_to_df, test_split_oriented_json_to_df,
    test_parse_with_schema_csv, test_parse_with_schema."""


@out_of_scope("pyfunc models (PythonModel echoing dtypes, datetime and binary columns) and "
              "the unified LLM input format: this product serves scikit-learn estimators")
def test_serving_model_with_schema():
    """test_serving_model_with_schema, test_parse_json_input_including_path."""


@out_of_scope("Parquet bodies (application/x-parquet): not a format of the other peers, and "
              "a pyarrow dependency in the Lambda")
def test_parquet_input():
    """scoring_server.invocations' CONTENT_TYPE_PARQUET branch."""


@out_of_scope("the mlflow CLI's gunicorn command line")
def test_get_cmd():
    """test_get_cmd."""


def test_csv_bytes_stay_rows(peer):
    """scoring_server.parse_csv_input reads the body with ``pd.read_csv``:
    the same CSV read back by pandas has as many rows as predictions.
    Adapted: the count is checked against pandas' own reading."""
    body = pd.DataFrame(X).to_csv()
    rows = len(pd.read_csv(io.StringIO(body)))
    response = invoke(peer, body, "text/csv")
    assert len(body_of(response)["predictions"]) == rows == len(X)
