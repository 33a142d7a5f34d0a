"""The production merge template for ``chalice package --merge-template``.

    .venv/bin/python -m tools.ops.merge_template [deploy/merge-prod.json] [build/merge-prod.json]

``deploy/merge-prod.json`` holds what does not depend on the routes
(SnapStart, the ``live`` alias, alarms, the canary deployment). Every route
of the app must invoke that alias, not ``$LATEST``, or a rollback would
leave those routes on the new code: the integrations are written here from
the app's own route table, so a route added to ``app.py`` is never missed.
"""
import copy
import json
import os
import sys

ALIAS_URI = ("arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2015-03-31/"
             "functions/${APIHandlerAliaslive}/invocations")


def app_routes():
    """``{path: [method, ...]}`` of the Chalice app, imported without loading
    a model (Chalice's CLI mode, as ``chalice package`` imports it)."""
    os.environ.setdefault("AWS_CHALICE_CLI_MODE", "true")
    import app as app_module
    return {path: sorted(m.lower() for m in entries) for path, entries in
            app_module.app.routes.items()}


def merged(base, routes):
    template = copy.deepcopy(base)
    body = template["Resources"].setdefault("RestAPI", {}).setdefault("Properties", {}) \
        .setdefault("DefinitionBody", {})
    body["paths"] = {path: {method: {"x-amazon-apigateway-integration": {
        "uri": {"Fn::Sub": ALIAS_URI}}} for method in methods}
        for path, methods in sorted(routes.items())}
    return template


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    source = argv[0] if argv else "deploy/merge-prod.json"
    target = argv[1] if len(argv) > 1 else "build/merge-prod.json"
    with open(source) as f:
        base = json.load(f)
    template = merged(base, app_routes())
    os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
    with open(target, "w") as f:
        json.dump(template, f, indent=2)
        f.write("\n")
    print("merge template: %s (+ %d routes on the live alias) -> %s"
          % (source, sum(len(m) for m in template["Resources"]["RestAPI"]["Properties"]
                         ["DefinitionBody"]["paths"].values()), target))
    return 0


if __name__ == "__main__":
    sys.exit(main())
