"""The stage policy's read grant on a model artifact kept in S3.

    .venv/bin/python -m tools.ops.model_policy [--project-dir DIR] [--stage prod] [--check]

The function's IAM policy is a committed file (``.chalice/policy-<stage>.json``,
``autogen_policy`` off). A model published with ``--upload s3://BUCKET/KEY``
needs exactly one more grant: ``s3:GetObject`` on ``arn:aws:s3:::BUCKET/KEY``.
This tool writes that statement (Sid :data:`SID`) from the card that ships
(``vendor/model/model.json``), replacing an earlier one, or removes it when
the model is local again; every other statement is left as it is.
``--check`` only says whether the policy is right.

``tools.build.package`` runs :func:`check` and refuses to build when the
policy lacks the grant or grants S3 on anything else: the package and its
role are then never out of step. Standard library only (the build imports
this).
"""
import argparse
import json
import os
import sys

SID = "ReadModelArtifact"
CARD = os.path.join("vendor", "model", "model.json")


class PolicyError(Exception):
    """The stage policy does not grant what the model needs, or more."""


def object_arn(uri):
    """``arn:aws:s3:::bucket/key`` for ``s3://bucket/key`` (no wildcard: a
    ``*`` or ``?`` in the key would widen the grant, so it is refused)."""
    if not (isinstance(uri, str) and uri.startswith("s3://") and "/" in uri[5:]):
        raise PolicyError("%r is not an s3://bucket/key URI" % (uri,))
    bucket, key = uri[5:].split("/", 1)
    if not bucket or not key or "*" in uri or "?" in uri:
        raise PolicyError("%r cannot be granted exactly (empty bucket or key, or a wildcard)"
                          % uri)
    return "arn:aws:s3:::%s/%s" % (bucket, key)


def statement(uri):
    return {"Sid": SID, "Effect": "Allow", "Action": "s3:GetObject",
            "Resource": object_arn(uri)}


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


def _s3_grants(policy):
    """(sid, actions, resources) of every statement that mentions S3."""
    found = []
    statements = policy.get("Statement", [])
    if isinstance(statements, dict):
        statements = [statements]
    for st in statements:
        actions = st.get("Action", st.get("NotAction", []))
        actions = [actions] if isinstance(actions, str) else list(actions)
        resources = st.get("Resource", st.get("NotResource", []))
        resources = [resources] if isinstance(resources, str) else list(resources)
        if any(a == "*" or a.lower().startswith("s3:") for a in actions) or \
                any(r == "*" or ":s3:" in r for r in resources):
            found.append((st.get("Sid"), st, actions, resources))
    return found


def check(policy, card):
    """Raise PolicyError unless ``policy`` grants S3 exactly what ``card``
    needs: s3:GetObject on its artifact's object, or nothing for a local one."""
    uri = remote_uri(card)
    wanted = statement(uri) if uri else None
    grants = _s3_grants(policy)
    extra = [st for _, st, _, _ in grants if st != wanted]
    if extra:
        raise PolicyError(
            "the stage policy grants S3 beyond the model artifact%s: %s; run "
            "`python -m tools.ops.model_policy` to leave only the model's grant"
            % (" (" + uri + ")" if uri else " (the model ships in the package)",
               json.dumps(extra)))
    if wanted and wanted not in [st for _, st, _, _ in grants]:
        raise PolicyError(
            "the model artifact is %s but the stage policy does not grant s3:GetObject on "
            "%s; run `python -m tools.ops.model_policy` (it adds %s)"
            % (uri, wanted["Resource"], json.dumps(wanted)))


def updated(policy, card):
    """``policy`` with the model's grant (Sid :data:`SID`) set or removed."""
    statements = policy.get("Statement", [])
    statements = [statements] if isinstance(statements, dict) else list(statements)
    statements = [st for st in statements if st.get("Sid") != SID]
    uri = remote_uri(card)
    if uri:
        statements.append(statement(uri))
    return dict(policy, Statement=statements)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tools.ops.model_policy",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--project-dir", default=os.getcwd())
    parser.add_argument("--stage", default="prod")
    parser.add_argument("--check", action="store_true", help="check only, write nothing")
    args = parser.parse_args(argv)
    try:
        path = policy_path(args.project_dir, args.stage)
        with open(path) as f:
            policy = json.load(f)
        with open(os.path.join(args.project_dir, CARD)) as f:
            card = json.load(f)
        if not args.check:
            policy = updated(policy, card)
            with open(path, "w") as f:
                json.dump(policy, f, indent=2)
                f.write("\n")
        check(policy, card)
    except (PolicyError, OSError, ValueError) as exc:
        print("model_policy: %s" % exc, file=sys.stderr)
        return 2
    uri = remote_uri(card)
    print("%s: %s" % (os.path.relpath(path, args.project_dir),
                      "s3:GetObject on %s only" % object_arn(uri) if uri
                      else "no S3 grant (the model ships in the package)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
