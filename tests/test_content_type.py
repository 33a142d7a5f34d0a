"""``Content-Type`` and ``?probabilities=`` are read one way
(:mod:`chalicelib.http.media`) on every route that takes rows; each route
keeps its own rule for parameters it does not know (``POST /model`` ignores
them, MLflow's ``/invocations`` refuses them, as MLflow does)."""
import json

import pytest

from chalicelib.http import media
from chalicelib.http.errors import BadRequest, UnsupportedMediaType

CSV_BODY = "5.1,3.5,1.4,0.2\n6.2,2.9,4.3,1.3\n"
ROUTES = ("/model", "/invocations")


@pytest.fixture(scope="module")
def client(bundled_client):
    return bundled_client


def post(client, path, content_type, body=CSV_BODY):
    response = client.http.post(path, headers={"Content-Type": content_type}, body=body)
    document = json.loads(response.body)
    message = document.get("Message") or document.get("message") if type(document) is dict else None
    return response.status_code, document, message


@pytest.mark.parametrize("path", ROUTES)
@pytest.mark.parametrize("content_type, status, says", [
    ('text/csv; charset="UTF-8"', 200, None),
    ("TEXT/CSV;charset=utf8", 200, None),
    ("text/csv; charset=latin-1", 415, "Unsupported charset: latin-1; send UTF-8"),
    ("text/csv; header=maybe", 415, 'header must be present or absent (RFC 4180), got "maybe"'),
    ("text/csv; header=absent", 200, None),
])
def test_every_route_reads_charset_and_header_alike(client, path, content_type, status, says):
    code, document, message = post(client, path, content_type)
    assert code == status, document
    if says:
        assert says in message
    else:
        assert len(document["predictions"]) == 2


@pytest.mark.parametrize("path", ROUTES)
def test_every_route_reads_the_probabilities_flag_alike(client, path):
    code, document, _ = post(client, path + "?probabilities=TRUE", "text/csv")
    assert code == 200 and len(document["probabilities"]) == 2
    code, document, message = post(client, path + "?probabilities=yes", "text/csv")
    assert code == 400
    assert message == 'probabilities: expected true or false, got "yes"'


def test_an_unknown_parameter_is_ignored_by_model_and_refused_by_mlflow(client):
    assert post(client, "/model", "text/csv; x=1")[0] == 200
    code, document, message = post(client, "/invocations", "text/csv; x=1")
    assert code == 415 and document["error_code"] == "BAD_REQUEST"
    assert message.startswith("Unrecognized content type parameters: x.")


def test_content_type_parts():
    assert media.content_type(None) == ("application/json", {})
    assert media.content_type(" Text/CSV ; Header=\"present\" ; charset=UTF-8") == (
        "text/csv", {"header": "present"})
    with pytest.raises(UnsupportedMediaType):
        media.content_type("application/json; charset=utf-16")
    assert media.csv_header({}) is None
    assert media.csv_header({"header": "ABSENT"}) is False
    with pytest.raises(BadRequest) as caught:
        media.query_flag("x" * 100)
    assert caught.value.loc == ("probabilities",) and "..." in caught.value.message
