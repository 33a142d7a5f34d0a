"""The batch transform's resources in the production template.

With ``BATCH_EVENTS=template`` in a stage, ``chalice package`` declares the
batch functions (``batch_split``, a plain function; ``batch_work``, an SQS
consumer with the stage's batch size and maximum concurrency;
``batch_dead_letters``, the dead-letter sweep on a schedule) and
:func:`resources` adds, through the merge template, what Chalice cannot
declare: the bucket ``BATCH_BUCKET`` with its notification of the splitter
(CloudFormation can only set the notifications of a bucket it creates), or
for an existing bucket an EventBridge rule on its new objects, the
task queue with its redrive policy (``maxReceiveCount`` =
``BATCH_MAX_RECEIVE``) to a dead-letter queue, an alarm on that queue's
visible messages, the queues wired to the functions by their ARNs (not by
name, so CloudFormation creates a queue before its event source), fixed
function names with log groups, and one role policy per function granting
exactly the bucket, prefixes and queue it uses (:func:`policies`).

Memory and timeout are Chalice's: ``lambda_functions.<name>`` in
``.chalice/config.json``; the task queue's visibility timeout is six times
the worker's timeout (AWS's advice for an SQS event source).
"""
import json
import os

from chalicelib.http.config import BatchConfig

SPLIT, WORK, SWEEP = "batch_split", "batch_work", "batch_dead_letters"
# Chalice's logical ids of the functions (CamelCase of their names).
LOGICAL_IDS = {SPLIT: "BatchSplit", WORK: "BatchWork", SWEEP: "BatchDeadLetters"}
CHALICE_DEFAULT_TIMEOUT = 60
MAX_VISIBILITY_TIMEOUT = 43200  # SQS's ceiling, 12 hours
LOG_RETENTION_DAYS = 30  # as the API handler's (deploy/merge-prod.json)
DLQ_RETENTION_S = 14 * 24 * 3600  # SQS's longest: time for an operator to look


def read_config(project_dir):
    with open(os.path.join(project_dir, ".chalice", "config.json")) as f:
        return json.load(f)


def stage_environment(config, stage):
    """The environment Chalice gives the stage's functions."""
    return {**config.get("environment_variables", {}),
            **config.get("stages", {}).get(stage, {}).get("environment_variables", {})}


def function_setting(config, stage, function, key, default=None):
    """A function's setting as Chalice resolves it: the stage's
    ``lambda_functions.<function>``, the top-level one, the stage's, the
    top-level value."""
    stage_cfg = config.get("stages", {}).get(stage, {})
    for scope in (stage_cfg.get("lambda_functions", {}).get(function, {}),
                  config.get("lambda_functions", {}).get(function, {}), stage_cfg, config):
        if key in scope:
            return scope[key]
    return default


def function_name(config, stage, function):
    return "%s-%s-%s" % (config["app_name"], stage, function)


def _sub(text):
    return {"Fn::Sub": text}


def _s3(bucket, prefix=None):
    return _sub("arn:${AWS::Partition}:s3:::%s" % bucket + ("/%s*" % prefix if prefix else ""))


def _log_stream_arn(name):
    return _sub("arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:"
                "/aws/lambda/%s:*" % name)


