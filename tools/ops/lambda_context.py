"""The context object Lambda's Python runtime hands a handler, as fixed
class attributes and nothing imported: the replays that run a package in an
interpreter seeing only the package and the standard library (the package
tests, the benchmark's children) take this class's source text
(``inspect.getsource(Context)``) into their scripts, so that there is one
definition. :class:`tools.ops.lambda_events.LambdaContext` is the richer one
for in-process callers (a fresh request id, a real deadline)."""


class Context:
    function_name = "sklearn-serverless-prod"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:sklearn-serverless-prod"
    memory_limit_in_mb = "512"
    aws_request_id = "00000000-0000-0000-0000-000000000001"
    log_group_name = "/aws/lambda/sklearn-serverless-prod"
    log_stream_name = "stream"

    def get_remaining_time_in_millis(self):
        return 10000
