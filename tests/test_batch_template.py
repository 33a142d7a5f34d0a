"""The batch transform in the production template: a stage with
``BATCH_EVENTS=template``, packaged as ``make package`` packages it (the
merge template written by tools.ops.merge_template, then ``chalice package
--merge-template``), once, from the built project.

The template must pass ``cfn-lint`` and declare the bucket with its
notification of the splitter, the task queue with its redrive policy to a
dead-letter queue, the alarm on that queue, the worker's event source with
the stage's batch size and concurrency, each function's memory and timeout
from ``lambda_functions``, and per function a policy granting exactly what
it uses. Its queues and bucket are then created by moto's CloudFormation on
loopback and a job run through them. (Tiers: tests/conftest.py.)
"""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.packaging import ROOT, chalice_package, offline_env
from tools.ops import iam_eval, merge_template

STAGE = "prod"
APP = "sklearn-serverless"
BUCKET = "acme-batch-jobs"
QUEUE = "acme-batch-tasks"
REGION, ACCOUNT = "us-east-1", "123456789012"
SETTINGS = {"BATCH_EVENTS": "template", "BATCH_BUCKET": BUCKET, "BATCH_QUEUE": QUEUE,
            "BATCH_OUTPUT_PREFIX": "scored/", "BATCH_MAX_RECEIVE": "4",
            "BATCH_SQS_BATCH_SIZE": "2", "BATCH_MAX_CONCURRENCY": "7",
            "BATCH_SWEEP_MINUTES": "3"}
FUNCTIONS = {"batch_work": {"lambda_memory_size": 1536, "lambda_timeout": 300},
             "batch_split": {"lambda_memory_size": 256, "lambda_timeout": 30},
             "batch_dead_letters": {"lambda_memory_size": 256, "lambda_timeout": 60}}
IDS = {"batch_split": "BatchSplit", "batch_work": "BatchWork",
       "batch_dead_letters": "BatchDeadLetters"}


def batch_stage(project, **more):
    config_file = project / ".chalice" / "config.json"
    config = json.loads(config_file.read_text())
    config["stages"][STAGE]["environment_variables"].update(SETTINGS, **more)
    config["stages"][STAGE]["lambda_functions"] = FUNCTIONS
    config_file.write_text(json.dumps(config, indent=2))


def package_stage(built_project, root, **more):
    """The built project (its build reused) with the batch stage, packaged."""
    project = root / "project"
    shutil.copytree(built_project.path, project, symlinks=True,
                    ignore=shutil.ignore_patterns("deployed"))
    batch_stage(project, **more)
    merge = root / "merge-prod.json"
    proc = subprocess.run([sys.executable, "-m", "tools.ops.merge_template",
                           str(ROOT / "deploy" / "merge-prod.json"), str(merge),
                           "--project-dir", str(project), "--stage", STAGE],
                          cwd=ROOT, capture_output=True, text=True, env=offline_env())
    assert proc.returncode == 0, proc.stderr
    assert "batch transform" in proc.stdout
    return chalice_package(project, root / "sam", stage=STAGE, merge_template=merge)


@pytest.fixture(scope="module")
def out_dir(built_project, tmp_path_factory):
    return package_stage(built_project, tmp_path_factory.mktemp("batch-template"))


@pytest.fixture(scope="module")
def sam(out_dir):
    return json.loads((out_dir / "sam.json").read_text())


@pytest.fixture(scope="module")
def existing_out_dir(built_project, tmp_path_factory):
    """The same stage on a bucket that exists (BATCH_BUCKET_EXISTS)."""
    return package_stage(built_project, tmp_path_factory.mktemp("batch-template-existing"),
                         BATCH_BUCKET_EXISTS="true")


@pytest.fixture(scope="module")
def existing(existing_out_dir):
    return json.loads((existing_out_dir / "sam.json").read_text())


def _props(sam, rid):
    return sam["Resources"][rid]["Properties"]


def _of_type(sam, rtype):
    return {k: v for k, v in sam["Resources"].items() if v["Type"] == rtype}


NAMES = {"AWS::Partition": "aws", "AWS::Region": REGION, "AWS::AccountId": ACCOUNT,
         "BatchQueue.Arn": "arn:aws:sqs:%s:%s:%s" % (REGION, ACCOUNT, QUEUE),
         "BatchDeadLetterQueue.Arn": "arn:aws:sqs:%s:%s:%s-dlq" % (REGION, ACCOUNT, QUEUE),
         "BatchDeadLetterQueue.QueueName": QUEUE + "-dlq",
         "BatchSplit.Arn": "arn:aws:lambda:%s:%s:function:%s-prod-batch_split"
                           % (REGION, ACCOUNT, APP)}


