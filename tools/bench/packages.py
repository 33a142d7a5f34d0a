"""The Lambda packages ``tools.bench`` compares, built once and cached in
``build/bench/`` (unzipped read-only per zip sha256):

* ``new``: this project, built by its ``tools.build.package`` (what ``make
  build`` ships): the model card's runtime serves (ONNX Runtime when the card
  says ``"runtime": "onnxruntime"``);
* ``sklearn``: the same project with ``MODEL_RUNTIME=scikit-learn`` in the
  prod stage's environment (the scikit-learn path of a model that also has an
  ONNX conversion), built the same way;
* ``old`` (only with ``--against REF``): the project at the git ref the user
  names, from ``git archive``, built with that ref's own publisher and build
  tool (a comparison with an earlier or another version of this project);
* ``naive``: this project through plain ``chalice package`` (``--naive``).

Each is keyed by the model's sha256 and what goes into it besides the model
(the sources for ``new``/``sklearn``/``naive``, the resolved commit for ``old``).
"""
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile

from chalicelib.schema.card import sha256_of
from tools.bench.models import BENCH_DIR, PYTHON, REPO, note
from tools.build.package import extract_read_only
from tools.build.project_copy import copy_project, make_writable

WHEELS = os.path.join(REPO, "build", "wheels")
CHALICE = os.path.join(os.path.dirname(sys.executable), "chalice")
# What goes into a package besides a published model (a change elsewhere,
# e.g. to tools/bench/, rebuilds nothing).
_PACKAGE_INPUTS = ("app.py", "requirements.txt", "chalicelib", "model", "publisher", "vendor",
                   ".chalice", "tools/build", "tools/ops/lambda_events.py",
                   "tools/ops/model_policy.py")
RUNTIME_ENV = "MODEL_RUNTIME"


def sources_digest(root=REPO):
    """sha256 over what goes into a package besides a published model: the
    app, chalicelib/, the bundled model directory and its publisher, vendor/
    (its links), the requirements, the Chalice config and the build tools."""
    digest = hashlib.sha256()
    paths = []
    for top in _PACKAGE_INPUTS:
        if not os.path.isdir(os.path.join(root, top)):
            paths.append(top)
        for base, dirs, files in os.walk(os.path.join(root, top)):
            dirs[:] = sorted(d for d in dirs if d not in ("__pycache__", "deployments",
                                                          "deployed"))
            paths += [os.path.relpath(os.path.join(base, name), root)
                      for name in sorted(files) if not name.endswith(".pyc")]
    for rel in sorted(paths):
        full = os.path.join(root, rel)
        digest.update(rel.encode() + b"\0")
        if os.path.islink(full):
            digest.update(b"link:" + os.readlink(full).encode())
        elif os.path.isfile(full):
            with open(full, "rb") as f:
                digest.update(f.read())
        digest.update(b"\0")
    return digest.hexdigest()


def stage_environment(project_dir):
    """The prod stage's environment variables and memory size, as Chalice
    merges them (top level, then the stage)."""
    with open(os.path.join(project_dir, ".chalice", "config.json")) as f:
        config = json.load(f)
    env = dict(config.get("environment_variables", {}))
    env.update(config["stages"]["prod"].get("environment_variables", {}))
    memory = config["stages"]["prod"].get("lambda_memory_size",
                                          config.get("lambda_memory_size", 128))
    return env, memory


