"""A real ``chalice local`` on a free loopback port (the ``local_url``
fixture), spoken to over HTTP."""
import json
import urllib.error
import urllib.request

from tests.conftest import IRIS_ROWS


def request(url, body=None, content_type="application/json"):
    data = body.encode() if isinstance(body, str) else body
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    if data is not None:
        req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read())


def test_predicts_over_http(local_url):
    status, headers, body = request(local_url + "/model", json.dumps({"instances": IRIS_ROWS}))
    assert status == 200
    assert body["predictions"] == ["setosa", "versicolor", "virginica"]
    assert headers["X-Model-Version"] == "1.0.0"


def test_csv_and_errors_over_http(local_url):
    status, _, body = request(local_url + "/model", "5.1,3.5,1.4,0.2\n", "text/csv")
    assert (status, body["predictions"]) == (200, ["setosa"])
    status, _, body = request(local_url + "/model", '{"instances": [[1, 2, "x", 4]]}')
    assert status == 422 and "instances[0][2] (petal_length)" in body["Message"]
    status, _, body = request(local_url + "/model", "hello", "text/plain")
    assert status == 415 and set(body) == {"Code", "Message"}


def test_health_and_card_over_http(local_url):
    assert request(local_url + "/health")[0] == 200
    status, _, card = request(local_url + "/model")
    assert status == 200 and card["name"] == "iris-classifier"
