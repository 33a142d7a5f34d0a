"""Run the real Chalice CLI on a throwaway copy of the project.

Tests never run ``chalice`` in the working tree: ``chalice deploy`` writes
``.chalice/deployed/<stage>.json`` (and ``delete`` rewrites it), and
``chalice package`` writes its dependency cache to ``.chalice/deployments/``.
``copy_project`` (from ``tools.build.project_copy``) makes a copy with what
Chalice reads (the app, ``chalicelib/``, ``vendor/`` with its symlinks, the
model they point at, ``requirements.txt``, ``.chalice/`` config and policy
files), without bytecode, package cache or deploy state.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tools.build.project_copy import copy_project  # noqa: F401  (re-exported for the tests)

ROOT = Path(__file__).resolve().parent.parent
CHALICE = Path(sys.executable).parent / "chalice"
REGION = "us-east-1"

def offline_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for CLI steps that need no AWS at all (package, url)."""
    env = {
        k: v for k, v in dict(os.environ if base is None else base).items()
        if not k.upper().startswith("AWS_")
    }
    env.update(
        AWS_DEFAULT_REGION=REGION,
        AWS_EC2_METADATA_DISABLED="true",
        # Nothing listens here: if a step did call AWS, it fails on loopback.
        AWS_ENDPOINT_URL="http://127.0.0.1:9",
        AWS_ACCESS_KEY_ID="AKIAFAKEFAKEFAKEFAKE",
        AWS_SECRET_ACCESS_KEY="fake",
    )
    return env


def chalice(project_dir: Path, *args: str, env: dict[str, str] | None = None,
            timeout: float = 900) -> subprocess.CompletedProcess:
    """Run ``chalice --project-dir PROJECT_DIR ARGS...``; fail loudly."""
    cmd = [str(CHALICE), "--project-dir", str(project_dir), *args]
    proc = subprocess.run(
        cmd, cwd=project_dir, env=offline_env() if env is None else env,
        capture_output=True, text=True, timeout=timeout,
    )
    if proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} exited {proc.returncode}\n"
            f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
        )
    return proc


WHEELS = ROOT / "build" / "wheels"


