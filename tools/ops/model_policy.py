"""The stage policy's read grant on a model artifact kept in S3.

    .venv/bin/python -m tools.ops.model_policy [--project-dir DIR] [--stage prod] [--check]

The function's IAM policy is a committed file (``.chalice/policy-<stage>.json``,
``autogen_policy`` off). A model published with ``--upload s3://BUCKET/KEY``
needs exactly one more grant: ``s3:GetObject`` on ``arn:PARTITION:s3:::BUCKET/KEY``
(the partition from the region: ``aws-cn`` for ``cn-*``, ``aws-us-gov`` for
``us-gov-*``, else ``aws``).
This tool writes that statement (Sid :data:`SID`) from the card that ships
(the stage's ``MODEL_DIR``/model.json, default ``model/iris``), replacing an earlier one, or removes it when
the model is local again; every other statement is left as it is.
``--check`` only says whether the policy is right.

``tools.build.package`` runs :func:`check` and refuses to build when the
policy lacks the grant or allows anything it cannot prove harmless: the
package and its role are then never out of step. Statements are read as
IAM evaluates them: an ``Allow`` with ``NotAction`` or ``NotResource`` allows
everything it does not name, an action pattern is a case-insensitive
wildcard, and a condition can only narrow an ``Allow``. So an ``Allow`` passes
only if it is the model's exact grant or names, without wildcards, only
actions of :data:`HARMLESS_ACTIONS` (writing the function's own logs and
traces); a ``Deny`` only takes away, and always passes. Standard library
only (the build imports this).
"""
import argparse
import json
import os
import sys

from tools.ops import iam_eval

SID = "ReadModelArtifact"


class PolicyError(iam_eval.PolicyError):
    """The stage policy does not grant what the model needs, or more."""


# Actions the function may be allowed besides the model's grant: they
# write its logs, traces and metrics and read nothing.
HARMLESS_ACTIONS = frozenset({
    "logs:createloggroup", "logs:createlogstream", "logs:putlogevents",
    "xray:puttracesegments", "xray:puttelemetryrecords", "cloudwatch:putmetricdata"})
_STATEMENT_KEYS = {"Sid", "Effect", "Action", "NotAction", "Resource", "NotResource",
                   "Condition", "Principal", "NotPrincipal"}


def partition(region):
    """The ARN partition of an AWS region."""
    region = (region or "").lower()
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def default_region():
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


def object_arn(uri, region=None):
    """``arn:PARTITION:s3:::bucket/key`` for ``s3://bucket/key`` (no
    wildcard: a ``*`` or ``?`` in the key would widen the grant, so it is
    refused)."""
    if not (isinstance(uri, str) and uri.startswith("s3://") and "/" in uri[5:]):
        raise PolicyError("%r is not an s3://bucket/key URI" % (uri,))
    bucket, key = uri[5:].split("/", 1)
    if not bucket or not key or "*" in uri or "?" in uri:
        raise PolicyError("%r cannot be granted exactly (empty bucket or key, or a wildcard)"
                          % uri)
    return "arn:%s:s3:::%s/%s" % (partition(region or default_region()), bucket, key)


def statement(uri, region=None):
    return {"Sid": SID, "Effect": "Allow", "Action": "s3:GetObject",
            "Resource": object_arn(uri, region)}


def remote_uri(card):
    artifact = card.get("artifact") if isinstance(card, dict) else None
    return artifact if isinstance(artifact, str) and "://" in artifact else None


def policy_path(project_dir, stage):
    with open(os.path.join(project_dir, ".chalice", "config.json")) as f:
        config = json.load(f)
    stage_cfg = config.get("stages", {}).get(stage, {})
    if stage_cfg.get("autogen_policy", config.get("autogen_policy", True)):
        raise PolicyError("stage %s generates its policy (autogen_policy); this project "
                          "commits it (.chalice/policy-%s.json)" % (stage, stage))
    name = stage_cfg.get("iam_policy_file", config.get("iam_policy_file"))
    if not name:
        raise PolicyError("stage %s names no iam_policy_file" % stage)
    return os.path.join(project_dir, ".chalice", name)


def _is_exact_grant(st, wanted):
    """Whether ``st`` is the model's grant, however spelled (a one-item
    list, the action's case), with nothing that could widen or void it."""
    if wanted is None or set(st) - {"Sid", "Effect", "Action", "Resource"}:
        return False
    actions, resources = iam_eval.listed(st.get("Action")), iam_eval.listed(st.get("Resource"))
    return (st.get("Effect") == "Allow" and actions is not None and resources is not None
            and [a.lower() for a in actions if isinstance(a, str)] == ["s3:getobject"]
            and resources == [wanted["Resource"]])


