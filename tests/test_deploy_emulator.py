"""The deploy lifecycle against an AWS emulator on loopback.

The real CLI (`chalice deploy/url/delete --stage prod`, as subprocesses) runs
on a temporary copy of the project against moto's server on 127.0.0.1 (see
tests/aws_emulator.py for the two emulator patches and for how the subprocess
is kept off every other address); boto3 then reads back what was created.
One deploy is shared by the checks below; the last test updates and deletes it,
so the tests of this module run in file order.

What this cannot prove: moto does not run the function's code (the package
test does), and it enforces neither Lambda's size limits nor IAM evaluation.
"""
import json

import pytest

from tests.aws_emulator import ACCOUNT_ID, REGION, running_emulator
from tests.packaging import (
    chalice,
    chalice_package,
    committed_policy,
    least_privilege_grants,
    policy_grants,
    stage_settings,
)

STAGE = "prod"
RUNTIME = "python3.12"
HANDLER = "app.app"
DIRECT_UPLOAD_LIMIT = 50 * 1024 * 1024  # Lambda's zipped limit for a direct upload


class Deployment:
    def __init__(self, project, emulator, settings):
        self.project = project
        self.emulator = emulator
        self.settings = settings
        self.apigw = emulator.client("apigateway")
        self.lam = emulator.client("lambda")
        self.iam = emulator.client("iam")
        self.outputs = []

    def cli(self, *args):
        proc = chalice(self.project, *args, env=self.emulator.env())
        self.outputs.append(proc.stdout + proc.stderr)
        return proc

    def deployed(self):
        """Chalice's record of what it deployed (in the copy, never the tree)."""
        path = self.project / ".chalice" / "deployed" / f"{STAGE}.json"
        return {r["name"]: r for r in json.loads(path.read_text())["resources"]}

    @property
    def api_id(self):
        return self.deployed()["rest_api"]["rest_api_id"]

    @property
    def function_arn(self):
        return self.deployed()["api_handler"]["lambda_arn"]

    @property
    def role_name(self):
        return self.deployed()["api_handler_role"]["role_name"]


@pytest.fixture(scope="module")
def deployment(built_project):
    project = built_project.path
    # Package first (outside the emulator): it builds the dependency zip into
    # the copy's .chalice/deployments/ cache, which `chalice deploy` reuses,
    # so the deploy itself needs no network beyond the emulator.
    chalice_package(project, project.parent / "package", stage=STAGE)
    with running_emulator() as emulator:
        dep = Deployment(project, emulator, stage_settings(project, STAGE))
        dep.cli("deploy", "--stage", STAGE)
        yield dep


def _resource(apigw, api_id, path):
    items = apigw.get_resources(restApiId=api_id, embed=["methods"])["items"]
    [res] = [r for r in items if r["path"] == path]
    return res


def _invoke_uri(function_arn):
    return (f"arn:aws:apigateway:{REGION}:lambda:path/2015-03-31/functions/"
            f"{function_arn}/invocations")


def _apigateway_statements(lam, function_arn):
    policy = json.loads(lam.get_policy(FunctionName=function_arn)["Policy"])
    return [s for s in policy["Statement"]
            if s.get("Principal", {}).get("Service") == "apigateway.amazonaws.com"]


def test_rest_api_and_prod_stage(deployment):
    apis = deployment.apigw.get_rest_apis()["items"]
    assert [(a["id"], a["name"]) for a in apis] == [
        (deployment.api_id, deployment.settings["app_name"])]
    stage = deployment.apigw.get_stage(restApiId=deployment.api_id,
                                       stageName=deployment.settings["api_gateway_stage"])
    assert stage["stageName"] == STAGE
    assert stage["deploymentId"]


def test_post_model_is_an_aws_proxy_integration_to_the_function(deployment):
    res = _resource(deployment.apigw, deployment.api_id, "/model")
    assert "POST" in res["resourceMethods"]
    integration = deployment.apigw.get_integration(
        restApiId=deployment.api_id, resourceId=res["id"], httpMethod="POST")
    # Chalice writes "aws_proxy" in its Swagger document; API Gateway reports
    # the type upper-case, moto echoes it as sent: compare case-insensitively.
    assert integration["type"].upper() == "AWS_PROXY"
    assert integration["httpMethod"] == "POST"
    assert integration["uri"] == _invoke_uri(deployment.function_arn)
    assert deployment.function_arn == (
        f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:"
        f"{deployment.settings['function_name']}")


def test_every_protocol_route_is_deployed_as_a_proxy_to_the_function(deployment):
    """The peers' protocols reach the same function through the deployed
    REST API. (Which methods need the API key is checked in the templates,
    tests/test_templates.py: moto's ImportRestApi does not record a
    swagger's security, not even for POST /model.)"""
    from tests.test_public_endpoint import PROTECTED, PUBLIC
    items = deployment.apigw.get_resources(restApiId=deployment.api_id,
                                           embed=["methods"])["items"]
    by_path = {r["path"]: r for r in items}
    for route in PROTECTED + PUBLIC:
        method, path = route.split(" ")
        res = by_path[path]
        assert method in res.get("resourceMethods", {}), route
        integration = deployment.apigw.get_integration(
            restApiId=deployment.api_id, resourceId=res["id"], httpMethod=method)
        assert integration["type"].upper() == "AWS_PROXY", route
        assert integration["uri"] == _invoke_uri(deployment.function_arn), route