def resolve_ref(ref):
    """The full commit id of the git ref the user asked to compare against."""
    proc = subprocess.run(["git", "-C", REPO, "rev-parse", "--verify", "--quiet", ref + "^{commit}"],
                          stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise SystemExit("bench: --against %s: not a commit in this repository" % ref)
    return proc.stdout.strip()


def old_source(commit):
    """``git archive COMMIT`` unpacked once into build/bench/src-COMMIT."""
    dest = os.path.join(BENCH_DIR, "src-%s" % commit[:12])
    if os.path.isfile(os.path.join(dest, ".complete")):
        return dest
    remove_tree(dest)
    note("unpacking git archive %s (the --against comparison)" % commit[:12])
    tar = subprocess.run(["git", "-C", REPO, "archive", "--format=tar", commit],
                         check=True, stdout=subprocess.PIPE).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
        tf.extractall(dest, filter="tar")
    open(os.path.join(dest, ".complete"), "w").close()
    return dest


def remove_tree(tree):
    make_writable(tree)
    shutil.rmtree(tree, ignore_errors=True)


def aws_offline_env():
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("AWS_")}
    env.update(AWS_DEFAULT_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true",
               AWS_ENDPOINT_URL="http://127.0.0.1:9",
               AWS_ACCESS_KEY_ID="AKIAFAKEFAKEFAKEFAKE", AWS_SECRET_ACCESS_KEY="fake")
    return env


def run_or_die(cmd, cwd, env, what):
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=1800)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-6000:])
        raise SystemExit("bench: %s failed (exit %d)" % (what, proc.returncode))
    return proc.stdout, time.perf_counter() - started


def served_model_dir(project):
    """Where a project serves its model from by default: ``model/iris``
    (one directory per model) or ``model/`` (an older, single-model layout)."""
    bundled = os.path.join(project, "model", "iris")
    return bundled if os.path.isdir(bundled) else os.path.join(project, "model")


def prepare_project(model, dest, source=REPO):
    """A copy of the project at ``source`` with the model published into it
    by that project's own ``publisher.publish``."""
    copy_project(dest, source=source)
    if model.publish:
        name, version = model.publish
        # An older tree may predate publisher/: its own publisher, wherever it is.
        publish = ("publisher.publish" if os.path.isdir(os.path.join(source, "publisher"))
                   else "model.publish")
        env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
        out, _ = run_or_die([PYTHON, "-m", publish, model.artifact, "--name", name,
                             "--version", version, "--out", served_model_dir(dest), "--force"],
                            source, env, "%s of %s (%s)" % (publish, model.key, source))
        if source == REPO:
            for line in out.splitlines():
                if "onnx" in line.lower():
                    note("publish %s: %s" % (model.key, line.strip()))
    return dest


def force_scikit_learn(project):
    """``MODEL_RUNTIME=scikit-learn`` in the project's prod stage."""
    path = os.path.join(project, ".chalice", "config.json")
    with open(path) as f:
        config = json.load(f)
    config["stages"]["prod"].setdefault("environment_variables", {})[RUNTIME_ENV] = \
        "scikit-learn"
    with open(path, "w") as f:
        json.dump(config, f, indent=2)


def package(model, variant, src_digest, against=None):
    """The unzipped, read-only package of ``variant`` for ``model``: its meta
    (zip, task, sizes, stage_env, memory, runtime, ...); ``against``: the
    commit the ``old`` variant is built from."""
    keyed = against if variant == "old" else src_digest
    key = hashlib.sha256(("%s|%s|%s" % (variant, model.sha256, keyed)).encode()).hexdigest()
    prefix = "%s-%s-" % (variant, model.key)
    cache = os.path.join(BENCH_DIR, prefix + key[:16])
    meta_file = os.path.join(cache, "meta.json")
    for name in os.listdir(BENCH_DIR) if os.path.isdir(BENCH_DIR) else ():
        if name.startswith(prefix) and os.path.join(BENCH_DIR, name) != cache:
            remove_tree(os.path.join(BENCH_DIR, name))  # stale: sources or model changed
    meta = None
    if os.path.isfile(meta_file):
        with open(meta_file) as f:
            meta = json.load(f)
        zip_path = os.path.join(cache, "package.zip")
        if not os.path.isfile(zip_path) or sha256_of(zip_path) != meta["zip_sha256"]:
            meta = None
    if meta is None:
        meta = _build(model, variant, cache, keyed)
        with open(meta_file, "w") as f:
            json.dump(meta, f, indent=1)
    task = os.path.join(cache, "task-" + meta["zip_sha256"][:12])
    if not os.path.isfile(os.path.join(task, "app.py")):
        extract_read_only(os.path.join(cache, "package.zip"), task)
    meta["task"] = task
    meta["zip"] = os.path.join(cache, "package.zip")
    meta["runtime"] = served_runtime(task, meta)
    return meta


