"""Build the Lambda deployment package and put it where Chalice will reuse it.

    .venv/bin/python -m tools.build_package [--project-dir DIR] [--stage prod]

Chalice caches its deployment package in ``.chalice/deployments/`` under a
name that hashes ``requirements.txt``, ``app.py``, ``chalicelib/`` and
``vendor/`` (and the Python version); when that file exists, ``chalice
deploy`` and ``chalice package`` print "Reusing existing deployment package"
and ship it as is. This build writes that very file, computed with Chalice's
own code, so plain ``chalice deploy --stage prod`` / ``chalice package --stage
prod OUT/`` ship the package built here instead of Chalice's untrimmed one
(61 MB zipped, over Lambda's 50 MiB direct-upload limit).

Steps, each of which fails loudly (exit status 2 and a message) instead of
leaving a broken or stale zip behind:

1. the pinned ``requirements.txt`` is downloaded as manylinux x86_64 wheels
   for the Lambda runtime (cp312, glibc 2.34: the platform tags Chalice
   itself asks pip for), no sdists, into ``build/wheels`` (a cache); every
   pin needs a compatible wheel and every dependency of a wheel needs a pin;
2. the wheels are unpacked into ``build/site``; the app files (the same ones
   Chalice packages: ``chalice/app.py``, ``chalice/__init__.py``, ``app.py``,
   ``chalicelib/``) and the contents of ``vendor/`` (the model) into
   ``build/app``; the model's sha256 must match its card;
3. **trace**: a fresh isolated interpreter (``-I -S -B``: no site-packages,
   nothing but those two directories and the standard library) imports the
   app under the stage's environment variables and calls ``app.app(event,
   context)`` with API Gateway proxy events of every request format and
   error case, recording every file opened (audit hook) and every shared
   object mapped (``/proc/self/maps``);
4. **trim**: what ships from the dependencies is what the trace used, at
   package granularity (see :func:`select_files`), extension modules
   stripped, every ``.py`` compiled to unchecked-hash ``.pyc``;
5. **verify**: the zip is unpacked into a read-only directory and the same
   requests are replayed there, isolated; every answer must equal the one
   from the untrimmed dependencies;
6. size limits are checked and the zip replaces any other in
   ``.chalice/deployments/``.
"""
import argparse
import contextlib
import csv
import hashlib
import io
import json
import os
import py_compile
import re
import shutil
import stat
import subprocess
import sys
import time
import zipfile

# Standard library only, here and below: this file also runs itself (the
# trace, the replay) in an isolated interpreter that sees nothing else.

TOOLS_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(TOOLS_DIR)
EVENTS_FILE = os.path.join(REPO_DIR, "tools", "lambda_events.py")

MiB = 1024 * 1024
ZIP_LIMIT = 50 * MiB        # Lambda: direct upload (what `chalice deploy` does)
ZIP_WARN = 40 * MiB
UNZIPPED_LIMIT = 250 * MiB  # Lambda: function + layers, unzipped
ZIP_DATE = (2020, 1, 1, 0, 0, 0)
VENDOR_DIR = "vendor"
MODEL_DIR = "model"          # where the app looks for its model, in the package
SKIP_DIRS = {"__pycache__"}
SKIP_SUFFIXES = (".pyc", ".pyo")


class BuildError(Exception):
    """The build cannot produce a package that works; the message says why."""


def log(msg):
    print("build: %s" % msg, flush=True)


def warn(msg):
    print("build: warning: %s" % msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# What Chalice would do: cache file name, app files, runtime, wheel tags.


class ChaliceView:
    """The parts of Chalice's packager this build must agree with, computed
    by Chalice's own code for ``project_dir`` and ``stage``."""

    def __init__(self, project_dir, stage):
        from chalice.config import Config
        from chalice.deploy.packager import DependencyBuilder, LambdaDeploymentPackager
        from chalice.utils import UI, OSUtils

        config_file = os.path.join(project_dir, ".chalice", "config.json")
        try:
            with open(config_file) as f:
                from_disk = json.load(f)
        except (OSError, ValueError) as exc:
            raise BuildError("cannot read %s: %s" % (config_file, exc)) from None
        if stage not in from_disk.get("stages", {}):
            raise BuildError("stage %r is not in %s" % (stage, config_file))
        config = Config(chalice_stage=stage, config_from_disk=from_disk,
                        user_provided_params={"project_dir": project_dir})
        if config.automatic_layer:
            raise BuildError("automatic_layer is set for stage %s: this build fills only "
                             "the function's package cache" % stage)
        self.architecture = config.lambda_architecture
        if self.architecture != "x86_64":
            raise BuildError("lambda_architecture %s: this build targets x86_64 only "
                             "(the trace runs the package on this machine)" % self.architecture)
        self.python_version = config.lambda_python_version        # 'python3.12'
        self.environment = dict(config.environment_variables or {})
        osutils = OSUtils()
        self.dependency_builder = DependencyBuilder(osutils, architecture=self.architecture)
        self.packager = LambdaDeploymentPackager(
            osutils=osutils, dependency_builder=self.dependency_builder, ui=UI(),
            architecture=self.architecture)
        self.abi = self.packager._RUNTIME_TO_ABI[self.python_version]  # 'cp312'
        self.platforms = self.dependency_builder._get_pip_platforms(self.abi)
        self.project_dir = project_dir
        expected_tag = "cpython-%s" % self.abi[2:]
        if sys.implementation.cache_tag != expected_tag:
            raise BuildError("this build runs on %s but the Lambda runtime is %s; run it "
                             "with the project's Python (%s)"
                             % (sys.implementation.cache_tag, self.python_version, expected_tag))

    def package_filename(self):
        return self.packager.deployment_package_filename(self.project_dir, self.python_version)

    def app_files(self):
        """(source, zip path) of app.py, chalicelib/ and Chalice's runtime,
        as Chalice packages them, minus bytecode caches."""
        for source, zip_path in self.packager._iter_app_filenames(self.project_dir):
            parts = zip_path.split("/")
            if SKIP_DIRS.intersection(parts) or zip_path.endswith(SKIP_SUFFIXES):
                continue
            yield source, zip_path

    def is_compatible_wheel(self, filename):
        return self.dependency_builder._is_compatible_wheel_filename(self.abi, filename)


def vendor_files(project_dir):
    """(source, zip path) of vendor/'s contents, following symlinks as Chalice does."""
    vendor = os.path.join(project_dir, VENDOR_DIR)
    for root, dirs, files in os.walk(vendor, followlinks=True):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
        for name in sorted(files):
            if name.endswith(SKIP_SUFFIXES):
                continue
            full = os.path.join(root, name)
            yield full, os.path.relpath(full, vendor).replace(os.sep, "/")


def settle_bytecode(project_dir):
    """Chalice's cache name hashes every file under chalicelib/, __pycache__
    included, so a .pyc written later (by the first test run or `chalice
    local`) would change the name and make Chalice build its own untrimmed
    package. Write now, exactly as the import system would, the .pyc that any
    later import on this Python would write; the name then stays put until a
    source changes."""
    libdir = os.path.join(project_dir, "chalicelib")
    for root, dirs, files in os.walk(libdir):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS]
        for name in files:
            if name.endswith(".py"):
                source = os.path.join(root, name)
                cfile = py_compile.importlib.util.cache_from_source(source)
                if _pyc_is_fresh(source, cfile):
                    continue
                py_compile.compile(source, cfile=cfile, doraise=True,
                                   invalidation_mode=py_compile.PycInvalidationMode.TIMESTAMP)


