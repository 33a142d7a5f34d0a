"""The CSV header rule (chalicelib.schema.parsing.parse_csv), on every CSV
route: whatever form ``pandas.DataFrame(X).to_csv()`` writes (with or
without its index column, with or without the header line, named or
positional columns, columns in any order, RFC 4180's ``header`` parameter
given or not), the answer has exactly one prediction per data row, and they
are the predictions of the same rows sent as JSON in the same run."""
import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.conftest import FEATURES

SETTINGS = settings(max_examples=120, derandomize=True, database=None, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
CSV_ROUTES = ("/model", "/invocations")


@pytest.fixture(scope="module")
def client(bundled_client):
    return bundled_client


def post(client, path, body, content_type):
    return client.http.post(path, headers={"Content-Type": content_type}, body=body)


def json_predictions(client, rows):
    response = post(client, "/model", json.dumps({"instances": rows}), "application/json")
    assert response.status_code == 200, response.body
    return json.loads(response.body)["predictions"]


values = st.one_of(
    st.floats(min_value=-50, max_value=50, allow_nan=False, width=64),
    st.integers(min_value=0, max_value=9).map(float),
)
matrices = st.integers(min_value=1, max_value=12).flatmap(
    lambda m: st.lists(st.lists(values, min_size=4, max_size=4), min_size=m, max_size=m))


@SETTINGS
@given(rows=matrices, named=st.booleans(), index=st.booleans(), header=st.booleans(),
       integers=st.booleans(), order=st.permutations(range(4)), declare=st.booleans())
def test_to_csv_in_every_form_gives_one_prediction_per_row(client, rows, named, index, header,
                                                           integers, order, declare):
    X = np.asarray(rows)
    frame = pd.DataFrame(X.astype(np.int64) if integers else X,
                         columns=FEATURES if named else None)
    if named and header:  # without a header line, only the card's order can be meant
        frame = frame[[FEATURES[k] for k in order]]
    if integers and header is False and not declare:
        # Without a header line or parameter, a first row of the integers
        # 0..n-1 reads as pandas' positional header: the one ambiguous CSV,
        # which header=absent settles (docs/csv-headers.md).
        assume(frame.iloc[0].tolist() != list(range(4)))
    body = frame.to_csv(index=index, header=header)
    content_type = "text/csv" + (("; header=present" if header else "; header=absent")
                                 if declare else "")
    expected = json_predictions(client, frame[FEATURES].values.tolist() if named
                                else frame.values.tolist())
    for path in CSV_ROUTES:
        response = post(client, path, body, content_type)
        assert response.status_code == 200, (path, body, response.body)
        assert json.loads(response.body)["predictions"] == expected, (path, body)


def test_the_issue_s_two_csvs_by_hand(client):
    X = [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [6.7, 3.0, 5.2, 2.3]]
    expected = json_predictions(client, X)
    for body in (pd.DataFrame(X).to_csv(index=False), pd.DataFrame(X).to_csv()):
        for path in CSV_ROUTES:
            answer = json.loads(post(client, path, body, "text/csv").body)
            assert answer["predictions"] == expected, (path, body)


def test_header_parameter_wins(client):
    X = [[0, 1, 2, 3], [6, 3, 5, 2]]
    body = pd.DataFrame(X).to_csv(index=False, header=False)
    # Without the parameter the first line reads as the positional header...
    assert len(json.loads(post(client, "/model", body, "text/csv").body)["predictions"]) == 1
    # ...with header=absent it is data.
    for path in CSV_ROUTES:
        response = post(client, path, body, "text/csv; header=absent")
        assert json.loads(response.body)["predictions"] == json_predictions(client, X)
    # header=present on a line that is no header: the error names its column.
    response = post(client, "/model", "5.1,3.5,1.4,0.2\n1,2,3,4\n", "text/csv; header=present")
    assert response.status_code == 422
    assert 'CSV header: unknown feature "5.1"' in json.loads(response.body)["Message"]
    response = post(client, "/model", body, "text/csv; header=maybe")
    assert response.status_code == 415
    assert "header must be present or absent" in json.loads(response.body)["Message"]


def test_a_row_numbered_index_column_without_header_is_dropped_only_when_it_counts_rows(client):
    X = [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3]]
    expected = json_predictions(client, X)
    body = pd.DataFrame(X).to_csv(header=False)
    assert json.loads(post(client, "/model", body, "text/csv").body)["predictions"] == expected
    # Five values per line that are not numbered 0, 1, ...: refused, not guessed.
    response = post(client, "/model", pd.DataFrame(X, index=[7, 8]).to_csv(header=False),
                    "text/csv")
    assert response.status_code == 422
    assert "CSV line 1: expected 4 values" in json.loads(response.body)["Message"]