def test_the_batch_templates_pass_cfn_lint(out_dir, existing_out_dir):
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    proc = subprocess.run([str(cfn_lint), str(out_dir / "sam.json"),
                           str(existing_out_dir / "sam.json")], capture_output=True,
                          text=True, env=offline_env(), timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_bucket_notifies_the_splitter_of_objects_under_the_input_prefix(sam):
    bucket = _props(sam, "BatchBucket")
    assert bucket["BucketName"] == BUCKET
    [notify] = bucket["NotificationConfiguration"]["LambdaConfigurations"]
    assert notify == {"Event": "s3:ObjectCreated:*",
                      "Filter": {"S3Key": {"Rules": [{"Name": "prefix", "Value": "batch/in/"}]}},
                      "Function": {"Fn::GetAtt": ["BatchSplit", "Arn"]}}
    # S3 checks that it may invoke the function when the notification is set
    assert sam["Resources"]["BatchBucket"]["DependsOn"] == ["BatchSplitInvokePermission"]
    permission = iam_eval.resolve(_props(sam, "BatchSplitInvokePermission"), NAMES)
    assert permission == {"FunctionName": NAMES["BatchSplit.Arn"],
                          "Action": "lambda:InvokeFunction", "Principal": "s3.amazonaws.com",
                          "SourceArn": "arn:aws:s3:::" + BUCKET, "SourceAccount": ACCOUNT}
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    # the splitter is no S3 event of Chalice's (it refuses to package one)
    assert "Events" not in _props(sam, "BatchSplit")


def test_an_existing_bucket_is_not_created_and_its_eventbridge_events_start_jobs(existing, sam):
    assert "BatchBucket" not in existing["Resources"]
    assert not _of_type(existing, "AWS::S3::Bucket")
    rule = _props(existing, "BatchSplitRule")
    assert rule["EventPattern"] == {
        "source": ["aws.s3"], "detail-type": ["Object Created"],
        "detail": {"bucket": {"name": [BUCKET]}, "object": {"key": [{"prefix": "batch/in/"}]}}}
    assert rule["Targets"] == [{"Id": "BatchSplit", "Arn": {"Fn::GetAtt": ["BatchSplit", "Arn"]}}]
    permission = _props(existing, "BatchSplitInvokePermission")
    assert (permission["Principal"], permission["SourceArn"]) == (
        "events.amazonaws.com", {"Fn::GetAtt": ["BatchSplitRule", "Arn"]})
    # the same prefixes of the same bucket, and nothing of the bucket itself
    for function in IDS:
        assert _policy(existing, function) == _policy(sam, function)
    for rid in ("BatchQueue", "BatchDeadLetterQueue", "BatchDeadLetterAlarm"):
        assert existing["Resources"][rid] == sam["Resources"][rid]


def test_the_task_queue_redrives_to_the_dead_letter_queue_which_alarms(sam):
    queue = _props(sam, "BatchQueue")
    assert queue["QueueName"] == QUEUE
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": ["BatchDeadLetterQueue", "Arn"]},
        "maxReceiveCount": 4}  # BATCH_MAX_RECEIVE
    assert queue["VisibilityTimeout"] == 6 * FUNCTIONS["batch_work"]["lambda_timeout"]
    assert _props(sam, "BatchDeadLetterQueue")["QueueName"] == QUEUE + "-dlq"
    [(alarm_id, alarm)] = [(k, v["Properties"]) for k, v in
                           _of_type(sam, "AWS::CloudWatch::Alarm").items()
                           if v["Properties"].get("Namespace") == "AWS/SQS"]
    assert (alarm["MetricName"], alarm["Statistic"], alarm["Threshold"],
            alarm["ComparisonOperator"]) == ("ApproximateNumberOfMessagesVisible", "Maximum", 0,
                                             "GreaterThanThreshold")
    assert alarm["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": ["BatchDeadLetterQueue", "QueueName"]}}]
    # a poison batch task is no reason to roll the API's deployment back
    canary = _props(sam, "APIHandler")["DeploymentPreference"]["Alarms"]
    assert {"Ref": alarm_id} not in canary and len(canary) == 4


