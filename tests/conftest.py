"""Shared fixtures: the real app behind Chalice's test client, with a fresh
service per test so that MODEL_DIR and limits can vary."""
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time

import zipfile

import pytest
from chalice.test import Client

import app as app_module
from chalicelib.protocols import service

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUNDLED_MODEL = os.path.join(PROJECT_DIR, "model", "iris")
IRIS_ROWS = [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [6.7, 3.0, 5.2, 2.3]]
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


class Api:
    """A Chalice test client bound to one Service, with JSON helpers."""

    def __init__(self, client, service_):
        self.client = client
        self.service = service_

    def post(self, body, content_type="application/json", query=""):
        if not isinstance(body, (str, bytes)):
            body = json.dumps(body)
        headers = {} if content_type is None else {"Content-Type": content_type}
        return self.client.http.post("/model" + query, headers=headers, body=body)

    def get(self, path, headers=None):
        return self.client.http.get(path, headers=headers or {})


def body_of(response):
    return json.loads(response.body)


@pytest.fixture(autouse=True)
def _cli_mode_stays_in_its_test():
    """Chalice's CLI, run in-process by some tests (package, deploy), sets
    AWS_CHALICE_CLI_MODE for the whole process; the app reads it (the lazy
    model load, chalice local's short log line), so it must not leak."""
    before = os.environ.get("AWS_CHALICE_CLI_MODE")
    yield
    if before is None:
        os.environ.pop("AWS_CHALICE_CLI_MODE", None)
    else:
        os.environ["AWS_CHALICE_CLI_MODE"] = before


@pytest.fixture
def serve(monkeypatch):
    """``serve(**env)`` -> Api for the real app with a service built from env."""
    opened = []

    def _serve(**env):
        env = {k: str(v) for k, v in env.items()}
        env.setdefault("MODEL_DIR", BUNDLED_MODEL)
        env.setdefault("LOG_REQUESTS", "false")
        monkeypatch.setattr(app_module, "SERVICE", service.from_environment(env))
        client = Client(app_module.app)
        client.__enter__()
        opened.append(client)
        return Api(client, app_module.SERVICE)

    yield _serve
    for client in opened:
        client.__exit__(None, None, None)


@pytest.fixture(scope="module")
def bundled_client():
    """A Chalice test client of the app serving the bundled model, shared by
    a module's tests (they must not change its service)."""
    saved = app_module.SERVICE
    app_module.SERVICE = service.from_environment(
        {"MODEL_DIR": BUNDLED_MODEL, "LOG_REQUESTS": "false"})
    with Client(app_module.app) as client:
        yield client
    app_module.SERVICE = saved


@pytest.fixture
def api(serve):
    return serve()


@pytest.fixture
def model_copy(tmp_path):
    """A writable copy of the bundled model directory (served by ONNX Runtime)."""
    target = tmp_path / "model"
    target.mkdir()
    for name in ("model.joblib", "model.json", "model.onnx"):
        shutil.copyfile(os.path.join(BUNDLED_MODEL, name), target / name)
    return target


@pytest.fixture
def pickled_model_copy(model_copy):
    """The bundled model directory as a model that was not compiled to ONNX:
    served by scikit-learn from its pickle (what the pickle checks guard)."""
    card = json.loads((model_copy / "model.json").read_text())
    card["runtime"] = "scikit-learn"
    card["onnx"] = {"not_used": "a test of the scikit-learn runtime"}
    (model_copy / "model.json").write_text(json.dumps(card))
    os.remove(model_copy / "model.onnx")
    return model_copy


@pytest.fixture(scope="session")
def iris_model():
    import joblib
    return joblib.load(os.path.join(BUNDLED_MODEL, "model.joblib"))


