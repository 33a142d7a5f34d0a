"""The Chalice app: routes read the request, call ``chalicelib``, return."""
from chalicelib.ops import lazy_imports

# First: in the package, the dependency modules the build's trace found no
# request path runs become lazy (run on first use); elsewhere, nothing.
lazy_imports.install()

import re  # noqa: E402

from chalice import Chalice, CORSConfig, IAMAuthorizer, Rate, Response  # noqa: E402

from chalicelib.http.config import BatchConfig  # noqa: E402
from chalicelib.ops import snapstart  # noqa: E402
from chalicelib.protocols import (invocations, kserve_v1, model_api, open_inference,  # noqa: E402
                                  service, triton)

app = Chalice(app_name="sklearn-serverless")
SERVICE = service.from_environment()
# Lambda SnapStart: warm before the snapshot, re-seed after each restore.
snapstart.register(SERVICE)
# Chalice imports this module with the stage's environment variables when it
# packages or deploys, so the stage's config decides auth and CORS here.
ACCESS = SERVICE.config.access
AUTH = ({"api_key_required": True} if ACCESS.auth == "api_key"
        else {"authorizer": IAMAuthorizer()} if ACCESS.auth == "iam" else {})
CORS = CORSConfig(allow_origin=ACCESS.cors_origin, allow_headers=["X-Api-Key"],
                  expose_headers=["X-Model-Name", "X-Model-Version", "X-Model-Runtime"]) if ACCESS.cors_origin else False


# NumPy's .npy (SageMaker): a binary body in and out through API Gateway.
app.api.binary_types.append("application/x-npy")


# Every route, (method, path, handler, behind the stage's auth): the app's
# own protocol (chalicelib/protocols/model_api.py) and the peers' (MLflow's
# scoring server, SageMaker's container contract, KServe V1 and the Open
# Inference Protocol, V2). Predictions and model metadata are protected;
# liveness, readiness, the server's identity, the OpenAPI document and the
# try-it page (it holds nothing secret) stay open. `GET /` is the try-it page
# for a browser and KServe V1's liveness for any other client. `{segment}`
# is KServe V1's `name:predict`: API Gateway only allows a variable as a
# whole segment.
ROUTES = [
    ("POST", "/model", model_api.predict, True),
    ("GET", "/model", model_api.card, True),
    ("GET", "/health", model_api.health, False),
    ("GET", "/openapi.json", model_api.openapi, False),
    ("GET", "/", kserve_v1.root, False),
    ("GET", "/ping", invocations.ping, False),
    ("GET", "/version", invocations.version, False),
    ("POST", "/invocations", invocations.invocations, True),
    ("GET", "/v1/models", kserve_v1.models, False),
    ("GET", "/v1/models/{segment}", kserve_v1.model_ready, False),
    ("POST", "/v1/models/{segment}", kserve_v1.predict, True),
    ("GET", "/v2", open_inference.server_metadata, False),
    ("GET", "/v2/health/live", open_inference.live, False),
    ("GET", "/v2/health/ready", open_inference.ready, False),
    ("GET", "/v2/models", open_inference.models, False),
    ("GET", "/v2/models/{name}", open_inference.model_metadata, True),
    ("GET", "/v2/models/{name}/config", triton.model_config, True),
    ("GET", "/v2/models/{name}/stats", triton.model_stats, True),
    ("GET", "/v2/models/{name}/ready", open_inference.model_ready, False),
    ("POST", "/v2/models/{name}/infer", open_inference.infer, True),
    ("GET", "/v2/models/{name}/versions/{version}", open_inference.model_metadata, True),
    ("GET", "/v2/models/{name}/versions/{version}/ready", open_inference.model_ready, False),
    ("POST", "/v2/models/{name}/versions/{version}/infer", open_inference.infer, True),
    ("GET", "/v2/models/{name}/versions/{version}/config", triton.model_config, True),
    ("GET", "/v2/models/{name}/versions/{version}/stats", triton.model_stats, True),
    ("POST", "/v2/repository/index", triton.repository_index, True),
]


def _view(handler):
    def view(**path_params):
        reply = handler(SERVICE, app.current_request, **path_params)
        return Response(body=reply.body, status_code=reply.status, headers=reply.headers)
    return view


for _method, _path, _handler, _protected in ROUTES:
    _options = dict(AUTH if _protected else {})
    if _method == "POST":
        # Every body reaches the handler, which answers an unreadable type
        # (or none) with 415 in its protocol's error shape.
        _options["content_types"] = ["*/*"]
    # The page is same-origin with the API: no CORS.
    app.route(_path, methods=[_method], cors=CORS if _path != "/" else False,
              name=_method.lower() + (re.sub(r"\W+", "_", _path).rstrip("_") or "_root"),
              **_options)(_view(_handler))


# Batch transform (chalicelib/batch): an S3 object of rows in, one scored
# object out, fanned out over an SQS queue of line-aligned range tasks. The
# stage's BATCH_EVENTS says how the splitter hears of new objects: "chalice"
# declares the S3 notification here (`chalice deploy` adds it to an existing
# bucket); "template" declares a plain function that the packaged template's
# bucket notifies (CloudFormation can only set the notifications of a bucket
# it creates, and Chalice refuses to package on_s3_event); "off" declares
# neither function.
BATCH = BatchConfig.from_env()
if BATCH.events != "off":
    from chalicelib.batch.jobs import Batch

    BATCH_JOBS = Batch(BATCH, SERVICE.model)

    def _split(event):
        return BATCH_JOBS.split(event)

    if BATCH.events == "chalice":
        @app.on_s3_event(bucket=BATCH.bucket, events=["s3:ObjectCreated:*"],
                         prefix=BATCH.input_prefix, name="batch_split")
        def batch_split(event):
            return _split(event.to_dict())
    else:
        @app.lambda_function(name="batch_split")
        def batch_split(event, context):
            return _split(event)

    @app.on_sqs_message(queue=BATCH.queue, batch_size=BATCH.sqs_batch_size,
                        maximum_concurrency=BATCH.max_concurrency, name="batch_work")
    def batch_work(event):
        # A task that raises returns the whole batch to the queue; with the
        # default batch size of one, only itself.
        for record in event:
            BATCH_JOBS.work(record.to_dict()["messageId"], record.body)

    # A task that failed every delivery sits in the dead-letter queue; its
    # job would say `running` forever. The sweep marks such jobs failed and
    # leaves the messages where the alarm and an operator see them.
    @app.schedule(Rate(BATCH.sweep_minutes, unit=Rate.MINUTES), name="batch_dead_letters")
    def batch_dead_letters(event):
        BATCH_JOBS.sweep_dead_letters()