def test_the_worker_consumes_the_queue_with_the_stages_batch_size_and_concurrency(sam):
    [(name, source)] = _props(sam, "BatchWork")["Events"].items()
    assert source["Type"] == "SQS"
    assert source["Properties"]["Queue"] == {"Fn::Sub": "${BatchQueue.Arn}"}
    assert source["Properties"]["BatchSize"] == 2
    assert source["Properties"]["ScalingConfig"] == {"MaximumConcurrency": 7}
    [(_, sweep)] = _props(sam, "BatchDeadLetters")["Events"].items()
    assert sweep == {"Type": "Schedule", "Properties": {"Schedule": "rate(3 minutes)"}}


def test_each_function_has_its_memory_timeout_name_and_log_group(sam):
    for function, settings in FUNCTIONS.items():
        props = _props(sam, IDS[function])
        assert (props["MemorySize"], props["Timeout"]) == (settings["lambda_memory_size"],
                                                           settings["lambda_timeout"])
        assert props["FunctionName"] == "%s-%s-%s" % (APP, STAGE, function)
        assert props["Handler"] == "app." + function
        assert props["Environment"]["Variables"]["BATCH_EVENTS"] == "template"
        group = sam["Resources"][IDS[function] + "LogGroup"]["Properties"]
        assert group["LogGroupName"] == "/aws/lambda/" + props["FunctionName"]
        assert IDS[function] + "LogGroup" in sam["Resources"][IDS[function]]["DependsOn"]
    # the API handler keeps its own settings
    assert (_props(sam, "APIHandler")["MemorySize"], _props(sam, "APIHandler")["Timeout"]) == \
        (512, 10)


def _policy(sam, function):
    role = sam["Resources"][IDS[function] + "Role"]["Properties"]
    [policy] = role["Policies"]
    return iam_eval.resolve(policy["PolicyDocument"], NAMES)


def test_each_functions_policy_grants_exactly_its_buckets_prefixes_and_queue(sam):
    s3 = "arn:aws:s3:::" + BUCKET
    inputs, outputs, work = s3 + "/batch/in/*", s3 + "/scored/*", s3 + "/batch/work/*"
    queue, dlq = NAMES["BatchQueue.Arn"], NAMES["BatchDeadLetterQueue.Arn"]

    def logs(function):
        stream = "arn:aws:logs:%s:%s:log-group:/aws/lambda/%s-%s-%s:*" % (
            REGION, ACCOUNT, APP, STAGE, function)
        return {("logs:CreateLogStream", stream), ("logs:PutLogEvents", stream),
                ("s3:ListBucket", s3)}

    assert iam_eval.grants(_policy(sam, "batch_split")) == logs("batch_split") | {
        ("s3:GetObject", inputs), ("s3:GetObject", outputs), ("s3:PutObject", outputs),
        ("sqs:GetQueueUrl", queue), ("sqs:SendMessage", queue)}
    assert iam_eval.grants(_policy(sam, "batch_work")) == logs("batch_work") | {
        ("s3:GetObject", inputs),
        ("s3:GetObject", outputs), ("s3:PutObject", outputs),
        ("s3:AbortMultipartUpload", outputs),
        ("s3:GetObject", work), ("s3:PutObject", work), ("s3:DeleteObject", work),
        ("sqs:ReceiveMessage", queue), ("sqs:DeleteMessage", queue),
        ("sqs:GetQueueAttributes", queue)}
    assert iam_eval.grants(_policy(sam, "batch_dead_letters")) == logs("batch_dead_letters") | {
        ("s3:GetObject", outputs), ("s3:PutObject", outputs),
        ("sqs:GetQueueUrl", dlq), ("sqs:ReceiveMessage", dlq),
        ("sqs:ChangeMessageVisibility", dlq)}


@pytest.mark.parametrize("function, action, resource, allowed", [
    ("batch_split", "s3:GetObject", "arn:aws:s3:::%s/batch/in/customers.csv" % BUCKET, True),
    ("batch_split", "s3:PutObject", "arn:aws:s3:::%s/batch/in/customers.csv" % BUCKET, False),
    ("batch_split", "s3:GetObject", "arn:aws:s3:::%s/batch/inner.csv" % BUCKET, False),
    ("batch_split", "s3:GetObject", "arn:aws:s3:::another-bucket/batch/in/x.csv", False),
    ("batch_split", "sqs:SendMessage", NAMES["BatchDeadLetterQueue.Arn"], False),
    ("batch_work", "s3:PutObject", "arn:aws:s3:::%s/scored/customers.csv.out" % BUCKET, True),
    ("batch_work", "s3:DeleteObject", "arn:aws:s3:::%s/scored/customers.csv.out" % BUCKET,
     False),
    ("batch_work", "s3:DeleteObject", "arn:aws:s3:::%s/batch/in/customers.csv" % BUCKET, False),
    ("batch_work", "s3:DeleteObject", "arn:aws:s3:::%s/batch/work/j/part-00001.out" % BUCKET,
     True),
    ("batch_work", "sqs:SendMessage", NAMES["BatchQueue.Arn"], False),
    ("batch_work", "sqs:DeleteMessage", NAMES["BatchQueue.Arn"], True),
    ("batch_dead_letters", "sqs:DeleteMessage", NAMES["BatchDeadLetterQueue.Arn"], False),
    ("batch_dead_letters", "s3:GetObject", "arn:aws:s3:::%s/batch/in/x.csv" % BUCKET, False),
    ("batch_work", "s3:GetObject", "arn:aws:s3:::sklearn-models/model.joblib", False),
])
def test_what_the_policies_allow_and_refuse(sam, function, action, resource, allowed):
    assert iam_eval.allows(_policy(sam, function), action, resource) is allowed


