"""Models and packages for ``tools.bench``: the models benchmarked (each with
the rows it is asked about and its targets), and their production and naive
Lambda packages, built once and cached in ``build/bench/`` keyed by the
model's sha256 and the sources that go into the package (unzipped read-only
per zip sha256)."""
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import time
import zipfile

TOOLS_DIR = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TOOLS_DIR)
sys.path.insert(0, REPO) if REPO not in sys.path else None

from chalicelib.card import sha256_of  # noqa: E402
from tools.build_package import extract_read_only  # noqa: E402
from tools.project_copy import copy_project, make_writable  # noqa: E402

BENCH_DIR = os.path.join(REPO, "build", "bench")
WHEELS = os.path.join(REPO, "build", "wheels")
PYTHON = sys.executable
CHALICE = os.path.join(os.path.dirname(sys.executable), "chalice")
# What decides the package's contents besides the model (a change rebuilds it).
SOURCE_FILES = ("app.py", "requirements.txt", ".chalice/config.json") + tuple(sorted(
    "tools/" + name for name in os.listdir(os.path.join(REPO, "tools"))
    if name.startswith("build_") and name.endswith(".py")))  # the build's modules
IRIS_ROW = [5.1, 3.5, 1.4, 0.2]


def say(msg=""):
    print(msg, flush=True)


