"""tools/ops/model_policy reads statements as IAM evaluates them: what it cannot
prove harmless is refused; ``publish --upload`` refuses wildcard URIs; the
ARN partition follows the region."""
import json

import pytest

from publisher.publish import PublishError, publish
from tools.ops import model_policy

BUCKET, KEY = "models-bucket", "models/iris.joblib"
URI = "s3://%s/%s" % (BUCKET, KEY)
CARD = {"artifact": URI}
GRANT = {"Sid": "ReadModelArtifact", "Effect": "Allow", "Action": "s3:GetObject",
         "Resource": "arn:aws:s3:::%s/%s" % (BUCKET, KEY)}
LOGS = {"Sid": "WriteOwnLogs", "Effect": "Allow",
        "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
        "Resource": "arn:*:logs:*:*:log-group:/aws/lambda/sklearn-serverless-prod:*"}


def policy(*statements):
    return {"Version": "2012-10-17", "Statement": list(statements)}


def check(*statements, card=CARD, region="us-east-1"):
    model_policy.check(policy(*statements), card, region)


def test_the_exact_grant_beside_the_logs_statements_passes():
    check(LOGS, GRANT)
    # IAM action names are case-insensitive; a one-item list is the same grant.
    check(LOGS, dict(GRANT, Action=["S3:getobject"], Resource=[GRANT["Resource"]]))


@pytest.mark.parametrize("name, extra, says", [
    ("the reported NotAction + NotResource bypass",
     {"Effect": "Allow", "NotAction": ["logs:*"], "NotResource": ["arn:aws:logs:*:*:*"]},
     "NotAction allows every action"),
    ("NotResource with the exact action",
     {"Effect": "Allow", "Action": "s3:GetObject", "NotResource": "arn:aws:s3:::other/*"},
     "NotResource allows every resource"),
    ("a wildcard action", {"Effect": "Allow", "Action": "s3:Get*",
                           "Resource": GRANT["Resource"]}, "matches actions beyond"),
    ("a single-character wildcard", {"Effect": "Allow", "Action": "s?:GetObject",
                                     "Resource": "*"}, "matches actions beyond"),
    ("every action", {"Effect": "Allow", "Action": "*", "Resource": "*"},
     "matches actions beyond"),
    ("the grant on the whole bucket", dict(GRANT, Resource="arn:aws:s3:::%s/*" % BUCKET),
     "not one the function needs"),
    ("the grant with a condition", dict(GRANT, Condition={"Bool": {"aws:SecureTransport":
                                                                   "true"}}),
     "not one the function needs"),
    ("another service", {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"},
     "not one the function needs"),
    ("an effect IAM does not know", {"Effect": "allow", "Action": "s3:GetObject",
                                     "Resource": "*"}, "neither Allow nor Deny"),
    ("a principal", dict(GRANT, Principal="*"), "Principal"),
    ("an unknown key", dict(LOGS, Actions="s3:*"), "unknown statement keys"),
])
def test_statements_that_cannot_be_proven_harmless_are_refused(name, extra, says):
    with pytest.raises(model_policy.PolicyError, match="grants beyond") as info:
        check(LOGS, GRANT, extra)
    assert says in str(info.value), name


def test_a_deny_only_takes_away():
    check(LOGS, GRANT, {"Effect": "Deny", "NotAction": "s3:GetObject", "Resource": "*"})


def test_the_grant_is_still_required():
    with pytest.raises(model_policy.PolicyError, match="does not grant s3:GetObject"):
        check(LOGS)
    with pytest.raises(model_policy.PolicyError, match="ships in the package"):
        check(LOGS, GRANT, card={"artifact": "model.joblib"})


@pytest.mark.parametrize("region, partition", [
    ("us-east-1", "aws"), ("eu-west-3", "aws"), ("cn-north-1", "aws-cn"),
    ("cn-northwest-1", "aws-cn"), ("us-gov-west-1", "aws-us-gov")])
def test_the_partition_comes_from_the_region(region, partition):
    arn = "arn:%s:s3:::%s/%s" % (partition, BUCKET, KEY)
    assert model_policy.object_arn(URI, region) == arn
    assert model_policy.updated(policy(LOGS), CARD, region)["Statement"][-1]["Resource"] == arn
    check(LOGS, dict(GRANT, Resource=arn), region=region)
    if partition != "aws":
        with pytest.raises(model_policy.PolicyError):
            check(LOGS, GRANT, region=region)


def test_the_app_names_the_same_arn_in_its_region(monkeypatch):
    from chalicelib.runtimes import s3_artifact
    monkeypatch.setenv("AWS_REGION", "cn-north-1")
    assert s3_artifact.object_arn(URI) == "arn:aws-cn:s3:::%s/%s" % (BUCKET, KEY)


@pytest.mark.parametrize("uri", ["s3://%s/models/*" % BUCKET, "s3://%s/models/iris?.joblib"
                                 % BUCKET])
def test_publish_refuses_a_wildcard_upload_uri_before_anything_is_sent(tmp_path, uri):
    with pytest.raises(PublishError, match="wildcard character"):
        publish(str(tmp_path / "absent.joblib"), name="x", version="1",
                out_dir=str(tmp_path / "out"), upload=uri)
    assert not (tmp_path / "out").exists()


def test_the_committed_stage_policies_pass():
    for stage in ("dev", "prod"):
        with open(model_policy.policy_path(".", stage)) as f:
            model_policy.check(json.load(f), {"artifact": "model.joblib"}, "us-east-1")
