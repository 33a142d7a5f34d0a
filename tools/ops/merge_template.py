"""The production merge template for ``chalice package --merge-template``.

    .venv/bin/python -m tools.ops.merge_template [deploy/merge-prod.json] [build/merge-prod.json]
        [--project-dir .] [--stage prod]

``deploy/merge-prod.json`` holds what does not depend on the routes
(SnapStart, the ``live`` alias, alarms, the canary deployment). Every route
of the app must invoke that alias, not ``$LATEST``, or a rollback would
leave those routes on the new code: the integrations are written here from
the app's own route table, so a route added to ``app.py`` is never missed.
An unknown path is a 404 in a body every peer's client reads (the gateway
response below), not API Gateway's 403.
A stage with ``BATCH_EVENTS=template`` also gets the batch transform's
bucket, queues, alarm and grants (tools/ops/batch_template.py); any other
stage's template is left as it was.
"""
import argparse
import copy
import json
import os
import sys

from tools.ops import batch_template

ALIAS_URI = ("arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2015-03-31/"
             "functions/${APIHandlerAliaslive}/invocations")


def app_routes():
    """``{path: [method, ...]}`` of the Chalice app, imported without loading
    a model (Chalice's CLI mode, as ``chalice package`` imports it)."""
    os.environ.setdefault("AWS_CHALICE_CLI_MODE", "true")
    import app as app_module
    return {path: sorted(m.lower() for m in entries) for path, entries in
            app_module.app.routes.items()}


# API Gateway answers a path or method no route has with its
# MISSING_AUTHENTICATION_TOKEN response (403 "Missing Authentication Token").
# Every peer answers 404: one neutral body that each peer's client reads in
# its own key (KServe and Open Inference "error"; MLflow and SageMaker
# "error_code" and "message"; this app's "Code" and "Message"). API Gateway
# gives the same response to an unsigned request on a stage with IAM auth.
NOT_FOUND_MESSAGE = ("no route for this method and path (see /openapi.json for the routes); "
                     "on a stage with IAM auth, also an unsigned request")
NOT_FOUND_BODY = json.dumps({"error": NOT_FOUND_MESSAGE, "error_code": "RESOURCE_DOES_NOT_EXIST",
                             "message": NOT_FOUND_MESSAGE, "Code": "NotFoundError",
                             "Message": NOT_FOUND_MESSAGE})
GATEWAY_RESPONSES = {
    "MISSING_AUTHENTICATION_TOKEN": {
        "statusCode": 404,
        "responseParameters": {"gatewayresponse.header.Content-Type": "'application/json'"},
        "responseTemplates": {"application/json": NOT_FOUND_BODY},
    },
}


def merged(base, routes):
    template = copy.deepcopy(base)
    body = template["Resources"].setdefault("RestAPI", {}).setdefault("Properties", {}) \
        .setdefault("DefinitionBody", {})
    body["paths"] = {path: {method: {"x-amazon-apigateway-integration": {
        "uri": {"Fn::Sub": ALIAS_URI}}} for method in methods}
        for path, methods in sorted(routes.items())}
    body["x-amazon-apigateway-gateway-responses"] = copy.deepcopy(GATEWAY_RESPONSES)
    return template


def with_batch(template, batch):
    """``template`` with the batch part's resources and outputs added (none
    of its ids is the base's: a clash would silently drop one)."""
    if batch is None:
        return template
    template = copy.deepcopy(template)
    for section in ("Resources", "Outputs"):
        ours = template.setdefault(section, {})
        clash = set(ours) & set(batch[section])
        if clash:
            raise ValueError("the batch template redefines %s" % ", ".join(sorted(clash)))
        ours.update(batch[section])
    return template


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tools.ops.merge_template",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("source", nargs="?", default="deploy/merge-prod.json")
    parser.add_argument("target", nargs="?", default="build/merge-prod.json")
    parser.add_argument("--project-dir", default=".",
                        help="the project whose .chalice/config.json has the stage")
    parser.add_argument("--stage", default="prod")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    source, target = args.source, args.target
    with open(source) as f:
        base = json.load(f)
    batch = batch_template.resources(batch_template.read_config(args.project_dir), args.stage)
    template = with_batch(merged(base, app_routes()), batch)
    os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
    with open(target, "w") as f:
        json.dump(template, f, indent=2)
        f.write("\n")
    print("merge template: %s (+ %d routes on the live alias) -> %s"
          % (source, sum(len(m) for m in template["Resources"]["RestAPI"]["Properties"]
                         ["DefinitionBody"]["paths"].values()), target))
    if batch:
        print("merge template: + the batch transform's %d resources (BATCH_EVENTS=template)"
              % len(batch["Resources"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
