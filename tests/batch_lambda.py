"""Lambda's side of a batch job against the emulator, for the tests that
import it from here; it lives in tools/fixtures/batch_lambda.py, which the
batch benchmark shares."""
from tools.fixtures.batch_lambda import (aws_env, batch_app, create_stage_resources,  # noqa: F401
                                         deliver_s3_events, drain, poll_once, receive, sqs_event)