def build_package(project_dir: Path, stage: str = "prod") -> str:
    """What ``make build`` does, for ``project_dir``: the trimmed package,
    written into its Chalice cache (wheels cached in this tree's build/)."""
    proc = subprocess.run(
        [sys.executable, "-m", "tools.build.package", "--project-dir", str(project_dir),
         "--stage", stage, "--wheels-dir", str(WHEELS)],
        cwd=ROOT, env=dict(os.environ, AWS_DEFAULT_REGION=REGION),
        capture_output=True, text=True, timeout=900,
    )
    if proc.returncode != 0:
        raise AssertionError(f"build failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout + proc.stderr


def chalice_package(project_dir: Path, out_dir: Path, stage: str = "prod",
                    pkg_format: str | None = None, merge_template: Path | None = None) -> Path:
    """``chalice package --stage STAGE [--pkg-format F] OUT_DIR``; returns OUT_DIR.

    ``merge_template`` (``make package`` passes ``deploy/merge-prod.json``)
    is deep-merged into the SAM template by Chalice.
    Writes ``sam.json`` (default, SAM) or ``chalice.tf.json`` (terraform) and
    ``deployment.zip``, and leaves the dependency zip in the project's
    ``.chalice/deployments/`` cache, so a later ``chalice deploy`` of the
    same project reuses it instead of building again.
    """
    args = ["package", "--stage", stage]
    if pkg_format:
        args += ["--pkg-format", pkg_format]
    if merge_template:
        args += ["--merge-template", str(merge_template)]
    chalice(project_dir, *args, str(out_dir))
    return Path(out_dir)


# --- What .chalice/config.json asks for ------------------------------------


def stage_settings(project_dir: Path, stage: str = "prod") -> dict:
    """The function settings the config gives ``stage``, resolved by hand.

    A stage value wins over the top-level one; environment variables are the
    top-level ones updated by the stage's. Memory and timeout must be set
    explicitly (Chalice's silent defaults, 128 MB and 60 s, are not a choice).
    Per-function overrides (``lambda_functions``) name only the batch
    functions; one for the API's own function (``api_handler``) is refused
    here, so that adding it makes this helper be revisited.
    """
    config = json.loads((Path(project_dir) / ".chalice" / "config.json").read_text())
    stage_cfg = config["stages"][stage]
    for scope in (config, stage_cfg):
        assert "api_handler" not in scope.get("lambda_functions", {})

    def pick(key):
        if key in stage_cfg:
            return stage_cfg[key]
        if key in config:
            return config[key]
        raise AssertionError(f"{key} is set neither for stage {stage!r} nor top-level")

    return {
        "app_name": config["app_name"],
        "function_name": f"{config['app_name']}-{stage}",
        "api_gateway_stage": pick("api_gateway_stage"),
        "lambda_memory_size": pick("lambda_memory_size"),
        "lambda_timeout": pick("lambda_timeout"),
        "autogen_policy": pick("autogen_policy"),
        "iam_policy_file": pick("iam_policy_file"),
        "environment_variables": {
            **config.get("environment_variables", {}),
            **stage_cfg.get("environment_variables", {}),
        },
    }


def committed_policy(project_dir: Path, stage: str = "prod") -> dict:
    """The IAM policy document committed for ``stage``."""
    name = stage_settings(project_dir, stage)["iam_policy_file"]
    return json.loads((Path(project_dir) / ".chalice" / name).read_text())


# --- What the function's role may do ---------------------------------------


def policy_grants(policy: dict) -> set[tuple[str, str]]:
    """Expand a policy document into its (action, resource) grants.

    Refuses anything a plain set of pairs cannot express (Deny, NotAction,
    NotResource, conditions), so an equality check on the result is an exact
    statement of what the role may do.
    """
    grants = set()
    statements = policy["Statement"]
    if isinstance(statements, dict):
        statements = [statements]
    for st in statements:
        assert set(st) <= {"Sid", "Effect", "Action", "Resource"}, st
        assert st["Effect"] == "Allow", st
        actions = [st["Action"]] if isinstance(st["Action"], str) else st["Action"]
        resources = [st["Resource"]] if isinstance(st["Resource"], str) else st["Resource"]
        grants |= {(a, r) for a in actions for r in resources}
    return grants


def least_privilege_grants(function_name: str) -> set[tuple[str, str]]:
    """All the function needs: write its own CloudWatch Logs, nothing else."""
    group = f"arn:*:logs:*:*:log-group:/aws/lambda/{function_name}"
    return {
        ("logs:CreateLogGroup", group),
        ("logs:CreateLogStream", f"{group}:*"),
        ("logs:PutLogEvents", f"{group}:*"),
    }


def serve_in_stage(project_dir, model_rel: str, stage: str = "prod") -> None:
    """Make ``stage`` of the project serve ``model_rel`` (``model/NAME``), as a
    user would in ``.chalice/config.json``."""
    config_file = Path(project_dir) / ".chalice" / "config.json"
    config = json.loads(config_file.read_text())
    config["stages"][stage].setdefault("environment_variables", {})["MODEL_DIR"] = model_rel
    config_file.write_text(json.dumps(config, indent=2) + "\n")


def stage_model_rel(project_dir, stage: str = "prod") -> str:
    """The model directory ``stage`` serves (``model/NAME``), from the
    project's config (default: the bundled ``model/iris``)."""
    config = json.loads((Path(project_dir) / ".chalice" / "config.json").read_text())
    env = dict(config.get("environment_variables") or {})
    env.update(config["stages"][stage].get("environment_variables") or {})
    return env.get("MODEL_DIR") or "model/iris"


def packaged_model_rel(package_dir) -> str:
    """The one model directory an unzipped package holds (``model/NAME``)."""
    root = Path(package_dir) / "model"
    found = sorted(d.name for d in root.iterdir() if (d / "model.json").is_file())
    assert len(found) == 1, found
    return "model/" + found[0]
