"""The Chalice app: routes read the request, call ``chalicelib``, return."""
from chalicelib.ops import lazy_imports

# First: in the package, the dependency modules the build's trace found no
# request path runs become lazy (run on first use); elsewhere, nothing.
lazy_imports.install()

import re  # noqa: E402

from chalice import Chalice, CORSConfig, IAMAuthorizer, Response  # noqa: E402

from chalicelib.protocols import service  # noqa: E402
from chalicelib.ops import snapstart
from chalicelib.protocols import invocations, kserve_v1, open_inference  # noqa: E402
from chalicelib.http.access import public_access  # noqa: E402

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
                  expose_headers=["X-Model-Name", "X-Model-Version", "X-Model-Runtime"]) if ACCESS.cors_origin else False


# NumPy's .npy (SageMaker): a binary body in and out through API Gateway.
app.api.binary_types.append("application/x-npy")


def _respond(reply):
    headers = reply.headers
    if reply.status == 503:
        wait = SERVICE.model.retry_after()
        if wait is not None:  # a model load failure that is tried again
            headers = dict(headers, **{"Retry-After": str(wait)})
    return Response(body=reply.body, status_code=reply.status, headers=headers)


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


# The peers' protocols (chalicelib/protocols): MLflow's scoring server,
# SageMaker's container contract, KServe V1 and the Open Inference Protocol
# (V2). (method, path, handler, behind the stage's auth). Predictions and
# model metadata are protected like /model; liveness, readiness and the
# server's identity stay open like /health. `GET /` is the try-it page, so
# KServe V1's liveness probe of the base URL is not served. `{segment}` is KServe V1's
# `name:predict`: API Gateway only allows a variable as a whole segment.
PROTOCOL_ROUTES = [
    ("GET", "/ping", invocations.ping, False),
    ("GET", "/version", invocations.version, False),
    ("POST", "/invocations", invocations.invocations, True),
    ("GET", "/v1/models", kserve_v1.models, False),
    ("GET", "/v1/models/{segment}", kserve_v1.model_ready, False),
    ("POST", "/v1/models/{segment}", kserve_v1.predict, True),
    ("GET", "/v2", open_inference.server_metadata, False),
    ("GET", "/v2/health/live", open_inference.live, False),
    ("GET", "/v2/health/ready", open_inference.ready, False),
    ("GET", "/v2/models/{name}", open_inference.model_metadata, True),
    ("GET", "/v2/models/{name}/ready", open_inference.model_ready, False),
    ("POST", "/v2/models/{name}/infer", open_inference.infer, True),
    ("GET", "/v2/models/{name}/versions/{version}", open_inference.model_metadata, True),
    ("GET", "/v2/models/{name}/versions/{version}/ready", open_inference.model_ready, False),
    ("POST", "/v2/models/{name}/versions/{version}/infer", open_inference.infer, True),
]


def _protocol_view(handler):
    def view(**path_params):
        return _respond(handler(SERVICE, app.current_request, **path_params))
    return view


for _method, _path, _handler, _protected in PROTOCOL_ROUTES:
    # "*/*": every body reaches the handler, which answers an unreadable
    # type with 415 in its protocol's error shape.
    _options = dict(AUTH if _protected else {})
    if _method == "POST":
        _options["content_types"] = ["*/*"]
    app.route(_path, methods=[_method], cors=CORS,
              name=_method.lower() + re.sub(r"\W+", "_", _path).rstrip("_"),
              **_options)(_protocol_view(_handler))


# The try-it page: open on every stage (it holds nothing secret; predictions
# stay behind the stage's auth), same origin as /model, so no CORS.
@app.route("/", methods=["GET"])
def try_it_page():
    return _respond(SERVICE.page())