def policies(batch, names):
    """``{function: policy document}``: each batch function's whole grant.

    ``s3:ListBucket`` on the bucket is there because without it S3 answers
    a missing manifest with 403, not 404, and a new job has none yet. The
    multipart calls (create, upload, upload-copy, complete) are
    ``s3:PutObject`` on the target and ``s3:GetObject`` on a copied part."""
    bucket = batch.bucket
    task_queue = {"Fn::GetAtt": ["BatchQueue", "Arn"]}
    dead_letters = {"Fn::GetAtt": ["BatchDeadLetterQueue", "Arn"]}

    def doc(function, *statements):
        logs = {"Sid": "WriteOwnLogs", "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": _log_stream_arn(names[function])}
        listing = {"Sid": "ListTheBatchBucket", "Effect": "Allow", "Action": "s3:ListBucket",
                   "Resource": _s3(bucket)}
        return {"Version": "2012-10-17", "Statement": [logs, listing, *statements]}

    read_input = {"Sid": "ReadInputs", "Effect": "Allow", "Action": "s3:GetObject",
                  "Resource": _s3(bucket, batch.input_prefix)}
    return {
        SPLIT: doc(SPLIT, read_input,
                   {"Sid": "WriteManifests", "Effect": "Allow",
                    "Action": ["s3:GetObject", "s3:PutObject"],
                    "Resource": _s3(bucket, batch.output_prefix)},
                   {"Sid": "SendRangeTasks", "Effect": "Allow",
                    "Action": ["sqs:GetQueueUrl", "sqs:SendMessage"], "Resource": task_queue}),
        WORK: doc(WORK, read_input,
                  {"Sid": "WriteOutputs", "Effect": "Allow",
                   "Action": ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"],
                   "Resource": _s3(bucket, batch.output_prefix)},
                  {"Sid": "WriteParts", "Effect": "Allow",
                   "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                   "Resource": _s3(bucket, batch.work_prefix)},
                  {"Sid": "ConsumeRangeTasks", "Effect": "Allow",
                   "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage",
                              "sqs:GetQueueAttributes"], "Resource": task_queue}),
        SWEEP: doc(SWEEP,
                   {"Sid": "FailStuckJobs", "Effect": "Allow",
                    "Action": ["s3:GetObject", "s3:PutObject"],
                    "Resource": _s3(bucket, batch.output_prefix)},
                   {"Sid": "ReadDeadLetters", "Effect": "Allow",
                    "Action": ["sqs:GetQueueUrl", "sqs:ReceiveMessage",
                               "sqs:ChangeMessageVisibility"], "Resource": dead_letters}),
    }


