"""`make api-key` / `api-key-list` / `api-key-revoke` (tools/ops/api_keys.py)
after a real `chalice deploy --stage prod` against moto on 127.0.0.1.

The tool runs as a subprocess (as the Make verbs run it) with an environment
that can only reach the emulator; boto3 then reads back the usage plan, its
API stage, throttle and quota, the keys and their association. The deploy is
made in this module's own copy of the built project, so the deploy lifecycle
test keeps its own. The tests run in file order (create, again, list, change,
revoke).

Only AWS can prove that API Gateway then admits the key and enforces the
plan (moto does not serve the API).
"""
import json
import shutil
import subprocess
import sys
import urllib.request

import pytest

from tests.aws_emulator import running_emulator
from tests.packaging import ROOT, chalice, chalice_package, stage_settings

STAGE = "prod"


class Deployed:
    def __init__(self, project, emulator):
        self.project = project
        self.emulator = emulator
        self.apigw = emulator.client("apigateway")
        record = json.loads((project / ".chalice" / "deployed" / f"{STAGE}.json").read_text())
        [api] = [r for r in record["resources"] if r["resource_type"] == "rest_api"]
        self.api_id = api["rest_api_id"]
        self.settings = stage_settings(project, STAGE)

    def tool(self, *args, check=True):
        proc = subprocess.run([sys.executable, "-m", "tools.ops.api_keys", "--project-dir",
                               str(self.project), *args],
                              cwd=ROOT, env=self.emulator.env(), capture_output=True,
                              text=True, timeout=120)
        if check:
            assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc

    def plans(self):
        return self.apigw.get_usage_plans()["items"]

    def plan_keys(self, plan_id):
        return self.apigw.get_usage_plan_keys(usagePlanId=plan_id)["items"]


@pytest.fixture(scope="module")
def deployed(built_project, tmp_path_factory):
    project = tmp_path_factory.mktemp("api-keys") / "project"
    shutil.copytree(built_project.path, project, symlinks=True,
                    ignore=shutil.ignore_patterns("deployed"))
    (project / "deploy").mkdir()
    shutil.copy(ROOT / "deploy" / "usage-plan.json", project / "deploy")
    chalice_package(project, project.parent / "package", stage=STAGE)
    with running_emulator() as emulator:
        chalice(project, "deploy", "--stage", STAGE, env=emulator.env())
        yield Deployed(project, emulator)
        # moto keeps its state in the process, across emulator instances:
        # leave nothing for the next module's deploy to find.
        direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only
        direct.open(urllib.request.Request(emulator.endpoint_url + "/moto-api/reset",
                                           method="POST"), timeout=30).close()


@pytest.fixture(scope="module")
def created(deployed):
    return deployed.tool("create", "client-a")


def test_create_makes_the_plan_for_the_prod_stage_and_a_bound_key(deployed, created):
    [plan] = deployed.plans()
    assert plan["name"] == f"{deployed.settings['app_name']}-{STAGE}"
    assert [(s["apiId"], s["stage"]) for s in plan["apiStages"]] == [
        (deployed.api_id, deployed.settings["api_gateway_stage"])]
    configured = json.loads((ROOT / "deploy" / "usage-plan.json").read_text())
    assert float(plan["throttle"]["rateLimit"]) == configured["throttle"]["rateLimit"]
    assert plan["throttle"]["burstLimit"] == configured["throttle"]["burstLimit"]
    assert plan["quota"]["limit"] == configured["quota"]["limit"]
    assert plan["quota"]["period"] == configured["quota"]["period"]
    [bound] = deployed.plan_keys(plan["id"])
    assert bound["name"] == "client-a" and bound["type"] == "API_KEY"
    key = deployed.apigw.get_api_key(apiKey=bound["id"], includeValue=True)
    assert key["enabled"] is True
    # the value is printed once, alone on stdout
    assert created.stdout == key["value"] + "\n"
    assert key["value"] not in created.stderr


def test_create_again_is_idempotent_and_does_not_show_the_value(deployed, created):
    again = deployed.tool("create", "client-a")
    assert again.stdout == ""
    assert "already exists" in again.stderr
    [plan] = deployed.plans()
    assert [k["name"] for k in deployed.plan_keys(plan["id"])] == ["client-a"]
    assert len(deployed.apigw.get_api_keys()["items"]) == 1


