"""API keys for the deployed ``prod`` stage, in one command each.

    python -m tools.ops.api_keys create NAME    # make api-key NAME=...
    python -m tools.ops.api_keys list           # make api-key-list
    python -m tools.ops.api_keys revoke NAME    # make api-key-revoke NAME=...

Chalice marks the ``prod`` methods "API key required" but creates no usage
plan and no key. This finds the REST API that ``chalice deploy`` created (its
id in Chalice's own record, ``.chalice/deployed/<stage>.json``), creates the
usage plan ``<app>-<stage>`` for that API stage once (throttle and quota from
``deploy/usage-plan.json``, else the defaults below), and manages keys bound
to it. ``create`` prints a new key's value once, alone on stdout (everything
else goes to stderr); an existing key of that name is left as it is and its
value is not shown again (revoke and create to rotate). Everything is
idempotent. Credentials and region come from the usual AWS configuration;
the region defaults to the one in the deployed API's URL. For a stack
deployed from ``make package`` (the SAM route), pass ``--rest-api-id``
(``make api-key NAME=... API_ID=...``): Chalice keeps no record of it.
"""
import argparse
import json
import os
import re
import sys

#: API Gateway's own units: requests per second (steady rate and burst) and
#: requests per period (DAY, WEEK or MONTH).
DEFAULT_PLAN = {"throttle": {"rateLimit": 10.0, "burstLimit": 20},
                "quota": {"limit": 100000, "period": "MONTH"}}
PLAN_FILE = os.path.join("deploy", "usage-plan.json")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class ApiKeyError(Exception):
    """A mistake the user can fix; printed without a traceback."""


def log(msg):
    print(msg, file=sys.stderr)


class Project:
    """What the tool reads from the project: app name, API Gateway stage,
    the deployed API's id and URL, the plan settings."""

    def __init__(self, project_dir, stage, rest_api_id=None):
        self.dir = project_dir
        self.stage = stage
        self.rest_api_id = rest_api_id
        with open(os.path.join(project_dir, ".chalice", "config.json")) as f:
            config = json.load(f)
        self.app_name = config["app_name"]
        stage_cfg = config.get("stages", {}).get(stage)
        if stage_cfg is None:
            raise ApiKeyError("no stage %r in .chalice/config.json" % stage)
        self.api_stage = stage_cfg.get("api_gateway_stage", config.get("api_gateway_stage", "api"))
        self.plan_name = "%s-%s" % (self.app_name, stage)

    def deployed_api(self):
        """(rest_api_id, url) from Chalice's deployed-resources record, or
        the id given on the command line (the SAM route: the stack's
        ``RestAPIId`` output; Chalice keeps no record of a stack)."""
        if self.rest_api_id:
            return self.rest_api_id, ""
        path = os.path.join(self.dir, ".chalice", "deployed", "%s.json" % self.stage)
        try:
            with open(path) as f:
                resources = json.load(f).get("resources", [])
        except FileNotFoundError:
            raise ApiKeyError("%s not found: deploy first (make deploy)" % path) from None
        for resource in resources:
            if resource.get("resource_type") == "rest_api":
                return resource["rest_api_id"], resource.get("rest_api_url", "")
        raise ApiKeyError("%s lists no REST API: deploy first (make deploy)" % path)

    def plan_settings(self):
        path = os.path.join(self.dir, PLAN_FILE)
        if not os.path.exists(path):
            return DEFAULT_PLAN
        with open(path) as f:
            settings = json.load(f)
        merged = {k: dict(v, **settings.get(k, {})) for k, v in DEFAULT_PLAN.items()}
        unknown = set(settings) - set(DEFAULT_PLAN)
        if unknown:
            raise ApiKeyError("%s: unknown keys %s" % (PLAN_FILE, ", ".join(sorted(unknown))))
        return merged


def _region_of(url):
    match = re.match(r"https://[^.]+\.execute-api\.([a-z0-9-]+)\.amazonaws\.com", url or "")
    return match.group(1) if match else None


def _pages(call, key, **kwargs):
    """Every item of a paginated API Gateway list call."""
    while True:
        page = call(**kwargs)
        yield from page.get(key, [])
        if not page.get("position"):
            return
        kwargs["position"] = page["position"]