def _pyc_is_fresh(source, cfile):
    try:
        with open(cfile, "rb") as f:
            header = f.read(16)
    except OSError:
        return False
    import importlib.util
    if len(header) < 16 or header[:4] != importlib.util.MAGIC_NUMBER:
        return False
    flags = int.from_bytes(header[4:8], "little")
    if flags & 1:  # hash-based: valid for as long as the source hash matches
        return True
    st = os.stat(source)
    return (int.from_bytes(header[8:12], "little") == int(st.st_mtime) & 0xFFFFFFFF
            and int.from_bytes(header[12:16], "little") == st.st_size & 0xFFFFFFFF)


# --------------------------------------------------------------------------
# Dependencies: pinned requirements -> compatible wheels -> site directory.

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;#]+)\s*(?:#.*)?$")


def canonical(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(requirements):
    pins = {}
    with open(requirements) as f:
        for number, line in enumerate(f, 1):
            text = line.split("#", 1)[0].strip()
            if not text:
                continue
            match = _PIN.match(text)
            if not match:
                raise BuildError("%s:%d: %r is not an exact pin (name==version); the package "
                                 "is built from exact pins only" % (requirements, number, text))
            pins[canonical(match.group(1))] = match.group(2)
    if not pins:
        raise BuildError("%s pins nothing" % requirements)
    return pins


@contextlib.contextmanager
def locked(directory):
    """An exclusive lock on a cache directory shared by concurrent builds."""
    import fcntl
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, ".lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _wheel_for(pin_name, version, filenames):
    for filename in filenames:
        parts = filename[:-4].split("-")
        if len(parts) >= 5 and canonical(parts[0]) == pin_name and parts[1] == version:
            return filename
    return None


def download_wheels(view, pins, requirements, wheels_dir):
    """One compatible wheel per pin, in ``wheels_dir`` (kept between builds)."""
    with locked(wheels_dir):
        present = sorted(f for f in os.listdir(wheels_dir) if f.endswith(".whl"))
        chosen = {name: _wheel_for(name, version, present) for name, version in pins.items()}
        if all(chosen.values()) and all(view.is_compatible_wheel(w) for w in chosen.values()):
            log("wheels: all %d pins already in %s" % (len(pins), _rel(wheels_dir)))
        else:
            cmd = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check",
                   "--no-deps", "--only-binary=:all:", "--implementation", "cp",
                   "--python-version", view.abi[2] + "." + view.abi[3:], "--abi", view.abi,
                   "--abi", "abi3", "--abi", "none", "--dest", wheels_dir, "--progress-bar", "off",
                   "-r", requirements]
            for platform in view.platforms + ["any"]:
                cmd += ["--platform", platform]
            log("wheels: pip download for %s (%s) into %s"
                % (view.python_version, ", ".join(view.platforms[-2:]), _rel(wheels_dir)))
            proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            if proc.returncode != 0:
                missing = re.findall(r"No matching distribution found for (\S+)", proc.stdout)
                sys.stderr.write(proc.stdout)
                if missing:
                    raise BuildError(
                        "no wheel of %s fits the Lambda runtime (%s, x86_64, glibc <= %s); "
                        "pin a version that publishes a manylinux wheel for it"
                        % (", ".join(missing), view.python_version,
                           view.platforms[-2].split("_")[1] + "." + view.platforms[-2].split("_")[2]))
                raise BuildError("pip download failed (exit %d); see its output above"
                                 % proc.returncode)
            present = sorted(f for f in os.listdir(wheels_dir) if f.endswith(".whl"))
            chosen = {name: _wheel_for(name, version, present) for name, version in pins.items()}
    missing = sorted(name for name, wheel in chosen.items() if not wheel)
    if missing:
        raise BuildError("no wheel for %s after pip download" % ", ".join(missing))
    incompatible = sorted(w for w in chosen.values() if not view.is_compatible_wheel(w))
    if incompatible:
        raise BuildError("wheels not compatible with the Lambda runtime %s: %s"
                         % (view.python_version, ", ".join(incompatible)))
    wheels = [os.path.join(wheels_dir, chosen[name]) for name in sorted(chosen)]
    check_closure(wheels, pins, view)
    return wheels


# pandas and what only it needs. scikit-learn imports pandas whenever it is
# installed (sklearn.utils.fixes), so the trace alone would ship it for
# every model; the model decides instead.
PANDAS_GROUP = ("pandas", "python-dateutil", "pytz", "six", "tzdata")


def model_uses_pandas(artifact_path, card):
    """A model fitted on a DataFrame (the card's input), or one whose pickle
    names pandas (a pandas global, or ``set_output(transform="pandas")``)."""
    if card.get("input") == "dataframe":
        return True
    with open(artifact_path, "rb") as f:
        # lightgbm's Booster always records a "pandas_categorical" key (None
        # unless fitted on categorical DataFrame columns): not a use of pandas.
        return b"pandas" in f.read().replace(b"pandas_categorical", b"")


def drop_pandas_unless_used(wheels, artifact, card):
    if model_uses_pandas(artifact, card):
        log("pandas: shipped (the model takes a DataFrame or names pandas)")
        return wheels
    log("pandas: not shipped (the model neither takes a DataFrame nor names pandas)")
    return [w for w in wheels
            if canonical(os.path.basename(w).split("-")[0]) not in PANDAS_GROUP]


def check_closure(wheels, pins, view):
    """Every runtime dependency of every wheel must itself be pinned: the
    download uses --no-deps, so an unpinned one would be silently absent."""
    try:
        from packaging.requirements import Requirement
    except ImportError:
        from pip._vendor.packaging.requirements import Requirement
    env = {"python_version": view.abi[2] + "." + view.abi[3:],
           "python_full_version": view.abi[2] + "." + view.abi[3:] + ".0",
           "sys_platform": "linux", "platform_system": "Linux", "os_name": "posix",
           "platform_machine": "x86_64", "implementation_name": "cpython",
           "platform_python_implementation": "CPython", "extra": ""}
    problems = []
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as zf:
            metadata = next(n for n in zf.namelist()
                            if n.count("/") == 1 and n.endswith(".dist-info/METADATA"))
            text = zf.read(metadata).decode("utf-8")
        for line in text.splitlines():
            if not line:
                break  # end of headers
            if not line.startswith("Requires-Dist:"):
                continue
            req = Requirement(line.split(":", 1)[1].strip())
            if req.marker is not None and not req.marker.evaluate(env):
                continue
            name = canonical(req.name)
            if name not in pins:
                problems.append("%s requires %s, which requirements.txt does not pin"
                                % (os.path.basename(wheel).split("-")[0], req))
            elif not req.specifier.contains(pins[name], prereleases=True):
                problems.append("%s requires %s but requirements.txt pins %s"
                                % (os.path.basename(wheel).split("-")[0], req, pins[name]))
    if problems:
        raise BuildError("; ".join(problems))


