"""Lambda's side of a batch job, against moto's server on loopback: the app
loaded with a batch stage's settings, its handlers invoked with the events
Lambda would build, from messages really received from the emulator's SQS
(the S3 event itself arrives through the bucket's notification to a queue,
so its shape is the emulator's, not written here)."""
import importlib.util
import itertools
import json
import os
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

from tests.aws_emulator import ACCOUNT_ID, FAKE_KEY_ID, FAKE_SECRET, REGION

ROOT = Path(__file__).resolve().parent.parent
_count = itertools.count()


def aws_env(endpoint_url):
    return {"AWS_ENDPOINT_URL": endpoint_url, "AWS_ACCESS_KEY_ID": FAKE_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": FAKE_SECRET, "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION, "AWS_EC2_METADATA_DISABLED": "true"}


@contextmanager
def batch_app(endpoint_url, **settings):
    """app.py, loaded as a module of its own (the suite's ``app`` is left
    alone) under a stage whose batch settings are ``settings`` (by default
    ``BATCH_EVENTS=chalice``: the splitter is Chalice's S3 event handler)."""
    env = dict(aws_env(endpoint_url), **{"BATCH_EVENTS": "chalice", **settings})
    with mock.patch.dict(os.environ, env):
        spec = importlib.util.spec_from_file_location("app_batch_%d" % next(_count),
                                                      ROOT / "app.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module


def create_stage_resources(s3, sqs, bucket, queue, input_prefix="batch/in/", max_receive=3):
    """The bucket, the task queue with its dead-letter queue, and a queue
    receiving the bucket's ObjectCreated notifications (standing in for
    the splitter's Lambda trigger)."""
    s3.create_bucket(Bucket=bucket)
    dlq = sqs.create_queue(QueueName=queue + "-dlq")["QueueUrl"]
    dlq_arn = "arn:aws:sqs:%s:%s:%s-dlq" % (REGION, ACCOUNT_ID, queue)
    tasks = sqs.create_queue(QueueName=queue, Attributes={
        "VisibilityTimeout": "30",
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn,
                                     "maxReceiveCount": str(max_receive)})})["QueueUrl"]
    events = sqs.create_queue(QueueName=queue + "-s3-events")["QueueUrl"]
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={
        "QueueConfigurations": [{
            "QueueArn": "arn:aws:sqs:%s:%s:%s-s3-events" % (REGION, ACCOUNT_ID, queue),
            "Events": ["s3:ObjectCreated:*"],
            "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": input_prefix}]}}}]})
    return {"tasks": tasks, "dlq": dlq, "events": events}


def receive(sqs, url, n=10, wait=0):
    return sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=n, WaitTimeSeconds=wait,
                               AttributeNames=["All"]).get("Messages", [])


def deliver_s3_events(app_module, sqs, events_url):
    """Every S3 notification waiting, handed to the splitter as Lambda
    hands it (the notification's own JSON is the function's event)."""
    delivered = 0
    for message in receive(sqs, events_url):
        event = json.loads(message["Body"])
        if "Records" in event:  # not moto's s3:TestEvent
            app_module.batch_split(event, None)
            delivered += 1
        sqs.delete_message(QueueUrl=events_url, ReceiptHandle=message["ReceiptHandle"])
    return delivered


def sqs_event(messages, queue_arn):
    """The event Lambda's SQS poller gives the function for ``messages``."""
    return {"Records": [{
        "messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
        "attributes": m.get("Attributes", {}), "messageAttributes": {},
        "md5OfBody": m["MD5OfBody"], "eventSource": "aws:sqs", "eventSourceARN": queue_arn,
        "awsRegion": REGION} for m in messages]}


def poll_once(app_module, sqs, url, queue_arn, batch_size=1):
    """One poll of Lambda's SQS event source: receive, invoke, delete on
    success; on failure the messages go back to the queue (made visible at
    once here, where Lambda would wait out the visibility timeout)."""
    messages = receive(sqs, url, batch_size)
    if not messages:
        return None
    try:
        app_module.batch_work(sqs_event(messages, queue_arn), None)
    except Exception:
        for m in messages:
            sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"],
                                          VisibilityTimeout=0)
        return False
    for m in messages:
        sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return True


def drain(app_module, sqs, url, queue_arn, limit=10_000):
    """Poll until the queue is empty: ``(successes, failures)``."""
    ok = failed = 0
    for _ in range(limit):
        result = poll_once(app_module, sqs, url, queue_arn)
        if result is None:
            return ok, failed
        ok, failed = ok + bool(result), failed + (not result)
    raise AssertionError("queue not drained after %d polls" % limit)