def test_the_api_handlers_grant_is_still_only_its_committed_policy(sam, built_project):
    from tools.ops import model_policy
    committed = json.loads((built_project.path / ".chalice" / "policy-prod.json").read_text())
    [policy] = _props(sam, "ApiHandlerRole")["Policies"]
    assert policy["PolicyDocument"] == committed
    card = json.loads((built_project.path / model_policy.stage_card(built_project.path, "prod"))
                      .read_text())
    model_policy.check(policy["PolicyDocument"], card)  # the build's check still holds


def test_batch_events_off_leaves_the_merge_template_as_it_was(tmp_path):
    """The committed stages declare no batch: ``make package``'s merge
    template is the routes' and deploy/merge-prod.json's, nothing more."""
    out = tmp_path / "merge.json"
    assert merge_template.main([str(ROOT / "deploy" / "merge-prod.json"), str(out),
                                "--project-dir", str(ROOT)]) == 0
    base = json.loads((ROOT / "deploy" / "merge-prod.json").read_text())
    assert json.loads(out.read_text()) == merge_template.merged(base,
                                                                merge_template.app_routes())


# --- the template's queues and bucket, created by moto's CloudFormation -----


def _reset(aws):
    """moto's state lives in the process, across emulators: start empty."""
    import urllib.request
    urllib.request.urlopen(urllib.request.Request(aws.endpoint_url + "/moto-api/reset",
                                                  method="POST"), timeout=10).read()


def _emulated_part(sam):
    """The template's queues and bucket as a stack moto can create: moto's
    CloudFormation has no SAM transform, no Lambda code to run, and ignores
    an alarm's and a bucket notification's resource types and properties,
    so those are left out (and said so in docs/batch.md)."""
    resources = {rid: json.loads(json.dumps(sam["Resources"][rid]))
                 for rid in ("BatchQueue", "BatchDeadLetterQueue", "BatchBucket")}
    bucket = resources["BatchBucket"]
    del bucket["DependsOn"]
    del bucket["Properties"]["NotificationConfiguration"]
    return {"AWSTemplateFormatVersion": "2010-09-09", "Resources": resources}


def test_an_existing_buckets_events_matched_by_the_templates_rule_run_a_job(existing):
    """The rule's pattern, given to moto's EventBridge with a queue standing
    in for the splitter's function, picks the input prefix's objects out of
    the bucket's events; the splitter takes the event as EventBridge sends it."""
    from tools.fixtures import batch_lambda
    from tools.fixtures.aws_emulator import running_emulator

    with running_emulator() as aws:
        _reset(aws)
        events, sqs, s3 = aws.client("events"), aws.client("sqs"), aws.client("s3")
        urls = batch_lambda.create_stage_resources(s3, sqs, BUCKET, QUEUE, max_receive=4)
        s3.put_bucket_notification_configuration(
            Bucket=BUCKET, NotificationConfiguration={"EventBridgeConfiguration": {}})
        inbox = sqs.create_queue(QueueName="splitter-stand-in")["QueueUrl"]
        rule = _props(existing, "BatchSplitRule")
        events.put_rule(Name="batch-split", EventPattern=json.dumps(rule["EventPattern"]),
                        State=rule["State"])
        events.put_targets(Rule="batch-split", Targets=[{
            "Id": "BatchSplit", "Arn": "arn:aws:sqs:%s:%s:splitter-stand-in" % (REGION,
                                                                              ACCOUNT)}])
        with batch_lambda.batch_app(aws.endpoint_url, **SETTINGS, BATCH_BUCKET_EXISTS="true",
                                    BATCH_RANGE_MB="0.0005") as app:
            body = "".join("%.1f,3.0,%.1f,1.0\n" % (4.5 + i % 30 / 10, 1 + i % 50 / 10)
                           for i in range(90)).encode()
            s3.put_object(Bucket=BUCKET, Key="batch/in/nightly run.csv", Body=body)
            s3.put_object(Bucket=BUCKET, Key="elsewhere/not-a-job.csv", Body=body)
            s3.put_object(Bucket=BUCKET, Key="batch/inner.csv", Body=body)
            delivered = batch_lambda.receive(sqs, inbox)
            assert len(delivered) == 1
            event = json.loads(delivered[0]["Body"])
            assert event["detail-type"] == "Object Created"
            started = app.batch_split(event, None)
            assert len(started) == 1
            ok, failed = batch_lambda.drain(app, sqs, urls["tasks"], NAMES["BatchQueue.Arn"])
            manifest = json.loads(s3.get_object(Bucket=BUCKET,
                                                Key="scored/nightly run.csv.manifest.json")
                                  ["Body"].read())
        assert (failed, ok) == (0, manifest["parts_total"])
        assert manifest["status"] == "complete" and manifest["rows_scored"] == 90
        assert manifest["input"] == "s3://%s/batch/in/nightly run.csv" % BUCKET


