"""The Chalice app: routes read the request, call ``chalicelib``, return."""
from chalice import Chalice, Response

from chalicelib import service

app = Chalice(app_name="sklearn-serverless")
SERVICE = service.from_environment()


def _respond(reply):
    return Response(body=reply.body, status_code=reply.status, headers=reply.headers)


@app.route("/model", methods=["POST"], content_types=["application/json", "text/csv"])
def predict():
    return _respond(SERVICE.predict(app.current_request))


@app.route("/model", methods=["GET"])
def model_card():
    return _respond(SERVICE.card())


@app.route("/health", methods=["GET"])
def health():
    return _respond(SERVICE.health())