class Keys:
    def __init__(self, project, client=None):
        self.project = project
        self.api_id, url = project.deployed_api()
        if client is None:
            import boto3
            client = boto3.client("apigateway", region_name=_region_of(url))
        self.apigw = client

    # --- the usage plan ---------------------------------------------------

    def find_plan(self):
        for plan in _pages(self.apigw.get_usage_plans, "items", limit=500):
            stages = {(s.get("apiId"), s.get("stage")) for s in plan.get("apiStages", [])}
            if plan.get("name") == self.project.plan_name and \
                    (self.api_id, self.project.api_stage) in stages:
                return plan
        return None

    def ensure_plan(self):
        """The stage's usage plan, created once; throttle and quota brought
        to the configured values if they were changed since."""
        wanted = self.project.plan_settings()
        plan = self.find_plan()
        if plan is None:
            plan = self.apigw.create_usage_plan(
                name=self.project.plan_name,
                description="API keys of %s, stage %s" % (self.project.app_name,
                                                         self.project.stage),
                apiStages=[{"apiId": self.api_id, "stage": self.project.api_stage}],
                throttle=wanted["throttle"], quota=wanted["quota"])
            log("created usage plan %s (%s)" % (plan["name"], plan["id"]))
            return plan
        ops = []
        for part in ("throttle", "quota"):
            for field, value in wanted[part].items():
                if plan.get(part, {}).get(field) != value:
                    ops.append({"op": "replace", "path": "/%s/%s" % (part, field),
                                "value": _patch_value(value)})
        if ops:
            plan = self.apigw.update_usage_plan(usagePlanId=plan["id"], patchOperations=ops)
            log("updated usage plan %s: %s" % (plan["id"], ", ".join(o["path"] for o in ops)))
        return plan

    def plan_keys(self, plan):
        """{name: key id} of the keys bound to ``plan``."""
        return {k["name"]: k["id"] for k in
                _pages(self.apigw.get_usage_plan_keys, "items", usagePlanId=plan["id"],
                       limit=500)}

    # --- the verbs --------------------------------------------------------

    def create(self, name):
        """The new key's value, or None if the plan already has ``name``."""
        _check_name(name)
        plan = self.ensure_plan()
        existing = self.plan_keys(plan).get(name)
        if existing:
            log("API key %r already exists (id %s); its value is not shown again. "
                "To rotate it: revoke it, then create it again." % (name, existing))
            return None
        key = self.apigw.create_api_key(
            name=name, enabled=True,
            description="%s %s client" % (self.project.app_name, self.project.stage))
        self.apigw.create_usage_plan_key(usagePlanId=plan["id"], keyId=key["id"],
                                         keyType="API_KEY")
        log("created API key %r (id %s) in usage plan %s: %s requests/s, burst %s, "
            "%s per %s" % (name, key["id"], plan["id"], plan["throttle"]["rateLimit"],
                           plan["throttle"]["burstLimit"], plan["quota"]["limit"],
                           plan["quota"]["period"].lower()))
        log("send it as the x-api-key header; it is printed only this once:")
        return key["value"]

    def list(self):
        plan = self.find_plan()
        if plan is None:
            return None, {}
        return plan, self.plan_keys(plan)

    def revoke(self, name):
        _check_name(name)
        plan = self.find_plan()
        key_id = self.plan_keys(plan).get(name) if plan else None
        if key_id is None:
            raise ApiKeyError("no API key %r in usage plan %s" % (name, self.project.plan_name))
        self.apigw.delete_usage_plan_key(usagePlanId=plan["id"], keyId=key_id)
        self.apigw.delete_api_key(apiKey=key_id)
        log("revoked API key %r (id %s)" % (name, key_id))
        return key_id


def _patch_value(value):
    """Patch values are strings; a whole rate is sent as "5", not "5.0"."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _check_name(name):
    if not NAME_RE.match(name or ""):
        raise ApiKeyError("NAME must be 1-128 letters, digits, '.', '_' or '-' (starting with a "
                        "letter or digit), got %r; e.g. make api-key NAME=client-a" % name)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tools.ops.api_keys", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project-dir", default=".")
    parser.add_argument("--stage", default="prod")
    parser.add_argument("--rest-api-id", help="the API's id when it was not deployed by "
                        "`chalice deploy` (SAM route: the stack's RestAPIId output)")
    sub = parser.add_subparsers(dest="verb", required=True)
    sub.add_parser("create").add_argument("name")
    sub.add_parser("list")
    sub.add_parser("revoke").add_argument("name")
    args = parser.parse_args(argv)
    try:
        keys = Keys(Project(args.project_dir, args.stage, args.rest_api_id))
        if args.verb == "create":
            value = keys.create(args.name)
            if value:
                print(value)
        elif args.verb == "list":
            plan, found = keys.list()
            if plan is None:
                log("no usage plan yet for %s (make api-key NAME=... creates it)"
                    % keys.project.plan_name)
            else:
                print("usage plan %s (%s): %s requests/s, burst %s, %s per %s" % (
                    plan["name"], plan["id"], plan["throttle"]["rateLimit"],
                    plan["throttle"]["burstLimit"], plan["quota"]["limit"],
                    plan["quota"]["period"].lower()))
                for name, key_id in sorted(found.items()):
                    print("%s\t%s" % (name, key_id))
        else:
            keys.revoke(args.name)
    except ApiKeyError as exc:
        log("error: %s" % exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