def test_a_second_client_gets_its_own_key_in_the_same_plan(deployed, created):
    second = deployed.tool("create", "client-b").stdout.strip()
    assert second and second != created.stdout.strip()
    [plan] = deployed.plans()
    assert sorted(k["name"] for k in deployed.plan_keys(plan["id"])) == ["client-a", "client-b"]


def test_list_names_keys_never_values(deployed, created):
    out = deployed.tool("list").stdout
    [plan] = deployed.plans()
    ids = {k["name"]: k["id"] for k in deployed.plan_keys(plan["id"])}
    assert f"usage plan {plan['name']} ({plan['id']})" in out
    for name, key_id in ids.items():
        assert f"{name}\t{key_id}" in out
    assert created.stdout.strip() not in out


def test_changed_plan_settings_are_applied_to_the_existing_plan(deployed, created):
    path = deployed.project / "deploy" / "usage-plan.json"
    original = path.read_text()
    path.write_text(json.dumps({"throttle": {"rateLimit": 5.0, "burstLimit": 7},
                                "quota": {"limit": 5000}}))
    try:
        deployed.tool("create", "client-c")
        [plan] = deployed.plans()  # still one plan
        assert (float(plan["throttle"]["rateLimit"]), plan["throttle"]["burstLimit"],
                plan["quota"]["limit"], plan["quota"]["period"]) == (5.0, 7, 5000, "MONTH")
    finally:
        path.write_text(original)


def test_revoke_deletes_the_key_and_its_binding(deployed, created):
    [plan] = deployed.plans()
    before = {k["name"]: k["id"] for k in deployed.plan_keys(plan["id"])}
    deployed.tool("revoke", "client-a")
    after = {k["name"]: k["id"] for k in deployed.plan_keys(plan["id"])}
    assert "client-a" not in after and set(after) == set(before) - {"client-a"}
    assert before["client-a"] not in [k["id"] for k in deployed.apigw.get_api_keys()["items"]]
    again = deployed.tool("revoke", "client-a", check=False)
    assert again.returncode == 1 and "no API key 'client-a'" in again.stderr


@pytest.mark.parametrize("name", ["", "a b", "-x", "x" * 129, "é"])
def test_bad_names_are_refused_before_any_call(deployed, name):
    proc = deployed.tool("create", "--", name, check=False)  # as the Make verb passes it
    assert proc.returncode == 1 and "NAME must be" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_an_api_not_deployed_by_chalice_is_named_with_rest_api_id(deployed, tmp_path):
    """The SAM route: no .chalice/deployed record, the stack's RestAPIId."""
    from tools.build.project_copy import copy_project
    project = copy_project(tmp_path / "project")
    proc = subprocess.run([sys.executable, "-m", "tools.ops.api_keys", "--project-dir", str(project),
                           "--rest-api-id", deployed.api_id, "list"], cwd=ROOT,
                          env=deployed.emulator.env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    [plan] = deployed.plans()
    assert f"usage plan {plan['name']} ({plan['id']})" in proc.stdout


def test_before_any_deploy_it_says_deploy_first(tmp_path):
    from tools.build.project_copy import copy_project
    project = copy_project(tmp_path / "project")
    proc = subprocess.run([sys.executable, "-m", "tools.ops.api_keys", "--project-dir", str(project),
                           "create", "client-a"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 1
    assert "deploy first" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("verb, command", [
    ("api-key", 'tools.ops.api_keys create -- "client-a"'),
    ("api-key-list", "tools.ops.api_keys list"),
    ("api-key-revoke", 'tools.ops.api_keys revoke -- "client-a"'),
])
def test_the_make_verbs_run_the_tool(verb, command):
    # --no-print-directory: under `make test` a nested make would add its
    # "Entering directory" lines
    proc = subprocess.run(["make", "--no-print-directory", "-n", verb, "NAME=client-a"],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.rstrip().endswith(command), proc.stdout
    proc = subprocess.run(["make", "--no-print-directory", "-n", verb, "NAME=client-a",
                           "API_ID=abc123"], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.stdout.rstrip().endswith(
        command.replace("tools.ops.api_keys", "tools.ops.api_keys --rest-api-id abc123")), proc.stdout