def test_function_configuration_matches_the_prod_stage(deployment):
    settings = deployment.settings
    cfg = deployment.lam.get_function_configuration(FunctionName=deployment.function_arn)
    assert cfg["FunctionName"] == settings["function_name"]
    assert cfg["Runtime"] == RUNTIME
    assert cfg["Handler"] == HANDLER
    assert cfg["MemorySize"] == settings["lambda_memory_size"]
    assert cfg["Timeout"] == settings["lambda_timeout"]
    assert cfg["Environment"]["Variables"] == settings["environment_variables"]
    assert cfg["Role"] == deployment.deployed()["api_handler_role"]["role_arn"]
    assert cfg.get("Architectures", ["x86_64"]) == ["x86_64"]
    assert not cfg.get("Layers")  # everything is in the function's own zip


def test_uploaded_code_fits_lambdas_direct_upload_limit(deployment):
    # moto accepts any size; real Lambda refuses a direct upload over 50 MiB
    # (RequestEntityTooLargeException), and `chalice deploy` uploads directly.
    cfg = deployment.lam.get_function_configuration(FunctionName=deployment.function_arn)
    assert 0 < cfg["CodeSize"] <= DIRECT_UPLOAD_LIMIT, cfg["CodeSize"]


def test_role_has_only_the_committed_policy(deployment):
    iam, role_name = deployment.iam, deployment.role_name
    role = iam.get_role(RoleName=role_name)["Role"]
    assert [s["Principal"] for s in role["AssumeRolePolicyDocument"]["Statement"]] == [
        {"Service": "lambda.amazonaws.com"}]
    assert iam.list_attached_role_policies(RoleName=role_name)["AttachedPolicies"] == []
    [name] = iam.list_role_policies(RoleName=role_name)["PolicyNames"]
    attached = iam.get_role_policy(RoleName=role_name, PolicyName=name)["PolicyDocument"]
    assert attached == committed_policy(deployment.project, STAGE)
    # IAM: the role may create its own log group and write its own log streams,
    # nothing else, on nothing else.
    assert policy_grants(attached) == least_privilege_grants(
        deployment.settings["function_name"])


def test_api_gateway_may_invoke_the_function(deployment):
    [st] = _apigateway_statements(deployment.lam, deployment.function_arn)
    assert st["Effect"] == "Allow"
    assert st["Action"] == "lambda:InvokeFunction"
    assert st["Resource"] == deployment.function_arn
    assert st["Condition"]["ArnLike"]["AWS:SourceArn"] == (
        f"arn:aws:execute-api:{REGION}:{ACCOUNT_ID}:{deployment.api_id}/*")


def test_chalice_url_names_the_api_and_the_prod_stage(deployment):
    url = deployment.cli("url", "--stage", STAGE).stdout.strip()
    assert url == (f"https://{deployment.api_id}.execute-api.{REGION}"
                   f".amazonaws.com/{STAGE}/")


def test_redeploy_updates_in_place_then_delete_leaves_nothing(deployment):
    before = deployment.deployed()
    out = deployment.cli("deploy", "--stage", STAGE).stdout
    assert "Updating lambda function" in out and "Updating rest API" in out, out
    after = deployment.deployed()
    assert after["rest_api"]["rest_api_id"] == before["rest_api"]["rest_api_id"]
    assert after["api_handler"]["lambda_arn"] == before["api_handler"]["lambda_arn"]
    assert after["api_handler_role"]["role_arn"] == before["api_handler_role"]["role_arn"]
    # Still one of each, still wired together (the update re-puts the Swagger
    # document in overwrite mode), the permission not duplicated.
    apigw, lam, iam = deployment.apigw, deployment.lam, deployment.iam
    assert [a["id"] for a in apigw.get_rest_apis()["items"]] == [deployment.api_id]
    assert [f["FunctionArn"] for f in lam.list_functions()["Functions"]] == [
        deployment.function_arn]
    res = _resource(apigw, deployment.api_id, "/model")
    integration = apigw.get_integration(
        restApiId=deployment.api_id, resourceId=res["id"], httpMethod="POST")
    assert integration["uri"] == _invoke_uri(deployment.function_arn)
    assert apigw.get_stage(restApiId=deployment.api_id, stageName=STAGE)["stageName"] == STAGE
    assert len(_apigateway_statements(lam, deployment.function_arn)) == 1
    assert iam.get_role_policy(
        RoleName=deployment.role_name,
        PolicyName=iam.list_role_policies(RoleName=deployment.role_name)["PolicyNames"][0],
    )["PolicyDocument"] == committed_policy(deployment.project, STAGE)

    role_name = deployment.role_name
    deployment.cli("delete", "--stage", STAGE)
    assert apigw.get_rest_apis()["items"] == []
    assert lam.list_functions()["Functions"] == []
    assert role_name not in [r["RoleName"] for r in iam.list_roles()["Roles"]]
    assert iam.list_roles()["Roles"] == []
    state = json.loads(
        (deployment.project / ".chalice" / "deployed" / f"{STAGE}.json").read_text())
    assert state["resources"] == []