def why_unsafe(st, wanted):
    """None when statement ``st`` is provably harmless (or the model's exact
    grant), else the reason it is refused."""
    unknown = set(st) - _STATEMENT_KEYS
    if unknown:
        return "unknown statement keys %s" % sorted(unknown)
    if "Principal" in st or "NotPrincipal" in st:
        return "a Principal in an identity policy"
    effect = st.get("Effect")
    if effect == "Deny":
        return None  # a Deny only takes away
    if effect != "Allow":
        return "Effect %r is neither Allow nor Deny" % (effect,)
    if "NotAction" in st:
        return "an Allow with NotAction allows every action it does not name"
    if "NotResource" in st:
        return "an Allow with NotResource allows every resource it does not name"
    if _is_exact_grant(st, wanted):
        return None
    actions, resources = iam_eval.listed(st.get("Action")), iam_eval.listed(st.get("Resource"))
    if not actions or not resources or not all(isinstance(a, str) for a in actions) \
            or not all(isinstance(r, str) for r in resources):
        return "Action and Resource must be strings or lists of strings"
    for action in actions:
        if "*" in action or "?" in action:
            return "the action pattern %r matches actions beyond the model's grant" % action
        if action.lower() not in HARMLESS_ACTIONS:
            return "the action %r is not one the function needs" % action
    return None


def check(policy, card, region=None):
    """Raise PolicyError unless ``policy`` grants exactly what ``card`` needs
    (s3:GetObject on its artifact's object, or no S3 for a local one) and
    every other statement is provably harmless (:func:`why_unsafe`)."""
    uri = remote_uri(card)
    wanted = statement(uri, region) if uri else None
    try:
        statements = iam_eval.statements(policy)
    except iam_eval.PolicyError as exc:
        raise PolicyError("the stage policy: %s" % exc) from None
    refused = [(st, why) for st in statements for why in [why_unsafe(st, wanted)] if why]
    if refused:
        raise PolicyError(
            "the stage policy grants beyond the model artifact%s: %s; run "
            "`python -m tools.ops.model_policy` to leave only the model's grant"
            % (" (" + uri + ")" if uri else " (the model ships in the package)",
               "; ".join("%s (%s)" % (json.dumps(st), why) for st, why in refused)))
    if wanted and not (any(_is_exact_grant(st, wanted) for st in statements)
                       and _evaluates_to_the_grant(policy, wanted["Resource"])):
        raise PolicyError(
            "the model artifact is %s but the stage policy does not grant s3:GetObject on "
            "%s; run `python -m tools.ops.model_policy` (it adds %s)"
            % (uri, wanted["Resource"], json.dumps(wanted)))


def _evaluates_to_the_grant(policy, arn):
    """What IAM would decide (:mod:`tools.ops.iam_eval`, conditions aside):
    the artifact is readable, its neighbours in the bucket are not."""
    unconditional = {"Statement": [st for st in iam_eval.statements(policy)
                                   if "Condition" not in st]}
    return (iam_eval.allows(unconditional, "s3:GetObject", arn)
            and not iam_eval.allows(unconditional, "s3:GetObject", arn + ".other"))


def updated(policy, card, region=None):
    """``policy`` with the model's grant (Sid :data:`SID`) set or removed."""
    statements = policy.get("Statement", [])
    statements = [statements] if isinstance(statements, dict) else list(statements)
    statements = [st for st in statements if st.get("Sid") != SID]
    uri = remote_uri(card)
    if uri:
        statements.append(statement(uri, region))
    return dict(policy, Statement=statements)


def stage_card(project_dir, stage):
    """The card of the model ``stage`` serves (its ``MODEL_DIR``, default the
    bundled ``model/iris``), relative to the project."""
    with open(os.path.join(project_dir, ".chalice", "config.json")) as f:
        config = json.load(f)
    env = dict(config.get("environment_variables") or {})
    env.update(config.get("stages", {}).get(stage, {}).get("environment_variables") or {})
    rel = (env.get("MODEL_DIR") or "model/iris").strip("/")
    if rel.startswith("var/task/"):
        rel = rel[len("var/task/"):]
    return os.path.join(rel, "model.json")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tools.ops.model_policy",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--project-dir", default=os.getcwd())
    parser.add_argument("--stage", default="prod")
    parser.add_argument("--check", action="store_true", help="check only, write nothing")
    parser.add_argument("--region", default=None,
                        help="the stage's region, for the ARN partition (default: "
                             "AWS_REGION, AWS_DEFAULT_REGION, us-east-1)")
    args = parser.parse_args(argv)
    try:
        path = policy_path(args.project_dir, args.stage)
        with open(path) as f:
            policy = json.load(f)
        with open(os.path.join(args.project_dir, stage_card(args.project_dir, args.stage))) as f:
            card = json.load(f)
        if not args.check:
            policy = updated(policy, card, args.region)
            with open(path, "w") as f:
                json.dump(policy, f, indent=2)
                f.write("\n")
        check(policy, card, args.region)
    except (PolicyError, OSError, ValueError) as exc:
        print("model_policy: %s" % exc, file=sys.stderr)
        return 2
    uri = remote_uri(card)
    print("%s: %s" % (os.path.relpath(path, args.project_dir),
                      "s3:GetObject on %s only" % object_arn(uri, args.region) if uri
                      else "no S3 grant (the model ships in the package)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