CHALICE = os.path.join(os.path.dirname(sys.executable), "chalice")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def chalice_local(log_path, stage=None, **env):
    """A real ``chalice local`` on a free 127.0.0.1 port, yielding its URL
    (``stage``: the config stage whose variables it applies; default dev).
    No autoreload, so edits elsewhere in the tree do not restart it mid-run;
    its output goes to ``log_path`` (a pipe nobody reads would fill and stall
    it). It runs in a copy of the project beside ``log_path`` that serves the
    bundled model: the user's own models and stage settings stay out of it."""
    from tools.build.project_copy import copy_project
    port = free_port()
    project = copy_project(os.path.join(os.path.dirname(str(log_path)), "project-%d" % port))
    environ = dict(os.environ, AWS_DEFAULT_REGION="us-east-1", **env)
    with open(log_path, "w+b") as log:
        proc = subprocess.Popen([CHALICE, "local", "--no-autoreload", "--host", "127.0.0.1",
                                 "--port", str(port)] + (["--stage", stage] if stage else []),
                                cwd=project, env=environ, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        log.seek(0)
                        raise RuntimeError("chalice local did not start: %s" % log.read().decode())
                    time.sleep(0.2)
            yield "http://127.0.0.1:%d" % port
        finally:
            proc.terminate()
            proc.wait(timeout=10)


@pytest.fixture(scope="session")
def local_url(tmp_path_factory):
    """URL of a real ``chalice local`` serving the project as it is."""
    with chalice_local(tmp_path_factory.mktemp("chalice-local") / "output.log") as url:
        yield url


class BuiltProject:
    def __init__(self, path, output):
        self.path = path
        self.output = output


@pytest.fixture(scope="session")
def built_project(tmp_path_factory):
    """A copy of the project built once by ``tools.build.package`` (what
    ``make build`` runs), shared by the package, template and deploy tests.
    A stale cached zip and a stray .pyc are planted first: the build must not
    ship them."""
    from tests.packaging import build_package, copy_project
    project = copy_project(tmp_path_factory.mktemp("built") / "project")
    deployments = project / ".chalice" / "deployments"
    deployments.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(deployments / ("0" * 32 + "-python3.12.zip"), "w") as zf:
        zf.writestr("app.py", "raise SystemExit('stale package')\n")
    stray = project / "chalicelib" / "__pycache__"
    stray.mkdir(exist_ok=True)
    (stray / "gone.cpython-312.pyc").write_bytes(b"stale")
    return BuiltProject(project, build_package(project))


# ---------------------------------------------------------------------------
# Test tiers (the markers are declared in pyproject.toml). `make test` runs
# the tests that carry none of them, `make test-all` (what CI runs) all.
# Assigned here rather than in each module, so that the tiers can be read in
# one place; the figures are single-test durations measured on 2 shared cores.

#: Modules whose every test is in a tier.
MODULE_TIERS = {
    "test_package.py": ("package",),          # builds the Lambda package, unzips, replays
    "test_templates.py": ("package",),        # chalice package on the built project
    "test_prod_template.py": ("package",),    # the merge template on the built project
    "test_s3_model.py": ("package", "aws"),   # builds with a model in S3 on moto
    "test_deploy_emulator.py": ("package", "aws"),  # chalice deploy against moto
    "test_api_keys.py": ("package", "aws"),   # the key verbs after a deploy to moto
    "test_batch.py": ("aws",),                # S3 and SQS on moto
    "test_batch_template.py": ("package", "aws"),  # the batch stage packaged; its queues on moto
    "test_batch_bench.py": ("aws",),          # the batch benchmark: moto, worker processes
    "test_page_browser.py": ("browser",),     # Chromium through Playwright
    "test_every_estimator.py": ("slow",),     # every scikit-learn estimator, published and served
    "test_soak.py": ("slow",),
    "test_fuzz.py": ("slow",),                # hypothesis; `make harden` runs it at full size
    "test_fuzz_typed.py": ("slow",),          # hypothesis over the typed model families
    "test_hostile_artifacts.py": ("slow",),   # each technique in its own child interpreter
    "test_model_families.py": ("slow",),      # each family trained and published (20-30 s each)
    "test_user_code.py": ("slow",),           # publishes a pipeline with user code per test
    "test_publish.py": ("slow",),             # the publisher end to end; BLAS-kernel rebuilds
    "test_boosting.py": ("slow",),            # xgboost and lightgbm trained, published, packaged
    "test_model_dirs.py": ("slow",),          # publishes into project copies, rebuilds the bundled model
    "test_publish_everyday.py": ("slow",),    # DataFrame pipelines trained, published and served
    "test_protocol_fuzz.py": ("slow",),       # hypothesis over every protocol
    "test_mlflow_publish.py": ("slow",),      # a real mlflow server; models logged and published
    "test_mlflow_target.py": ("package", "aws", "slow"),  # mlflow deployments to moto, run-local
    "test_native_mutations.py": ("slow",),    # hypothesis mutates 13 tree families, each in a child
    "test_string_missing.py": ("slow",),      # imputed string pipelines trained and published
    "test_coverage_fuzz.py": ("slow",),       # atheris; `make harden` runs it at full length
}
#: Fixtures that put a test in a tier wherever it is used (directly or
#: through another fixture).
FIXTURE_TIERS = {
    "built_project": "package",
    "packaged": "package",                    # test_boosting, test_user_code: their own builds
    # models trained and published (publisher.publish, ONNX compilation) for a module
    "compiled": "slow",                       # test_onnx_runtime: every compiled family
    "byo_model_dir": "slow",                  # test_openapi
    "byo_files": "slow",                      # test_safe_loading: five models trained
}
#: Single tests over about 5 s in modules that are otherwise fast
#: (module -> test function names; every parameter of one).
#: Most publish a freshly trained model (publisher.publish: audit, ONNX
#: compilation, the agreement check: 20-80 s each here) or run a child
#: interpreter that imports scikit-learn.
SLOW_TESTS = {
    "test_load_budget_and_audit.py": {"test_publish_refuses_findings_unless_trusted",
                                      "test_the_app_refuses_the_same_findings_unless_trust_model_pickle",
                                      "test_publish_stores_the_audit_on_the_card"},
    "test_onnx_runtime.py": {"test_a_regressor_agrees_within_the_stated_tolerance",
                             "test_what_does_not_compile_is_served_by_scikit_learn_and_the_card_says_why",
                             "test_the_agreement_check_catches_a_graph_that_disagrees",
                             "test_publish_can_be_told_not_to_compile",
                             "test_a_compiled_dataframe_model_is_served_without_pandas"},
    "test_openapi.py": {"test_schemathesis_finds_no_5xx_and_no_nonconformance"},
    "test_safe_loading.py": {"test_every_payload_runs_under_plain_joblib_load",
                             "test_publish_refuses_without_side_effects",
                             "test_publish_cli_subprocess_refuses",
                             "test_legitimate_models_publish_and_serve"},
    "test_public_endpoint.py": {"test_an_invalid_api_auth_fails_chalice_loudly"},
    "test_older_sklearn.py": {"test_a_model_without_a_build_environment_is_refused_with_the_two_choices"},
    "test_trial_load.py": {"test_control_in_process_the_same_artifact_outruns_its_budget",
                           "test_control_in_process_the_same_artifact_passes_a_512_mb_lambda",
                           "test_quadratic_c_work_after_unpickling_is_a_503_at_the_deadline",
                           "test_memory_spent_after_unpickling_is_a_503_within_a_512_mb_lambda"},
    "test_chalice_local.py": {"test_make_serve_keeps_serving_while_its_files_are_read"},
    "test_protocols.py": {"test_multilabel_model_outputs_are_tensors",
                          "test_text_model_in_every_protocol",
                          "test_typed_dataframe_model_in_every_protocol"},
}
CHROMIUM = "/usr/bin/chromium"


def _in_ci():
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(config, items):
    chromium = os.access(CHROMIUM, os.X_OK)
    for item in items:
        module = item.path.name
        tiers = set(MODULE_TIERS.get(module, ()))
        tiers.update(tier for name, tier in FIXTURE_TIERS.items()
                     if name in getattr(item, "fixturenames", ()))
        if item.originalname in SLOW_TESTS.get(module, ()):
            tiers.add("slow")
        for tier in sorted(tiers):
            item.add_marker(tier)
        if "built_project" in getattr(item, "fixturenames", ()) and module not in BUILT_MODULES:
            raise pytest.UsageError("%s uses built_project: add it to BUILT_MODULES" % module)
        # Elsewhere (a Mac, a laptop without Debian's Chromium) the browser
        # test says why it did not run; in CI it must run, so it fails there.
        if "browser" in tiers and not chromium and not _in_ci():
            item.add_marker(pytest.mark.skip(
                reason="%s is missing (apt-get install chromium; CI=1 makes this a failure)"
                % CHROMIUM))



# ---------------------------------------------------------------------------
# Two workers (`make test`, `make test-all`: pytest-xdist's -n 2). A module
# runs on one worker, in file order, so that its module-scoped fixtures (a
# trained zoo, a server) are made once and its running totals (the fuzz's
# case count) see all of its tests; the modules that share the one built
# Lambda package run on one worker too, so it is built once, not per worker.

#: The modules that use the ``built_project`` fixture (checked at collection).
BUILT_MODULES = {"test_api_keys.py", "test_batch_template.py", "test_deploy_emulator.py",
                 "test_package.py", "test_prod_template.py", "test_templates.py"}


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class ByModule(LoadScopeScheduling):
        """xdist's scope scheduling with a module (or the built package's
        modules together) as the scope."""

        def _split_scope(self, nodeid):
            module = nodeid.split("::", 1)[0]
            return "built_project" if os.path.basename(module) in BUILT_MODULES else module

    return ByModule(config, log)
