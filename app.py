"""The Chalice app: routes read the request, call ``chalicelib``, return."""
from chalice import Chalice, CORSConfig, IAMAuthorizer, Response

from chalicelib import service, snapstart
from chalicelib.settings import public_access

app = Chalice(app_name="sklearn-serverless")
SERVICE = service.from_environment()
# Lambda SnapStart: warm before the snapshot, re-seed after each restore.
snapstart.register(SERVICE)
# Chalice imports this module with the stage's environment variables when it
# packages or deploys, so the stage's config decides auth and CORS here.
ACCESS = public_access()
AUTH = ({"api_key_required": True} if ACCESS.auth == "api_key"
        else {"authorizer": IAMAuthorizer()} if ACCESS.auth == "iam" else {})
CORS = CORSConfig(allow_origin=ACCESS.cors_origin, allow_headers=["X-Api-Key"],
                  expose_headers=["X-Model-Name", "X-Model-Version"]) if ACCESS.cors_origin else False


def _respond(reply):
    return Response(body=reply.body, status_code=reply.status, headers=reply.headers)


@app.route("/model", methods=["POST"], content_types=["application/json", "text/csv"],
           cors=CORS, **AUTH)
def predict():
    return _respond(SERVICE.predict(app.current_request))


@app.route("/model", methods=["GET"], cors=CORS, **AUTH)
def model_card():
    return _respond(SERVICE.card())


@app.route("/health", methods=["GET"], cors=CORS)
def health():
    return _respond(SERVICE.health())


@app.route("/openapi.json", methods=["GET"], cors=CORS)
def openapi():
    return _respond(SERVICE.openapi())