def unpack_wheels(wheels, site_dir):
    """Install wheels the way Chalice does: contents at the root, the
    purelib/platlib parts of ``*.data`` merged in, other ``*.data`` dropped."""
    stamp = os.path.join(site_dir, ".wheels")
    wanted = "\n".join(os.path.basename(w) + " " + str(os.path.getsize(w)) for w in wheels)
    try:
        with open(stamp) as f:
            if f.read() == wanted:
                log("site: reusing %s" % _rel(site_dir))
                return
    except OSError:
        pass
    if os.path.isdir(site_dir):
        shutil.rmtree(site_dir)
    os.makedirs(site_dir)
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as zf:
            for info in zf.infolist():
                name = info.filename
                top = name.split("/", 1)[0]
                if top.endswith(".data"):
                    kind, _, rest = name[len(top) + 1:].partition("/")
                    if kind not in ("purelib", "platlib") or not rest:
                        continue
                    name = rest
                if name.endswith("/"):
                    continue
                target = os.path.join(site_dir, *name.split("/"))
                os.makedirs(os.path.dirname(target), exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
    with open(stamp, "w") as f:
        f.write(wanted)
    log("site: unpacked %d wheels into %s" % (len(wheels), _rel(site_dir)))


# --------------------------------------------------------------------------
# The app files and the model.


def stage_app(view, app_dir):
    """Copy what Chalice takes from the project (app files + vendor/) into
    ``app_dir``; return {zip path: source}."""
    if os.path.isdir(app_dir):
        shutil.rmtree(app_dir)
    entries = {}
    for source, zip_path in list(view.app_files()) + list(vendor_files(view.project_dir)):
        if zip_path in entries:
            raise BuildError("%s is both an app file and in vendor/" % zip_path)
        entries[zip_path] = source
        target = os.path.join(app_dir, *zip_path.split("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(source, target)  # follows symlinks, as Chalice does
    return entries


def model_dir_in_package(environment):
    configured = environment.get("MODEL_DIR")
    if not configured:
        return MODEL_DIR
    if not configured.startswith("/var/task/"):
        raise BuildError("MODEL_DIR=%s is outside the package (/var/task); the build "
                         "can only check a model inside it" % configured)
    return configured[len("/var/task/"):].strip("/")


def check_model(root, model_rel):
    """The model card and the artifact it names, inside the package, with a
    matching sha256; returns the card."""
    model_dir = os.path.join(root, *model_rel.split("/"))
    card_path = os.path.join(model_dir, "model.json")
    if not os.path.isfile(card_path):
        raise BuildError("the package has no model card %s/model.json: publish a model "
                         "(python -m model.publish) and keep vendor/model/ linking to it"
                         % model_rel)
    try:
        with open(card_path, "rb") as f:
            card = json.loads(f.read().decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise BuildError("%s/model.json is not valid JSON: %s" % (model_rel, exc)) from None
    artifact = card.get("artifact", "model.joblib") if isinstance(card, dict) else None
    if isinstance(artifact, str) and artifact.startswith("s3://"):
        return card  # fetched and checked by fetch_remote_artifact
    if not isinstance(artifact, str) or "/" in artifact:
        raise BuildError("%s/model.json names no valid artifact" % model_rel)
    artifact_path = os.path.join(model_dir, artifact)
    if not os.path.isfile(artifact_path):
        raise BuildError("the package has no model artifact %s/%s" % (model_rel, artifact))
    actual = _sha256(artifact_path)
    if actual != card.get("sha256"):
        raise BuildError("%s/%s has sha256 %s but its card says %s"
                         % (model_rel, artifact, actual, card.get("sha256")))
    return card


def fetch_remote_artifact(project_dir, stage, card, build_dir):
    """For a card naming its artifact in S3: check the stage policy grants
    exactly that object, then download it (the build's own AWS credentials,
    or ``AWS_ENDPOINT_URL``) into ``build/model-cache``, verified with the
    app's own code. The trace and the replay run with ``MODEL_CACHE_DIR``
    there, so the app finds the verified copy and never imports boto3: the
    package ships no boto3 (the Lambda runtime has it). Returns the path."""
    from tools import model_policy
    uri = card["artifact"]
    try:
        with open(model_policy.policy_path(project_dir, stage)) as f:
            model_policy.check(json.load(f), card)
    except (model_policy.PolicyError, OSError, ValueError) as exc:
        raise BuildError(str(exc)) from None
    log("policy: the stage grants s3:GetObject on %s and no other S3 access"
        % model_policy.object_arn(uri))
    if REPO_DIR not in sys.path:
        sys.path.insert(0, REPO_DIR)
    from chalicelib import remote_artifact
    from chalicelib.errors import ModelLoadError
    try:
        path = remote_artifact.fetch(uri, card.get("sha256"), os.path.join(build_dir, "model-cache"))
    except ModelLoadError as exc:
        raise BuildError("the model artifact cannot be fetched for the trace: %s" % exc) from None
    log("model: artifact %s (%.1f MiB, not in the package) fetched, sha256 matches its card"
        % (uri, os.path.getsize(path) / MiB))
    return path


def check_policy_has_no_s3(project_dir, stage, card):
    """A model shipped in the package: the role needs no S3 at all."""
    from tools import model_policy
    try:
        with open(model_policy.policy_path(project_dir, stage)) as f:
            model_policy.check(json.load(f), card)
    except (model_policy.PolicyError, OSError, ValueError) as exc:
        raise BuildError(str(exc)) from None


# --------------------------------------------------------------------------
# Trace and replay: run the app in an isolated interpreter.


def run_exercise(paths, environment, model_rel, out_file, cwd, timeout=300):
    """Run :func:`exercise` in ``python -I -S -B`` with only ``paths`` (and the
    standard library) importable; return its JSON report."""
    env = {k: v for k, v in os.environ.items()
           if k in ("PATH", "LANG", "LC_ALL", "TMPDIR", "HOME")}
    env.update(environment)
    env.update({"AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1",
                "AWS_LAMBDA_FUNCTION_NAME": "sklearn-serverless-prod",
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
                "LAMBDA_TASK_ROOT": paths[0], "PYTHONDONTWRITEBYTECODE": "1",
                # Lambda's, with /var/task -> paths[0] (its system dirs come first there)
                "LD_LIBRARY_PATH": os.pathsep.join([os.path.join(paths[0], RUNTIME_LIB_DIR),
                                                    paths[0]])})
    env.pop("AWS_CHALICE_CLI_MODE", None)
    cmd = [sys.executable, "-I", "-S", "-B", os.path.abspath(__file__), "--exercise",
           "--paths", os.pathsep.join(paths), "--model-rel", model_rel, "--out", out_file]
    proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout)
    if proc.returncode != 0 or not os.path.isfile(out_file):
        sys.stderr.write(proc.stdout[-20000:])
        raise BuildError("running the app isolated from %s failed (exit %d); see above"
                         % (_rel(paths[0]), proc.returncode))
    with open(out_file) as f:
        return json.load(f)


def exercise_requests(card, max_rows):
    """(name, event, expected statuses) for every request format and error
    case of the contract, built from the model's card."""
    spec = _load_events()
    features = card["features"]
    names = [f["name"] for f in features]
    n = len(names)
    rows = [[_typed_value(f, i, k) for i, f in enumerate(features)] for k in range(3)]
    row = rows[0]
    js = json.dumps
    post = spec.post_model
    objects = [dict(zip(names, r)) for r in rows]
    rev = list(reversed(names))
    ok, proba = {200}, {200, 422}
    numeric = all(f.get("type", "number") == "number" for f in features)
    # A typed value may be the right answer where a number schema refuses.
    typed = {200, 422} if not numeric else set()
    csv_rows = _csv_text(rows)
    header_rev = _csv_text([rev] + [list(reversed(r)) for r in rows])
    cases = [
        ("instances-lists", post(js({"instances": rows})), ok),
        ("instances-ints", post(js({"instances": [[int(v) if numeric else v for v in row]]})), ok),
        ("instances-objects", post(js({"instances": objects})), ok),
        ("dataframe-split", post(js({"dataframe_split": {"columns": names, "data": rows}})), ok),
        ("dataframe-split-reordered", post(js({"dataframe_split": {
            "columns": rev, "data": [list(reversed(r)) for r in rows], "index": [0, 1, 2]}})), ok),
        ("dataframe-records", post(js({"dataframe_records": objects})), ok),
        ("csv", post(csv_rows, "text/csv"), ok),
        ("csv-header-reordered", post(header_rev, "text/csv; charset=utf-8"), ok),
        ("csv-probabilities", post(csv_rows, "text/csv", query={"probabilities": "true"}), proba),
        ("probabilities", post(js({"instances": rows, "probabilities": True})), proba),
        ("no-content-type", post(js({"instances": rows}), None), ok),
        ("base64", post(js({"instances": rows}).encode(), "application/json"), ok),
        ("big-batch", post(js({"instances": [row] * min(max_rows, 2000)})), ok),
        ("malformed-json", post('{"instances": [[1, 2'), {400}),
        ("empty-body", post(""), {400}),
        ("not-object", post(js([row])), {400}),
        ("unknown-key", post(js({"rows": rows})), {400}),
        ("two-formats", post(js({"instances": rows, "dataframe_records": objects})), {400}),
        ("bad-probabilities", post(js({"instances": rows, "probabilities": "yes"})), {400}),
        ("bad-probabilities-query", post(csv_rows, "text/csv",
                                         query={"probabilities": "maybe"}), {400}),
        ("duplicate-key", post('{"instances": [], "instances": []}'), {400}),
        ("bad-utf8", post(b'{"instances": [[\xff]]}', "application/json"), {400}),
        ("bad-base64", dict(post("not base64!!", "application/json"), isBase64Encoded=True),
         {400}),
        ("row-not-list", post(js({"instances": [row, 5]})), {400, 422}),
        ("text-plain", post(js({"instances": rows}), "text/plain"), {415}),
        ("bad-charset", post(js({"instances": rows}), "application/json; charset=latin-1"),
         {415}),
        ("too-many-rows", post(js({"instances": [row] * (max_rows + 1)})), {413}),
        ("too-many-csv-rows", post(_csv_text([row] * (max_rows + 1)), "text/csv"), {413}),
        ("wrong-count", post(js({"instances": [row + [1.0]]})), {422, 400}),
        ("non-numeric", post(js({"instances": [[str(v) for v in row]]})), {422} | typed),
        ("boolean", post(js({"instances": [[True] + row[1:]]})), {422} | typed),
        ("null", post(js({"instances": [[None] + row[1:]]})), {200, 422}),
        ("nan", post('{"instances": [[NaN%s]]}' % "".join(", %s" % js(v) for v in row[1:])),
         {200, 422}),
        ("infinity", post('{"instances": [[Infinity%s]]}' % "".join(", %s" % js(v)
                                                                 for v in row[1:])), {422}),
        ("huge-number", post(js({"instances": [[10 ** 400] + row[1:]]})), {422}),
        ("unknown-feature", post(js({"instances": [dict(objects[0], bogus=1)]})), {422}),
        ("missing-feature", post(js({"dataframe_records": [
            {k: v for k, v in objects[0].items() if k != names[0]}]})), {422}),
        ("csv-wrong-count", post(csv_rows + ",9", "text/csv"), {422}),
        ("csv-non-numeric", post("abc" + csv_rows[csv_rows.index(","):] if n > 1 else "1e",
                                 "text/csv"), {422, 400} | typed),
        ("csv-malformed", post('"unterminated\n1,2', "text/csv"), {400, 422}),
        ("csv-empty", post("\n\n", "text/csv"), {400}),
        ("get-card", spec.get("/model"), ok),
        ("health", spec.get("/health"), ok),
        ("try-it-page", spec.get("/"), ok),
    ]
    return cases + protocol_requests(card, rows, objects, numeric)


def protocol_requests(card, rows, objects, numeric):
    """The peers' protocols (chalicelib/protocols): every body format and
    answer type they read and write, and their error shapes. Number-only
    bodies (NPY, float tensors) only for a card of numbers; for a typed card
    a typed value may be refused where the card's schema says so."""
    import struct
    spec = _load_events()
    js = json.dumps
    names = [f["name"] for f in card["features"]]
    name, n = card["name"], len(names)
    ok = {200}
    valid = ok if numeric else {200, 422}

    def post(path, body, content_type="application/json", resource=None, params=None,
             accept=None, extra=None):
        headers = {"Content-Type": content_type} if content_type else {}
        if accept:
            headers["Accept"] = accept
        headers.update(extra or {})
        return spec.rest_event("POST", path, body=body, headers=headers,
                               resource=resource or path, path_params=params)

    v1 = ("/v1/models/{segment}", {"segment": name + ":predict"})
    v2 = ("/v2/models/{name}/infer", {"name": name})
    v2_types = {"integer": "INT64", "boolean": "BOOL", "string": "BYTES", "text": "BYTES"}
    columns = [{"name": f["name"], "shape": [len(rows)],
                "datatype": v2_types.get(f.get("type"), "FP64"),
                "data": [r[j] for r in rows]} for j, f in enumerate(card["features"])]
    csv_rows = _csv_text(rows)
    pandas_csv = _csv_text([[""] + names] + [[i] + list(r) for i, r in enumerate(rows)])
    cases = [
        ("ping", spec.get("/ping"), ok),
        ("version", spec.get("/version"), ok),
        ("mlflow-split", post("/invocations", js({"dataframe_split": {
            "columns": names, "data": rows, "index": list(range(len(rows)))}})), valid),
        ("mlflow-inputs-params", post("/invocations", js({
            "inputs": rows, "params": {"probabilities": True}})), {200, 422}),
        ("mlflow-inputs-columns", post("/invocations", js({"inputs": {
            f: [r[j] for r in rows] for j, f in enumerate(names)}})), valid),
        ("mlflow-records", post("/invocations", js({"dataframe_records": objects})), valid),
        ("mlflow-csv-pandas", post("/invocations", pandas_csv, "text/csv"), valid),
        ("mlflow-bad-value", post("/invocations", js({"inputs": [[None, [1]] * n]})), {400, 422}),
        ("sagemaker-csv-csv", post("/invocations", csv_rows, "text/csv", accept="text/csv"),
         valid),
        ("sagemaker-json-rows", post("/invocations", js(rows), accept="application/json"),
         valid),
        ("sagemaker-npy-bad", post("/invocations", b"\x93NUMPY garbage", "application/x-npy"),
         {400}),
        ("sagemaker-406", post("/invocations", csv_rows, "text/csv", accept="image/png"), {406}),
        ("invocations-415", post("/invocations", "x", "text/plain"), {415}),
        ("v1-models", spec.get("/v1/models"), ok),
        ("v1-ready", spec.get("/v1/models/" + name, "/v1/models/{segment}",
                              {"segment": name}), ok),
        ("v1-predict", post("/v1/models/%s:predict" % name,
                            js({"instances": rows}), resource=v1[0], params=v1[1]), valid),
        ("v1-inputs", post("/v1/models/%s:predict" % name, js({"inputs": objects}),
                           resource=v1[0], params=v1[1]), valid),
        ("v1-unknown-model", post("/v1/models/other:predict", js({"instances": rows}),
                                  resource=v1[0], params={"segment": "other:predict"}), {404}),
        ("v2-server", spec.get("/v2"), ok),
        ("v2-live", spec.get("/v2/health/live"), ok),
        ("v2-ready", spec.get("/v2/health/ready"), ok),
        ("v2-metadata", spec.get("/v2/models/" + name, "/v2/models/{name}", {"name": name}),
         ok),
        ("v2-model-ready", spec.get("/v2/models/%s/ready" % name, "/v2/models/{name}/ready",
                                    {"name": name}), ok),
        ("v2-infer-columns", post("/v2/models/%s/infer" % name, js({"inputs": columns}),
                                  resource=v2[0], params=v2[1]), valid),
        ("v2-bad-datatype", post("/v2/models/%s/infer" % name, js({
            "inputs": [dict(columns[0], datatype="FP128")]}),
            resource=v2[0], params=v2[1]), {400}),
    ]
    if not numeric:
        return cases
    # NumPy's .npy format, written by hand (header + little-endian float64),
    # since this runs on the standard library only.
    header = "{'descr': '<f8', 'fortran_order': False, 'shape': (%d, %d), }" % (len(rows), n)
    header += " " * (63 - (len(header) + 10) % 64) + "\n"
    npy = (b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode()
           + struct.pack("<%dd" % (len(rows) * n), *[v for r in rows for v in r]))
    tensor = {"name": "input-0", "shape": [len(rows), n], "datatype": "FP64"}
    binary = struct.pack("<%df" % (len(rows) * n), *[v for r in rows for v in r])
    binary_head = js({"inputs": [dict(tensor, datatype="FP32",
                                      parameters={"binary_data_size": len(binary)})]})
    return cases + [
        ("sagemaker-npy-npy", post("/invocations", npy, "application/x-npy",
                                   accept="application/x-npy"), ok),
        ("v2-infer-rows", post("/v2/models/%s/infer" % name, js({
            "id": "1", "inputs": [dict(tensor, data=rows)]}), resource=v2[0], params=v2[1]),
         ok),
        ("v2-infer-binary", post(
            "/v2/models/%s/infer" % name, binary_head.encode() + binary,
            "application/octet-stream", resource=v2[0], params=v2[1],
            extra={"Inference-Header-Content-Length": str(len(binary_head))}), ok),
    ]


def _typed_value(feature, i, k):
    """Row ``k``'s value of feature ``i``, of the feature's card type."""
    kind = feature.get("type", "number")
    categories = feature.get("categories")
    if categories:
        return categories[k % len(categories)]
    if kind == "integer":
        return i + k
    if kind == "boolean":
        return k % 2 == 0
    if kind == "string":
        return "value %d" % k
    if kind == "text":
        return "an example text, number %d" % k
    return [round(0.5 + 0.75 * i, 2), round(1.5 + 0.25 * i, 2), float(i)][k]


def _csv_text(rows):
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(
        [["true" if v is True else "false" if v is False else v for v in r] for r in rows])
    return out.getvalue()


_EVENTS = None


def _load_events():
    global _EVENTS
    if _EVENTS is None:
        import importlib.util
        spec = importlib.util.spec_from_file_location("lambda_events", EVENTS_FILE)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _EVENTS = module
    return _EVENTS


def exercise(paths, model_rel, out_file):
    """In the isolated interpreter: import the app, answer every request,
    report the answers and what was loaded."""
    opened = {}

    def audit(event, args):
        if event == "open" and args and isinstance(args[0], (str, bytes)):
            path = os.path.abspath(args[0] if isinstance(args[0], str) else os.fsdecode(args[0]))
            opened[path] = opened.get(path, 0) + 1
        elif event == "ctypes.dlopen" and args and isinstance(args[0], str):
            opened[args[0]] = opened.get(args[0], 0) + 1

    sys.addaudithook(audit)
    stdlib = [p for p in sys.path if p]
    sys.path[:] = list(paths) + stdlib
    events = _load_events()  # loaded by path from the repo: not part of the package
    started = time.perf_counter()
    import app as app_module  # noqa: E402  (the package's app.py)
    import_seconds = time.perf_counter() - started
    with open(os.path.join(paths[0], *model_rel.split("/"), "model.json"), "rb") as f:
        card = json.loads(f.read().decode("utf-8"))
    max_rows = int(os.environ.get("MAX_ROWS") or 10000)
    results = []
    context = events.LambdaContext()
    for name, event, expected in exercise_requests(card, max_rows):
        response = app_module.app(event, context)
        body = response.get("body")
        results.append({"name": name, "status": response.get("statusCode"),
                        "expected": sorted(expected), "body": body,
                        "content_type": (response.get("headers") or {}).get("Content-Type")})
    with open("/proc/self/maps") as f:
        mapped = sorted({line.split(None, 5)[5].strip() for line in f
                         if len(line.split(None, 5)) == 6 and "/" in line})
    modules = sorted((name, getattr(m, "__file__", None)) for name, m in list(sys.modules.items())
                     if getattr(m, "__file__", None))
    with open(out_file, "w") as f:
        json.dump({"results": results, "opened": sorted(opened), "mapped": mapped,
                   # a source opened again after its import was read as data
                   # (inspect.getsource, linecache): it must ship as source
                   "reread": sorted(p for p, n in opened.items() if n > 1 and p.endswith(".py")),
                   "modules": modules, "import_seconds": import_seconds,
                   "sys_path": sys.path}, f, indent=1)


def check_results(report, where):
    bad = [r for r in report["results"] if r["status"] not in r["expected"]]
    if bad:
        raise BuildError("the app %s answered unexpectedly: %s" % (where, "; ".join(
            "%s -> %s %s" % (r["name"], r["status"], (r["body"] or "")[:300]) for r in bad)))


# --------------------------------------------------------------------------
# Trimming: what ships from the dependencies.


def select_files(site_dir, report):
    """The files of ``site_dir`` that ship, as sorted relative paths.

    Rules (proven by the package test with two model families):

    * every Python package (directory with ``__init__.py``) from which the
      trace imported a module ships all of its ``.py`` modules (not its
      subpackages): a module imported lazily on a path the trace did not
      take is then still there, while untouched subpackages (scipy.io,
      sklearn.datasets, numpy.f2py, ...) stay out;
    * extension modules (``.so``) ship only if the trace loaded them;
    * every file the trace opened ships (data files, ``METADATA`` read by
      importlib.metadata), and every shared library it mapped (``*.libs/``);
      plus the ``*.libs/`` libraries that a shipped extension links to
      (DT_NEEDED), which the dynamic loader needs whatever the trace did;
    * every ``*.dist-info`` directory ships (small; importlib.metadata
      finds distributions through them), minus ``RECORD`` (its hashes
      would not match the stripped, trimmed files);
    * nothing from ``tests/`` ships except what the trace imported
      (``numpy/_core/tests/_natype.py`` is imported at run time);
    * a module whose source the trace read after importing it (the app's
      restricted unpickler checks joblib's source with ``inspect.getsource``)
      ships its ``.py`` too: returned as the second set.
    """
    site_dir = os.path.abspath(site_dir)
    prefix = site_dir + os.sep
    used = set()
    for path in list(report["opened"]) + list(report["mapped"]):
        path = os.path.normpath(path)
        if path.startswith(prefix) and os.path.isfile(path):
            used.add(os.path.relpath(path, site_dir))
    for _, path in report["modules"]:
        if path and path.startswith(prefix):
            used.add(os.path.relpath(path, site_dir))
    keep = set(used)
    package_dirs = set()
    for rel in used:
        if rel.endswith(".py") or rel.endswith(".so"):
            directory = os.path.dirname(rel)
            while directory:
                package_dirs.add(directory)
                directory = os.path.dirname(directory)
    for directory in package_dirs:
        if "tests" in directory.split(os.sep):
            continue  # only what was imported from a tests/ folder
        full = os.path.join(site_dir, directory)
        if not os.path.isfile(os.path.join(full, "__init__.py")):
            continue
        for name in os.listdir(full):
            if name.endswith(".py"):
                keep.add(os.path.join(directory, name))
    for name in os.listdir(site_dir):
        if name.endswith(".dist-info"):
            for root, _, files in os.walk(os.path.join(site_dir, name)):
                for f in files:
                    if f != "RECORD":
                        keep.add(os.path.relpath(os.path.join(root, f), site_dir))
    # Libraries the shipped extensions link to (the loader needs them).
    libs = {}
    for name in os.listdir(site_dir):
        if name.endswith(".libs") and os.path.isdir(os.path.join(site_dir, name)):
            for lib in os.listdir(os.path.join(site_dir, name)):
                libs.setdefault(lib, os.path.join(name, lib))
    pending = [rel for rel in keep if _is_shared_object(rel)]
    seen = set()
    while pending:
        rel = pending.pop()
        if rel in seen:
            continue
        seen.add(rel)
        for needed in _needed(os.path.join(site_dir, rel)):
            if needed in libs and libs[needed] not in keep:
                keep.add(libs[needed])
                pending.append(libs[needed])
    sources = {os.path.relpath(p, site_dir) for p in report.get("reread", ())
               if p.startswith(prefix)}
    return sorted(keep), sources


#: Where a shared library the runtime may lack ships: Lambda's
#: LD_LIBRARY_PATH ends with /var/task/lib (after the runtime's own /lib64,
#: so a system copy, if the runtime has one, still wins).
RUNTIME_LIB_DIR = "lib"
OPENMP = "libgomp.so.1"


def ship_openmp_runtime(site_dir, keep):
    """A shipped extension that links to ``libgomp.so.1`` by that plain name
    (lightgbm's ``lib_lightgbm.so``; wheels that vendor it, as scikit-learn
    and xgboost-cpu do, link to a renamed copy in their ``*.libs``) gets
    one in ``lib/``: Lambda's python runtimes have been reported without
    libgomp (dmlc/xgboost#11048, python3.9), and the manylinux policy lets
    wheels assume it is there. The copy is a wheel's vendored libgomp
    (built for manylinux2014, glibc 2.17), never this machine's. Returns
    ``keep`` with it added, or unchanged."""
    users = [rel for rel in keep if _is_shared_object(rel)
             and OPENMP in _needed(os.path.join(site_dir, rel))]
    if not users:
        return keep
    vendored = sorted(os.path.join(name, lib) for name in os.listdir(site_dir)
                      if name.endswith(".libs") and os.path.isdir(os.path.join(site_dir, name))
                      for lib in os.listdir(os.path.join(site_dir, name))
                      if lib.startswith("libgomp"))
    if not vendored:
        raise BuildError("%s need %s, which no wheel vendors and the Lambda runtime may lack"
                         % (", ".join(sorted(users)), OPENMP))
    target = os.path.join(site_dir, RUNTIME_LIB_DIR, OPENMP)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    shutil.copyfile(os.path.join(site_dir, vendored[0]), target)
    log("openmp: %s need %s; shipping %s as %s/%s"
        % (", ".join(sorted(users)), OPENMP, vendored[0], RUNTIME_LIB_DIR, OPENMP))
    return sorted(set(keep) | {os.path.join(RUNTIME_LIB_DIR, OPENMP)})


def _is_shared_object(rel):
    return rel.endswith(".so") or ".so." in os.path.basename(rel)


def _needed(path):
    """DT_NEEDED entries of an ELF64 little-endian shared object (what the
    dynamic loader will load with it); plain Python, no binutils needed."""
    import struct
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise BuildError("%s is not a 64-bit little-endian ELF file" % path)
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize)
                for i in range(shnum)]
    needed = []
    for _, sh_type, _, _, offset, size, link, _, _, entsize in sections:
        if sh_type != 6:  # SHT_DYNAMIC
            continue
        strtab_offset = sections[link][4]
        for pos in range(offset, offset + size, entsize or 16):
            tag, value = struct.unpack_from("<qQ", data, pos)
            if tag == 0:  # DT_NULL
                break
            if tag == 1:  # DT_NEEDED
                end = data.index(b"\0", strtab_offset + value)
                needed.append(data[strtab_offset + value:end].decode())
    return needed


def _rel(path):
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return path if rel.startswith("..") else rel


# --------------------------------------------------------------------------
# Assembly: the package tree, bytecode, the zip, the replay.


#: Packages that build docstrings from other docstrings at import
#: (lightgbm/dask.py: ``__doc__.partition``): compiled without -OO's
#: docstring removal (optimize at most 1), or they fail to import.
READS_OWN_DOCSTRINGS = frozenset({"lightgbm"})


def assemble(site_dir, keep, sources, app_dir, pkg_dir, keep_sources, optimize):
    """Lay out the package in ``pkg_dir``: the kept dependency files
    (extension modules stripped), the app files, and bytecode for every
    module (Lambda's /var/task is read-only: without bytecode every cold
    start compiles every module it imports, and caches nothing).

    * app files (``app.py``, ``chalicelib/``, ``chalice/``): source plus an
      unchecked-hash ``__pycache__/*.cpython-312.pyc``, compiled as usual
      (asserts and docstrings kept), so their tracebacks show source lines;
    * dependencies: by default *sourceless* bytecode (``module.pyc`` in place
      of ``module.py``, which CPython imports directly) compiled at
      ``optimize`` (2: without docstrings and asserts, as ``python -OO``
      would); with ``keep_sources`` the source stays too and the bytecode
      goes to ``__pycache__`` (unchecked hash); so it does for the modules in
      ``sources``, whose source the app reads at run time."""
    _make_writable(pkg_dir)
    if os.path.isdir(pkg_dir):
        shutil.rmtree(pkg_dir)
    strip = shutil.which("strip")
    if strip is None:
        warn("`strip` (binutils) not found: extension modules ship unstripped")
    to_strip = []
    for rel in keep:
        target = os.path.join(pkg_dir, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(os.path.join(site_dir, rel), target)
        top = rel.split(os.sep, 1)[0]
        if strip and rel.endswith(".so") and not top.endswith(".libs") \
                and top != RUNTIME_LIB_DIR:
            to_strip.append(target)  # never the vendored libraries: breaks OpenBLAS
    for start in range(0, len(to_strip), 50):
        subprocess.run([strip, "--strip-unneeded"] + to_strip[start:start + 50], check=True)
    for root, dirs, files in os.walk(app_dir):
        for name in files:
            source = os.path.join(root, name)
            rel = os.path.relpath(source, app_dir)
            target = os.path.join(pkg_dir, rel)
            if os.path.exists(target):
                raise BuildError("%s is both an app file and a dependency file" % rel)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copyfile(source, target)
    import importlib.util
    app_files = set()
    for root, dirs, files in os.walk(app_dir):
        for name in files:
            app_files.add(os.path.relpath(os.path.join(root, name), app_dir))
    for root, dirs, files in os.walk(pkg_dir):
        for name in files:
            if not name.endswith(".py"):
                continue
            source = os.path.join(root, name)
            rel = os.path.relpath(source, pkg_dir)
            is_app = rel in app_files
            sourceless = not (is_app or keep_sources or rel in sources)
            cfile = source + "c" if sourceless else importlib.util.cache_from_source(source)
            level = 0 if is_app else optimize
            if rel.split(os.sep, 1)[0] in READS_OWN_DOCSTRINGS:
                level = min(level, 1)
            py_compile.compile(source, cfile=cfile, dfile="/var/task/" + rel.replace(os.sep, "/"),
                               doraise=True, optimize=level,
                               invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
            if sourceless:
                os.remove(source)


def write_zip(pkg_dir, zip_path, compresslevel):
    """Deterministic zip: sorted entries, fixed timestamps, world-readable
    modes (Lambda runs the code as another user than the one who zipped)."""
    entries = []
    for root, dirs, files in os.walk(pkg_dir):
        for name in files:
            full = os.path.join(root, name)
            entries.append((os.path.relpath(full, pkg_dir).replace(os.sep, "/"), full))
    entries.sort()
    tmp = zip_path + ".tmp"
    unzipped = 0
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=compresslevel) as zf:
        for arcname, full in entries:
            info = zipfile.ZipInfo(arcname, ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            executable = os.stat(full).st_mode & stat.S_IXUSR or arcname.endswith(".so") \
                or ".so." in arcname
            info.external_attr = ((0o100755 if executable else 0o100644) & 0xFFFF) << 16
            with open(full, "rb") as f:
                data = f.read()
            unzipped += len(data)
            zf.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED,
                        compresslevel=compresslevel)
    os.replace(tmp, zip_path)
    return {"zipped": os.path.getsize(zip_path), "unzipped": unzipped, "files": len(entries)}


def extract_read_only(zip_path, target):
    """Unzip like Lambda does into a read-only tree (as /var/task is)."""
    _make_writable(target)
    if os.path.isdir(target):
        shutil.rmtree(target)
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(target)
    for root, dirs, files in os.walk(target, topdown=False):
        for name in files:
            os.chmod(os.path.join(root, name), 0o444)
        os.chmod(root, 0o555)


def check_size(sizes, direct_upload=False):
    """The budget under each of Lambda's limits, and the deploy route that
    fits: ``chalice deploy`` uploads the zip directly (50 MiB zipped); over
    that, the CloudFormation route (``make package``, then ``aws
    cloudformation package`` + ``deploy``, the zip going through S3) allows
    up to 250 MiB unzipped. ``direct_upload`` (``make deploy``) makes the
    50 MiB limit an error."""
    zipped, unzipped = sizes["zipped"], sizes["unzipped"]
    log("budget: %.1f MiB zipped (%.1f MiB left under the 50 MiB direct upload), "
        "%.1f MiB unzipped (%.1f MiB left under 250 MiB)"
        % (zipped / MiB, (ZIP_LIMIT - zipped) / MiB, unzipped / MiB,
           (UNZIPPED_LIMIT - unzipped) / MiB))
    if unzipped > UNZIPPED_LIMIT:
        raise BuildError("the package is %.1f MiB unzipped, over Lambda's 250 MiB limit"
                         % (unzipped / MiB))
    if zipped > ZIP_LIMIT:
        message = ("the package is %.1f MiB zipped, over Lambda's 50 MiB limit for a direct "
                   "upload (what `chalice deploy` does)" % (zipped / MiB))
        if direct_upload:
            raise BuildError(message + "; deploy it through S3 instead: `make package`, then "
                             "`aws cloudformation package` + `aws cloudformation deploy` "
                             "(README, Deploying)")
        warn(message + ": deploy it with `make package` and `aws cloudformation package` + "
             "`deploy` (the zip goes through S3; README, Deploying), not `make deploy`")
    elif zipped > ZIP_WARN:
        warn("the package is %.1f MiB zipped: within 50 MiB, but above the 40 MiB aimed for"
             % (zipped / MiB))


def compare_replay(trace, replay, package_dir):
    expected = {r["name"]: r for r in trace["results"]}
    diffs = []
    for r in replay["results"]:
        e = expected.get(r["name"])
        if e is None or (e["status"], e["body"], e["content_type"]) != \
                (r["status"], r["body"], r["content_type"]):
            diffs.append("%s: %s %s (untrimmed: %s %s)" % (
                r["name"], r["status"], (r["body"] or "")[:200],
                e and e["status"], e and (e["body"] or "")[:200]))
    if diffs:
        raise BuildError("the trimmed package answers differently from the untrimmed "
                         "dependencies: " + "; ".join(diffs))
    root = os.path.abspath(package_dir) + os.sep
    stdlib = os.path.abspath(sys.base_prefix) + os.sep
    ignored = ("__main__", "__mp_main__", "lambda_events")  # the runner itself
    strays = [f for name, f in replay["modules"] if name not in ignored
              and not (os.path.abspath(f).startswith(root) or os.path.abspath(f).startswith(stdlib))]
    if strays:
        raise BuildError("the isolated replay imported from outside the package: %s"
                         % ", ".join(strays[:5]))
    missing_pyc = [f for name, f in replay["modules"] if os.path.abspath(f).startswith(root)
                   and f.endswith(".py")
                   and not os.path.exists(__import__("importlib.util").util.cache_from_source(f))]
    if missing_pyc:
        raise BuildError("modules without bytecode in the package: %s" % ", ".join(missing_pyc[:5]))


def build(project_dir, stage="prod", wheels_dir=None, keep_sources=False, optimize=2,
          compresslevel=9, direct_upload=False):
    started = time.perf_counter()
    project_dir = os.path.abspath(project_dir)
    build_dir = os.path.join(project_dir, "build")
    wheels_dir = os.path.abspath(wheels_dir or os.path.join(build_dir, "wheels"))
    view = ChaliceView(project_dir, stage)
    settle_bytecode(project_dir)
    package_path = view.package_filename()
    app_dir = os.path.join(build_dir, "app")
    stage_app(view, app_dir)
    model_rel = model_dir_in_package(view.environment)
    card = check_model(app_dir, model_rel)
    log("model: %s %s (%s) sha256 %s… %s"
        % (card.get("name"), card.get("version"), card.get("estimator"), card["sha256"][:12],
           "(artifact in S3)" if str(card.get("artifact", "")).startswith("s3://")
           else "matches its card"))
    environment = dict(view.environment)
    if str(card.get("artifact", "")).startswith("s3://"):
        artifact = fetch_remote_artifact(project_dir, stage, card, build_dir)
        environment["MODEL_CACHE_DIR"] = os.path.dirname(artifact)
    else:
        artifact = os.path.join(app_dir, model_rel, card.get("artifact", "model.joblib"))
        check_policy_has_no_s3(project_dir, stage, card)
    requirements = os.path.join(project_dir, "requirements.txt")
    pins = read_pins(requirements)
    wheels = download_wheels(view, pins, requirements, wheels_dir)
    wheels = drop_pandas_unless_used(wheels, artifact, card)
    site_dir = os.path.join(build_dir, "site")
    unpack_wheels(wheels, site_dir)
    trace = run_exercise([app_dir, site_dir], environment, model_rel,
                         os.path.join(build_dir, "trace.json"), cwd=app_dir)
    check_results(trace, "with the untrimmed dependencies")
    log("trace: %d requests answered; %d modules imported, %d files opened"
        % (len(trace["results"]), len(trace["modules"]), len(trace["opened"])))
    keep, sources = select_files(site_dir, trace)
    keep = ship_openmp_runtime(site_dir, keep)
    pkg_dir = os.path.join(build_dir, "package")
    assemble(site_dir, keep, sources, app_dir, pkg_dir, keep_sources, optimize)
    zip_tmp = os.path.join(build_dir, "package.zip")
    sizes = write_zip(pkg_dir, zip_tmp, compresslevel)
    check_model(pkg_dir, model_rel)
    check_size(sizes, direct_upload)
    verify_dir = os.path.join(build_dir, "verify")
    extract_read_only(zip_tmp, verify_dir)
    check_model(verify_dir, model_rel)
    replay = run_exercise([verify_dir], environment, model_rel,
                          os.path.join(build_dir, "replay.json"), cwd=verify_dir)
    check_results(replay, "from the unzipped package")
    compare_replay(trace, replay, verify_dir)
    shipped_openmp = os.path.join(verify_dir, RUNTIME_LIB_DIR, OPENMP)
    if os.path.join(RUNTIME_LIB_DIR, OPENMP) in keep and shipped_openmp not in replay["mapped"]:
        raise BuildError("the replay did not load the shipped %s/%s" % (RUNTIME_LIB_DIR, OPENMP))
    log("replay: the unzipped package, read-only and isolated, answers all %d requests "
        "as the untrimmed dependencies do (import: %.2fs)"
        % (len(replay["results"]), replay["import_seconds"]))
    _make_writable(verify_dir)
    shutil.rmtree(verify_dir)
    if view.package_filename() != package_path:
        raise BuildError("the project changed during the build (requirements.txt, app.py, "
                         "chalicelib/ or vendor/); run the build again")
    deployments = os.path.dirname(package_path)
    os.makedirs(deployments, exist_ok=True)
    for name in os.listdir(deployments):
        full = os.path.join(deployments, name)
        if name.endswith(".zip") and full != package_path:
            os.remove(full)  # stale: Chalice would never pick it again, or worse
    os.replace(zip_tmp, package_path)
    sizes["seconds"] = round(time.perf_counter() - started, 1)
    sizes["path"] = package_path
    print("package: %s\n  %.2f MiB zipped, %.2f MiB unzipped, %d files (built in %.1fs)\n"
          "  `chalice package --stage %s OUT/` and `chalice deploy --stage %s` now reuse it."
          % (_rel(package_path), sizes["zipped"] / MiB, sizes["unzipped"] / MiB,
             sizes["files"], sizes["seconds"], stage, stage), flush=True)
    return sizes


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _make_writable(directory):
    if not os.path.isdir(directory):
        return
    for root, dirs, files in os.walk(directory):
        os.chmod(root, 0o755)
        for name in files:
            full = os.path.join(root, name)
            if not os.path.islink(full):
                os.chmod(full, 0o644)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tools.build_package",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--project-dir", default=REPO_DIR)
    parser.add_argument("--stage", default="prod")
    parser.add_argument("--wheels-dir", help="wheel cache (default: PROJECT/build/wheels)")
    parser.add_argument("--keep-sources", action="store_true",
                        help="ship the dependencies' .py sources too (default: bytecode only)")
    parser.add_argument("--optimize", type=int, choices=(0, 1, 2), default=2,
                        help="optimization level of the dependencies' bytecode (default 2: "
                        "no docstrings, no asserts)")
    parser.add_argument("--compresslevel", type=int, default=9)
    parser.add_argument("--direct-upload", action="store_true",
                        help="fail above 50 MiB zipped (for `chalice deploy`)")
    parser.add_argument("--exercise", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--paths", help=argparse.SUPPRESS)
    parser.add_argument("--model-rel", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.exercise:
        exercise(args.paths.split(os.pathsep), args.model_rel, args.out)
        return 0
    try:
        build(args.project_dir, args.stage, args.wheels_dir,
              keep_sources=args.keep_sources, optimize=args.optimize,
              compresslevel=args.compresslevel, direct_upload=args.direct_upload)
    except BuildError as exc:
        print("build: error: %s" % exc, file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