def note(msg):
    print("bench: %s" % msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# Models and packages (cached in build/bench/).


def sources_digest():
    """sha256 over what goes into a package besides the model."""
    digest = hashlib.sha256()
    paths = list(SOURCE_FILES)
    for root, dirs, files in os.walk(os.path.join(REPO, "chalicelib")):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        paths += [os.path.relpath(os.path.join(root, f), REPO) for f in sorted(files)
                  if f.endswith(".py")]
    for rel in sorted(paths):
        digest.update(rel.encode() + b"\0")
        with open(os.path.join(REPO, rel), "rb") as f:
            digest.update(f.read())
        digest.update(b"\0")
    return digest.hexdigest()


def train_forest(path):
    """A 200-tree RandomForestClassifier on iris (same 4 features, same labels)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    code = ("import sys, joblib\n"
            "from sklearn.datasets import load_iris\n"
            "from sklearn.ensemble import RandomForestClassifier\n"
            "iris = load_iris()\n"
            "y = iris.target_names[iris.target]\n"
            "m = RandomForestClassifier(n_estimators=200, random_state=0).fit(iris.data, y)\n"
            "joblib.dump(m, sys.argv[1])\n")
    subprocess.run([PYTHON, "-c", code, path], check=True, env=env, cwd=REPO)


# The DataFrame pipeline of the model-families tests (OneHotEncoder on
# color/city, StandardScaler on age/income, LogisticRegression), fitted on its
# pandas DataFrame; with the notebook's first row and 1,000 fresh rows as JSON
# records (what a client sends).
TRAIN_TABULAR = ("import json, sys, joblib\n"
                 "from tests.fixtures_families import customers, tabular_pipeline\n"
                 "model, notebook = tabular_pipeline()\n"
                 "joblib.dump(model, sys.argv[1])\n"
                 "rows, _ = customers(1000, seed=1)\n"
                 "with open(sys.argv[2], 'w') as f:\n"
                 "    json.dump({'single': json.loads(notebook.head(1).to_json(orient='records'))[0],\n"
                 "               'batch': json.loads(rows.to_json(orient='records'))}, f)\n")


def batch_rows(n, seed=0):
    rng = random.Random(seed)
    lows, highs = (4.3, 2.0, 1.0, 0.1), (7.9, 4.4, 6.9, 2.5)
    return [[round(rng.uniform(lo, hi), 1) for lo, hi in zip(lows, highs)] for _ in range(n)]


class Model:
    """A model benchmarked: its artifact, the rows it is asked about (one row
    and a 1,000-row batch, as lists in feature order or as records), what its
    estimator takes (``matrix`` or ``dataframe``: then the floors build a
    pandas DataFrame) and its targets."""

    def __init__(self, key, title, artifact, publish=None, single=IRIS_ROW, batch=None,
                 input_kind="matrix", warm_target=1.2, batch_target=1.0):
        self.key = key                # short name: iris, rf200, tabular
        self.title = title
        self.artifact = artifact      # the joblib file (the floor loads it)
        self.publish = publish        # (name, version) to publish into a copy, or None
        self.sha256 = sha256_of(artifact)
        self.single = single          # one instance: a list in feature order, or a record
        self.batch = batch if batch is not None else batch_rows(1000)
        self.input_kind = input_kind
        self.warm_target = warm_target
        self.batch_target = batch_target


def models(wanted):
    out = []
    if "iris" in wanted:
        out.append(Model("iris", "iris pipeline (StandardScaler+LogisticRegression)",
                         os.path.join(REPO, "model", "model.joblib")))
    if "rf200" in wanted:
        path = os.path.join(BENCH_DIR, "models", "rf200.joblib")
        if not os.path.isfile(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            note("training the 200-tree random forest")
            train_forest(path)
        out.append(Model("rf200", "random forest, 200 trees (iris features)", path,
                         publish=("iris-forest-200", "1.0.0")))
    if "tabular" in wanted:
        path = os.path.join(BENCH_DIR, "models", "tabular.joblib")
        rows_path = os.path.join(BENCH_DIR, "models", "tabular-rows.json")
        if not (os.path.isfile(path) and os.path.isfile(rows_path)):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            note("fitting the DataFrame pipeline (tests.fixtures_families.tabular_pipeline)")
            env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
            subprocess.run([PYTHON, "-c", TRAIN_TABULAR, path, rows_path], check=True, env=env,
                           cwd=REPO)
        with open(rows_path) as f:
            rows = json.load(f)
        # The targets for a DataFrame model: its typed path checks
        # and coerces every value, where the floor's DataFrame is given.
        out.append(Model("tabular", "DataFrame pipeline (OneHotEncoder+StandardScaler+"
                         "LogisticRegression, pandas)", path, publish=("customer-churn", "1.0.0"),
                         single=rows["single"], batch=rows["batch"], input_kind="dataframe",
                         warm_target=1.3, batch_target=1.1))
    return out


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


def prepare_project(model, dest):
    copy_project(dest)
    if model.publish:
        name, version = model.publish
        run_or_die([PYTHON, "-m", "model.publish", model.artifact, "--name", name,
                    "--version", version, "--out", os.path.join(dest, "model")],
                   REPO, dict(os.environ), "model.publish of %s" % model.key)
    return dest


def package(model, variant, src_digest):
    """The unzipped, read-only package of ``variant`` (prod: tools.build_package;
    naive: plain ``chalice package``) for ``model``: {zip, task, sizes, ...}."""
    key = hashlib.sha256(("%s|%s|%s" % (variant, model.sha256, src_digest)).encode()).hexdigest()
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
        remove_tree(cache)
        os.makedirs(cache)
        project = prepare_project(model, os.path.join(cache, "project"))
        if variant == "prod":
            note("building the production package for %s (tools.build_package, ~1 min)"
                 % model.key)
            env = dict(os.environ, AWS_DEFAULT_REGION="us-east-1")
            output, seconds = run_or_die(
                [PYTHON, "-m", "tools.build_package", "--project-dir", project,
                 "--stage", "prod", "--wheels-dir", WHEELS], REPO, env,
                "tools.build_package for %s" % model.key)
            deployments = os.path.join(project, ".chalice", "deployments")
            zips = [z for z in os.listdir(deployments) if z.endswith(".zip")]
            assert len(zips) == 1, zips
            built = os.path.join(deployments, zips[0])
        else:
            note("packaging %s with plain `chalice package --stage prod` (no build; "
                 "pip downloads the dependencies)" % model.key)
            out_dir = os.path.join(cache, "out")
            output, seconds = run_or_die([CHALICE, "--project-dir", project, "package",
                                     "--stage", "prod", out_dir], project, aws_offline_env(),
                                    "chalice package for %s" % model.key)
            built = os.path.join(out_dir, "deployment.zip")
        zip_path = os.path.join(cache, "package.zip")
        shutil.move(built, zip_path)
        remove_tree(project)
        remove_tree(os.path.join(cache, "out"))
        with zipfile.ZipFile(zip_path) as zf:
            infos = [i for i in zf.infolist() if not i.is_dir()]
        meta = {"variant": variant, "model": model.key, "model_sha256": model.sha256,
                "sources_sha256": src_digest, "zip_sha256": sha256_of(zip_path),
                "zipped": os.path.getsize(zip_path),
                "unzipped": sum(i.file_size for i in infos), "files": len(infos),
                "pyc": sum(1 for i in infos if i.filename.endswith(".pyc")),
                "build_seconds": round(seconds, 1),
                # e.g. over 50 MiB zipped: the build warns (deploy through S3)
                # and goes on; the report repeats it.
                "build_warnings": [line.strip() for line in output.splitlines()
                                   if "warning" in line.lower()]}
        with open(meta_file, "w") as f:
            json.dump(meta, f, indent=1)
    task = os.path.join(cache, "task-" + meta["zip_sha256"][:12])
    if not os.path.isfile(os.path.join(task, "app.py")):
        extract_read_only(os.path.join(cache, "package.zip"), task)
    meta["task"] = task
    meta["zip"] = os.path.join(cache, "package.zip")
    return meta