def _build(model, variant, cache, keyed):
    remove_tree(cache)
    os.makedirs(cache)
    source = old_source(keyed) if variant == "old" else REPO
    project = prepare_project(model, os.path.join(cache, "project"), source)
    if variant == "sklearn":
        force_scikit_learn(project)
    stage_env, memory = stage_environment(project)
    if variant == "naive":
        note("packaging %s with plain `chalice package --stage prod` (no build; "
             "pip downloads the dependencies)" % model.key)
        out_dir = os.path.join(cache, "out")
        output, seconds = run_or_die([CHALICE, "--project-dir", project, "package",
                                      "--stage", "prod", out_dir], project, aws_offline_env(),
                                     "chalice package for %s" % model.key)
        built = os.path.join(out_dir, "deployment.zip")
    else:
        # An older tree may predate tools/build/: its own build tool, wherever it is.
        builder = ("tools.build.package" if os.path.isfile(
            os.path.join(source, "tools", "build", "package.py")) else "tools.build_package")
        note("building the %s package for %s (%s%s, ~1-2 min)"
             % (variant, model.key, builder, " of %s" % keyed[:12] if variant == "old" else ""))
        env = dict(os.environ, AWS_DEFAULT_REGION="us-east-1")
        # One zip even over the direct upload: the bench starts the package
        # from one directory (`python -m tools.bench.layer_split` measures the
        # function + layer layout against it); an older tree has one layout only.
        layout = ["--layout", "one"] if variant != "old" else []
        output, seconds = run_or_die(
            [PYTHON, "-m", builder, "--project-dir", project,
             "--stage", "prod", "--wheels-dir", WHEELS] + layout, source, env,
            "%s (%s) for %s" % (builder, variant, model.key))
        deployments = os.path.join(project, ".chalice", "deployments")
        zips = [z for z in os.listdir(deployments) if z.endswith(".zip")]
        assert len(zips) == 1, zips
        built = os.path.join(deployments, zips[0])
    zip_path = os.path.join(cache, "package.zip")
    shutil.move(built, zip_path)
    remove_tree(project)
    remove_tree(os.path.join(cache, "out"))
    with zipfile.ZipFile(zip_path) as zf:
        infos = [i for i in zf.infolist() if not i.is_dir()]
    return {"variant": variant, "model": model.key, "model_sha256": model.sha256,
            "built_from": keyed, "zip_sha256": sha256_of(zip_path),
            "stage_env": stage_env, "memory": memory,
            "zipped": os.path.getsize(zip_path),
            "unzipped": sum(i.file_size for i in infos), "files": len(infos),
            "pyc": sum(1 for i in infos if i.filename.endswith(".pyc")),
            "build_seconds": round(seconds, 1),
            # e.g. over 50 MiB zipped: the build warns (deploy through S3)
            # and goes on; the report repeats it.
            "build_warnings": [line.strip() for line in output.splitlines()
                               if "warning" in line.lower()]}


def model_rel(stage_env):
    """The model's directory in a package: the stage's MODEL_DIR (relative,
    or under /var/task), else ``model`` (the package holds one model, in
    ``model/`` or in ``model/NAME/``, whichever layout the project had)."""
    configured = (stage_env.get("MODEL_DIR") or "").strip("/")
    if configured.startswith("var/task/"):
        configured = configured[len("var/task/"):]
    return configured or "model"


def served_runtime(task, meta):
    """Which runtime the package's app serves the model with: the card's
    ``runtime`` unless the stage forces scikit-learn."""
    if meta["stage_env"].get(RUNTIME_ENV, "auto") not in ("", "auto"):
        return meta["stage_env"][RUNTIME_ENV]
    try:
        with open(os.path.join(task, model_rel(meta["stage_env"]), "model.json")) as f:
            return json.load(f).get("runtime") or "scikit-learn"
    except (OSError, ValueError):
        return "scikit-learn"