def _bucket_events(batch, split_arn):
    """How the splitter hears of new inputs: the notification of the bucket
    the template creates, or, for a bucket that exists
    (``BATCH_BUCKET_EXISTS``), an EventBridge rule on its ``Object Created``
    events (CloudFormation cannot set an existing bucket's notifications;
    the bucket's owner turns its EventBridge events on, once)."""
    if batch.bucket_exists:
        return {
            "BatchSplitRule": {
                "Type": "AWS::Events::Rule",
                "Properties": {
                    "Description": "Objects created under the batch input prefix start jobs",
                    "State": "ENABLED",
                    "EventPattern": {
                        "source": ["aws.s3"], "detail-type": ["Object Created"],
                        "detail": {"bucket": {"name": [batch.bucket]},
                                   "object": {"key": [{"prefix": batch.input_prefix}]}}},
                    "Targets": [{"Id": "BatchSplit", "Arn": split_arn}]},
            },
            "BatchSplitInvokePermission": {
                "Type": "AWS::Lambda::Permission",
                "Properties": {
                    "FunctionName": split_arn, "Action": "lambda:InvokeFunction",
                    "Principal": "events.amazonaws.com",
                    "SourceArn": {"Fn::GetAtt": ["BatchSplitRule", "Arn"]}},
            },
        }
    return {
        "BatchBucket": {
            "Type": "AWS::S3::Bucket",
            # A bucket of users' files outlives the stack.
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
            "DependsOn": ["BatchSplitInvokePermission"],
            "Properties": {
                "BucketName": batch.bucket,
                "PublicAccessBlockConfiguration": {
                    "BlockPublicAcls": True, "BlockPublicPolicy": True,
                    "IgnorePublicAcls": True, "RestrictPublicBuckets": True},
                "BucketEncryption": {"ServerSideEncryptionConfiguration": [
                    {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]},
                "LifecycleConfiguration": {"Rules": [{
                    "Id": "AbortAbandonedAssemblies", "Status": "Enabled",
                    "Prefix": batch.output_prefix,
                    "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}}]},
                "NotificationConfiguration": {"LambdaConfigurations": [{
                    "Event": "s3:ObjectCreated:*",
                    "Filter": {"S3Key": {"Rules": [{"Name": "prefix",
                                                    "Value": batch.input_prefix}]}},
                    "Function": split_arn}]},
            },
        },
        "BatchSplitInvokePermission": {
            "Type": "AWS::Lambda::Permission",
            "Properties": {
                "FunctionName": split_arn, "Action": "lambda:InvokeFunction",
                "Principal": "s3.amazonaws.com",
                "SourceArn": _s3(batch.bucket),
                "SourceAccount": {"Ref": "AWS::AccountId"}},
        },
    }


def resources(config, stage):
    """The merge template's batch part for ``stage``: ``{"Resources": ...,
    "Outputs": ...}``, or None when the stage's ``BATCH_EVENTS`` is not
    ``template``."""
    batch = BatchConfig.from_env(stage_environment(config, stage))
    if batch.events != "template":
        return None
    names = {fn: function_name(config, stage, fn) for fn in LOGICAL_IDS}
    work_timeout = function_setting(config, stage, WORK, "lambda_timeout",
                                    CHALICE_DEFAULT_TIMEOUT)
    split_arn = {"Fn::GetAtt": [LOGICAL_IDS[SPLIT], "Arn"]}
    found = _bucket_events(batch, split_arn)
    found.update({
        "BatchQueue": {
            "Type": "AWS::SQS::Queue",
            "Properties": {
                "QueueName": batch.queue,
                "VisibilityTimeout": min(MAX_VISIBILITY_TIMEOUT, 6 * int(work_timeout)),
                "SqsManagedSseEnabled": True,
                "RedrivePolicy": {
                    "deadLetterTargetArn": {"Fn::GetAtt": ["BatchDeadLetterQueue", "Arn"]},
                    "maxReceiveCount": batch.max_receive}},
        },
        "BatchDeadLetterQueue": {
            "Type": "AWS::SQS::Queue",
            "Properties": {"QueueName": batch.dead_letter_queue,
                           "MessageRetentionPeriod": DLQ_RETENTION_S,
                           "SqsManagedSseEnabled": True},
        },
        "BatchDeadLetterAlarm": {
            "Type": "AWS::CloudWatch::Alarm",
            "Properties": {
                "AlarmDescription": "A batch range task failed every delivery and waits in the "
                                    "dead-letter queue (its job is marked failed by the sweep)",
                "Namespace": "AWS/SQS", "MetricName": "ApproximateNumberOfMessagesVisible",
                "Dimensions": [{"Name": "QueueName",
                                "Value": {"Fn::GetAtt": ["BatchDeadLetterQueue", "QueueName"]}}],
                "Statistic": "Maximum", "Period": 60, "EvaluationPeriods": 1,
                "Threshold": 0, "ComparisonOperator": "GreaterThanThreshold",
                "TreatMissingData": "notBreaching"},
        },
        # Chalice writes the queue's ARN from its name as an Fn::Sub; the
        # merge replaces that string (a dict would be merged key by key) with
        # the queue's own, so the queue exists before its event source.
        LOGICAL_IDS[WORK]: {"Properties": {"Events": {
            LOGICAL_IDS[WORK] + "SqsEventSource": {"Properties": {
                "Queue": {"Fn::Sub": "${BatchQueue.Arn}"}}}}}},
    })
    for fn, policy in policies(batch, names).items():
        logical = LOGICAL_IDS[fn]
        found[logical + "LogGroup"] = {
            "Type": "AWS::Logs::LogGroup",
            "Properties": {"LogGroupName": "/aws/lambda/" + names[fn],
                           "RetentionInDays": LOG_RETENTION_DAYS}}
        function = found.setdefault(logical, {})
        function["DependsOn"] = [logical + "LogGroup"]
        function.setdefault("Properties", {})["FunctionName"] = names[fn]
        found[logical + "Role"] = {"Properties": {"Policies": [
            {"PolicyName": logical + "RolePolicy", "PolicyDocument": policy}]}}
    outputs = {
        "BatchBucketName": {"Value": batch.bucket if batch.bucket_exists
                            else {"Ref": "BatchBucket"}},
        "BatchQueueUrl": {"Value": {"Ref": "BatchQueue"}},
        "BatchDeadLetterQueueUrl": {"Value": {"Ref": "BatchDeadLetterQueue"}},
    }
    return {"Resources": found, "Outputs": outputs}
