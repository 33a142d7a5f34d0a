"""API Gateway REST API (v1) Lambda proxy events, as the ``prod`` stage sends
them, and a helper that calls the real Lambda handler (``app.app``) with one.

Used by the hostile-input, fuzz and soak tests, which want the exact path a
deployed function takes: event dict in, response dict out, nothing of
Chalice's local test client in between.
"""
import base64
import itertools
import json

_request_ids = itertools.count(1)


class LambdaContext:
    """The few attributes of Lambda's context object that code may read."""

    function_name = "sklearn-serverless-prod"
    function_version = "$LATEST"
    invoked_function_arn = ("arn:aws:lambda:us-east-1:123456789012:function:"
                            "sklearn-serverless-prod")
    memory_limit_in_mb = 1024
    log_group_name = "/aws/lambda/sklearn-serverless-prod"
    log_stream_name = "2026/11/25/[$LATEST]0123456789abcdef"

    def __init__(self, request_id="c6af9ac6-7b61-11e6-9a41-93e8deadbeef"):
        self.aws_request_id = request_id

    @staticmethod
    def get_remaining_time_in_millis():
        return 30_000


def proxy_event(body=None, *, method="POST", path="/model", content_type="application/json",
                headers=None, query=None, base64_encoded=False, encode_base64=False):
    """A REST v1 proxy event.

    ``body``: str, bytes or None. bytes are sent base64-encoded (as API
    Gateway does for binary media types); ``encode_base64=True`` forces that
    for a str. ``base64_encoded=True`` marks a str body as already encoded
    (to send invalid base64). ``content_type=None`` omits the header.
    ``query``: dict name -> str or list of str.
    """
    all_headers = {
        "Accept": "*/*",
        "Host": "abc123.execute-api.us-east-1.amazonaws.com",
        "User-Agent": "fuzz/1.0",
        "X-Forwarded-For": "203.0.113.7",
        "X-Forwarded-Port": "443",
        "X-Forwarded-Proto": "https",
    }
    if content_type is not None:
        all_headers["Content-Type"] = content_type
    all_headers.update(headers or {})
    is_b64 = base64_encoded
    if isinstance(body, bytes):
        body = base64.b64encode(body).decode("ascii")
        is_b64 = True
    elif encode_base64 and body is not None:
        body = base64.b64encode(body.encode("utf-8")).decode("ascii")
        is_b64 = True
    multi_query = None
    if query:
        multi_query = {k: (v if isinstance(v, list) else [v]) for k, v in query.items()}
    request_id = "req-%08d" % next(_request_ids)
    return {
        "resource": path,
        "path": path,
        "httpMethod": method,
        "headers": all_headers,
        "multiValueHeaders": {k: [v] for k, v in all_headers.items()},
        "queryStringParameters": ({k: v[-1] for k, v in multi_query.items()}
                                  if multi_query else None),
        "multiValueQueryStringParameters": multi_query,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "resourceId": "abc123",
            "resourcePath": path,
            "httpMethod": method,
            "extendedRequestId": request_id,
            "requestTime": "25/Nov/2026:10:52:24 +0000",
            "path": "/prod" + path,
            "accountId": "123456789012",
            "protocol": "HTTP/1.1",
            "stage": "prod",
            "domainPrefix": "abc123",
            "requestTimeEpoch": 1795603944000,
            "requestId": request_id,
            "identity": {"sourceIp": "203.0.113.7", "userAgent": "fuzz/1.0"},
            "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "apiId": "abc123",
        },
        "body": body,
        "isBase64Encoded": is_b64,
    }


def json_event(payload, **kwargs):
    return proxy_event(json.dumps(payload), **kwargs)


def invoke(app, event, context=None):
    """Call the Lambda handler; return ``(status, headers, body_text)``."""
    response = app(event, context or LambdaContext())
    body = response["body"]
    if response.get("isBase64Encoded"):
        body = base64.b64decode(body).decode("utf-8")
    return response["statusCode"], response["headers"], body
