"""API Gateway REST API (v1) proxy events, as API Gateway sends them to an
``AWS_PROXY`` Lambda integration (payload format version 1.0), and a minimal
Lambda context object.

Standard library only: ``tools/build/exercise.py`` loads this file by path
inside an isolated interpreter that sees nothing but the unzipped package.
"""
import base64
import itertools
import time
import uuid

API_ID = "abcdef1234"
ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
STAGE = "prod"
_counter = itertools.count(1)

ROUTES = {("POST", "/model"), ("GET", "/model"), ("GET", "/health")}


def _multi(mapping):
    if mapping is None:
        return None
    return {k: (list(v) if isinstance(v, (list, tuple)) else [v]) for k, v in mapping.items()}


def _single(multi):
    if multi is None:
        return None
    return {k: v[-1] for k, v in multi.items()}


def rest_event(method, path, body=None, headers=None, query=None, stage=STAGE,
               base64_body=False, resource=None, path_params=None):
    """One v1 proxy event. ``headers``/``query`` values may be lists (sent as
    repeated headers / parameters: the single-value maps then hold the last
    one, as API Gateway does). ``body`` may be str or bytes; bytes, or
    ``base64_body=True``, are sent base64-encoded with ``isBase64Encoded``."""
    request_id = str(uuid.UUID(int=next(_counter)))
    host = "%s.execute-api.%s.amazonaws.com" % (API_ID, REGION)
    base_headers = {
        "Accept": "*/*",
        "Host": host,
        "User-Agent": "curl/8.5.0",
        "X-Amzn-Trace-Id": "Root=1-00000000-%024d" % int(request_id[-12:], 16),
        "X-Forwarded-For": "203.0.113.7",
        "X-Forwarded-Port": "443",
        "X-Forwarded-Proto": "https",
    }
    for name, value in (headers or {}).items():
        base_headers[name] = value
    multi_headers = _multi(base_headers)
    multi_query = _multi(query) if query else None
    is_base64 = False
    if isinstance(body, bytes) or (base64_body and body is not None):
        raw = body if isinstance(body, bytes) else body.encode("utf-8")
        body = base64.b64encode(raw).decode("ascii")
        is_base64 = True
    resource = resource or path
    now = time.time()
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": _single(multi_headers),
        "multiValueHeaders": multi_headers,
        "queryStringParameters": _single(multi_query),
        "multiValueQueryStringParameters": multi_query,
        "pathParameters": path_params,
        "stageVariables": None,
        "requestContext": {
            "resourceId": "a1b2c3",
            "resourcePath": resource,
            "httpMethod": method,
            "extendedRequestId": "Xyz%s=" % request_id[-8:],
            "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "path": "/%s%s" % (stage, path),
            "accountId": ACCOUNT_ID,
            "protocol": "HTTP/1.1",
            "stage": stage,
            "domainPrefix": API_ID,
            "requestTimeEpoch": int(now * 1000),
            "requestId": request_id,
            "identity": {
                "cognitoIdentityPoolId": None,
                "accountId": None,
                "cognitoIdentityId": None,
                "caller": None,
                "sourceIp": "203.0.113.7",
                "principalOrgId": None,
                "accessKey": None,
                "cognitoAuthenticationType": None,
                "cognitoAuthenticationProvider": None,
                "userArn": None,
                "userAgent": "curl/8.5.0",
                "user": None,
            },
            "domainName": host,
            "deploymentId": "dep123",
            "apiId": API_ID,
        },
        "body": body,
        "isBase64Encoded": is_base64,
    }


def post_model(body, content_type="application/json", query=None, **kw):
    headers = {"Content-Type": content_type} if content_type is not None else {}
    return rest_event("POST", "/model", body=body, headers=headers, query=query, **kw)


def get(path, resource=None, path_params=None, headers=None):
    return rest_event("GET", path, resource=resource, path_params=path_params, headers=headers)


class LambdaContext:
    """The attributes of the Python runtime's context object."""

    def __init__(self, function_name="sklearn-serverless-prod", memory_mb=512,
                 timeout_s=10):
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = "arn:aws:lambda:%s:%s:function:%s" % (
            REGION, ACCOUNT_ID, function_name)
        self.memory_limit_in_mb = str(memory_mb)
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = "/aws/lambda/%s" % function_name
        self.log_stream_name = "2026/01/01/[$LATEST]0123456789abcdef"
        self._deadline = time.time() + timeout_s

    def get_remaining_time_in_millis(self):
        return max(0, int((self._deadline - time.time()) * 1000))