def test_the_templates_queues_run_a_job_whose_poison_range_fails_it(sam):
    from unittest import mock

    from tools.fixtures import batch_lambda
    from tools.fixtures.aws_emulator import running_emulator

    with running_emulator() as aws:
        _reset(aws)
        cfn, sqs, s3 = aws.client("cloudformation"), aws.client("sqs"), aws.client("s3")
        cfn.create_stack(StackName="batch", TemplateBody=json.dumps(_emulated_part(sam)))
        assert cfn.describe_stacks(StackName="batch")["Stacks"][0]["StackStatus"] == \
            "CREATE_COMPLETE"
        url = sqs.get_queue_url(QueueName=QUEUE)["QueueUrl"]
        dlq = sqs.get_queue_url(QueueName=QUEUE + "-dlq")["QueueUrl"]
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert json.loads(attributes["RedrivePolicy"]) == {
            "deadLetterTargetArn": NAMES["BatchDeadLetterQueue.Arn"], "maxReceiveCount": 4}
        s3.head_bucket(Bucket=BUCKET)

        with batch_lambda.batch_app(aws.endpoint_url, **SETTINGS,
                                    BATCH_RANGE_MB="0.0005") as app:
            body = "".join("%.1f,3.0,%.1f,1.0\n" % (4.5 + i % 30 / 10, 1 + i % 50 / 10)
                           for i in range(120)).encode()
            s3.put_object(Bucket=BUCKET, Key="batch/in/nightly.csv", Body=body)
            head = s3.head_object(Bucket=BUCKET, Key="batch/in/nightly.csv")
            # the event the template's notification sends the splitter
            app.batch_split({"Records": [{
                "eventName": "ObjectCreated:Put", "s3": {
                    "bucket": {"name": BUCKET},
                    "object": {"key": "batch/in/nightly.csv", "eTag": head["ETag"].strip('"'),
                               "sequencer": "0A1B2C3D4E5F678901"}}}]}, None)
            real_get = app.BATCH_JOBS.clients.s3.get_object

            def poisoned(**kwargs):  # the first range's bytes cannot be read
                if kwargs.get("Range", "").startswith("bytes=0-"):
                    raise ConnectionError("the range's read was reset")
                return real_get(**kwargs)

            with mock.patch.object(app.BATCH_JOBS.clients.s3, "get_object", poisoned):
                ok, failed = batch_lambda.drain(app, sqs, url, NAMES["BatchQueue.Arn"])
            assert failed == 4 and ok > 0  # BATCH_MAX_RECEIVE deliveries, then the DLQ
            app.batch_dead_letters({"detail-type": "Scheduled Event", "source": "aws.events",
                                    "detail": {}, "resources": [], "time": "2026-01-01T00:00:00Z",
                                    "region": REGION, "account": ACCOUNT, "id": "1",
                                    "version": "0"}, None)
            manifest = json.loads(s3.get_object(Bucket=BUCKET,
                                                Key="scored/nightly.csv.manifest.json")
                                  ["Body"].read())
        assert manifest["status"] == "failed"
        assert manifest["reason"].startswith("range 1 of %d (bytes 0-" % manifest["parts_total"])
        assert manifest["reason"].endswith("ConnectionError: the range's read was reset")
        assert [r["part"] for r in manifest["failed_ranges"]] == [1]
        assert len(batch_lambda.receive(sqs, dlq)) == 1
