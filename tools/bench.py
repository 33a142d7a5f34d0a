"""The performance figures: ``.venv/bin/python -m tools.bench [--quick] [--json FILE]``.

For each model (the bundled iris pipeline and a 200-tree random forest on the
same four features), everything measured side by side in one run, as ratios:

* **cold start**: a fresh ``python -I -S -B`` on the unzipped production
  package (read-only, the prod stage's environment) to the first 200 of
  ``app.app(event, context)``; against the *floor* (a fresh process in the
  venv, bytecode cache warm: import numpy/sklearn/joblib, ``joblib.load``,
  ``predict`` one row) and the *naive* package (the same project packaged by
  plain ``chalice package --stage prod``, without ``tools.build_package``).
  The three variants run interleaved, round after round, after one discarded
  warm-up round; median, min and max.
* **init breakdown**, in the production package: interpreter start, imports,
  ``ServedModel.load()``, the rest of ``import app``, the first request.
* **warm latency** (in the isolated production package process): the whole
  handler with a 1-row request against bare ``estimator.predict`` of that row,
  interleaved blocks; p50/p99.
* **batch**: 1,000 rows in one request against the stdlib floor
  (``json.loads``, ``numpy.asarray``, ``predict``, ``json.dumps``).
* **package** sizes, **memory** (peak RSS of the cold-start process) and the
  smallest Lambda memory size with 30% headroom, **cost and capacity** on paper.
* **targets**: PASS/MISS.

Packages are cached in ``build/bench/`` keyed by the model's sha256 and the
sources that go into the package (and unzipped per zip sha256); the first run
builds them (about a minute each), later runs reuse them. ``--quick`` makes
fewer runs. Timings on a shared machine are noisy: read the ratios, which are
measured side by side.
"""
import argparse
import datetime
import hashlib
import json
import math
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import time
import zipfile

TOOLS_DIR = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TOOLS_DIR)
sys.path.insert(0, REPO) if REPO not in sys.path else None

from chalicelib.card import sha256_of  # noqa: E402
from tools import lambda_events as ev  # noqa: E402
from tools.build_package import extract_read_only  # noqa: E402
from tools.project_copy import copy_project, make_writable  # noqa: E402

BENCH_DIR = os.path.join(REPO, "build", "bench")
WHEELS = os.path.join(REPO, "build", "wheels")
PYTHON = sys.executable
CHALICE = os.path.join(os.path.dirname(sys.executable), "chalice")
CHILD = os.path.join(TOOLS_DIR, "bench_child.py")
MiB = 1024 * 1024
# What decides the package's contents besides the model (a change rebuilds it).
SOURCE_FILES = ("app.py", "requirements.txt", ".chalice/config.json", "tools/build_package.py")

ZIP_LIMIT_MIB = 50          # Lambda: direct upload
UNZIPPED_LIMIT_MIB = 250    # Lambda: function + layers, unzipped
TARGET_ZIP_MIB = 30
HEADROOM = 1.30
COMMON_MEMORY_MB = (128, 256, 512, 1024, 1536, 2048, 3008, 4096, 6144, 8192, 10240)
FULL_CORE_MB = 1769         # Lambda gives one full vCPU at 1,769 MB
# AWS public pricing, us-east-1, as listed 2026-11 (not fetched live).
PRICE_DATE = "AWS public pricing, us-east-1, as listed 2026-11; not fetched live"
LAMBDA_GB_S = 0.0000166667  # x86, per GB-second (billed per 1 ms)
LAMBDA_PER_M = 0.20         # per 1M requests
APIGW_REST_PER_M = 3.50     # REST API, per 1M requests, first 333M
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


class Model:
    def __init__(self, key, title, artifact, publish=None):
        self.key = key                # short name: iris, rf200
        self.title = title
        self.artifact = artifact      # the joblib file (the floor loads it)
        self.publish = publish        # (name, version) to publish into a copy, or None
        self.sha256 = sha256_of(artifact)


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
            _, seconds = run_or_die(
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
            _, seconds = run_or_die([CHALICE, "--project-dir", project, "package",
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
                "build_seconds": round(seconds, 1)}
        with open(meta_file, "w") as f:
            json.dump(meta, f, indent=1)
    task = os.path.join(cache, "task-" + meta["zip_sha256"][:12])
    if not os.path.isfile(os.path.join(task, "app.py")):
        extract_read_only(os.path.join(cache, "package.zip"), task)
    meta["task"] = task
    meta["zip"] = os.path.join(cache, "package.zip")
    return meta


# --------------------------------------------------------------------------
# Cold start.


def stage_environment():
    with open(os.path.join(REPO, ".chalice", "config.json")) as f:
        config = json.load(f)
    env = dict(config.get("environment_variables", {}))
    env.update(config["stages"]["prod"].get("environment_variables", {}))
    memory = config["stages"]["prod"].get("lambda_memory_size",
                                          config.get("lambda_memory_size", 128))
    return env, memory


def child_env(task, stage_env, memory):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
           "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_LAMBDA_FUNCTION_NAME": "sklearn-serverless-prod",
           "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory)}
    env.update(stage_env)
    if task:
        env.update(LAMBDA_TASK_ROOT=task, PYTHONDONTWRITEBYTECODE="1")
    return env


# Inline rather than tools.lambda_events.LambdaContext: importing that module
# (uuid, base64) inside the timed child would count towards the cold start.
_CONTEXT = r"""
class Ctx:
    function_name = "sklearn-serverless-prod"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:sklearn-serverless-prod"
    memory_limit_in_mb = "512"
    aws_request_id = "00000000-0000-0000-0000-000000000001"
    log_group_name = "/aws/lambda/sklearn-serverless-prod"
    log_stream_name = "stream"
    def get_remaining_time_in_millis(self):
        return 10000
"""

# What Lambda does on a cold start: import the handler's module, call it.
COLD_PACKAGE = r"""
import sys, time
sys.path[:] = [sys.argv[1]] + [p for p in sys.path if p]
import app
import json
""" + _CONTEXT + r"""
r = app.app(json.loads(sys.argv[2]), Ctx())
t = time.monotonic()
import resource
print("BENCH " + json.dumps({"t": t, "status": r["statusCode"],
      "rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""

# The floor: the venv (bytecode cache warm), the model, one prediction.
COLD_FLOOR = r"""
import sys, time
import numpy, sklearn, joblib
m = joblib.load(sys.argv[1])
p = m.predict(numpy.asarray([[float(v) for v in sys.argv[2].split(",")]]))
t = time.monotonic()
import json, resource
print("BENCH " + json.dumps({"t": t, "status": 200,
      "rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""

# The production package again, timing each step of the init phase from the
# inside (the app itself is not modified: ServedModel.load is wrapped).
COLD_BREAKDOWN = r"""
import time
t_main = time.monotonic()
import sys
sys.path[:] = [sys.argv[1]] + [p for p in sys.path if p]
marks = [("interpreter start", t_main)]
n0 = len(sys.modules)
import numpy
marks.append(("import numpy", time.monotonic()))
import sklearn
marks.append(("import sklearn", time.monotonic()))
import joblib
marks.append(("import joblib", time.monotonic()))
import chalice.app
marks.append(("import chalice", time.monotonic()))
import chalicelib.service
marks.append(("import chalicelib.service (rest of the app's graph)", time.monotonic()))
n_imports = len(sys.modules)
from chalicelib import served_model
_load = served_model.ServedModel.load
loads = []
def load(self):
    before, t0 = len(sys.modules), time.monotonic()
    result = _load(self)
    if not loads:
        loads.append((time.monotonic() - t0, len(sys.modules) - before))
    return result
served_model.ServedModel.load = load
import app
t_app = time.monotonic()
import json
""" + _CONTEXT + r"""
ctx = Ctx()
event = json.loads(sys.argv[2])
t_req = time.monotonic()
r = app.app(event, ctx)
t_first = time.monotonic()
n_first = len(sys.modules)
import resource
print("BENCH " + json.dumps({"marks": marks, "t_app": t_app, "t_req": t_req, "t": t_first,
      "load": loads[0] if loads else None, "status": r["statusCode"],
      "modules_imports": n_imports - n0, "modules_app": n_first - n_imports,
      "rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def spawn(kind, model, pkg, stage_env, memory, event_json):
    """Start one cold process; return (start monotonic, Popen)."""
    if kind == "floor":
        cmd = [PYTHON, "-c", COLD_FLOOR, model.artifact, ",".join(map(str, IRIS_ROW))]
        env = child_env(None, {k: v for k, v in stage_env.items()
                               if k.endswith("_NUM_THREADS")}, memory)
        cwd = REPO
    else:
        code = COLD_BREAKDOWN if kind == "breakdown" else COLD_PACKAGE
        cmd = [PYTHON, "-I", "-S", "-B", "-c", code, pkg["task"], event_json]
        env = child_env(pkg["task"], stage_env, memory)
        cwd = pkg["task"]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    return t0, proc


def cold_once(kind, model, pkg, stage_env, memory, event_json):
    t0, proc = spawn(kind, model, pkg, stage_env, memory, event_json)
    out, err = proc.communicate(timeout=120)
    lines = [l for l in out.splitlines() if l.startswith("BENCH ")]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(out[-3000:] + err[-3000:])
        raise SystemExit("bench: cold start (%s, %s) failed (exit %s)"
                         % (kind, model.key, proc.returncode))
    result = json.loads(lines[-1][6:])
    if result["status"] != 200:
        raise SystemExit("bench: cold start (%s, %s) answered %s"
                         % (kind, model.key, result["status"]))
    result["seconds"] = result["t"] - t0
    result["t0"] = t0
    return result


def cold_starts(model, prod, naive, stage_env, memory, rounds):
    event_json = json.dumps(ev.post_model(json.dumps({"instances": [IRIS_ROW]})))
    kinds = ["floor", "prod", "naive", "breakdown"]
    runs = {k: [] for k in kinds}
    pkgs = {"floor": None, "prod": prod, "naive": naive, "breakdown": prod}
    for r in range(rounds + 1):  # round 0 warms the caches (bytecode, page cache)
        order = kinds[r % len(kinds):] + kinds[:r % len(kinds)]  # rotate who goes first
        for kind in order:
            result = cold_once(kind, model, pkgs[kind], stage_env, memory, event_json)
            if r:
                runs[kind].append(result)
    return runs


def summary(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "n": len(values)}


def breakdown(runs):
    """Median of each init step (seconds) over the breakdown runs."""
    steps = {}
    for res in runs:
        prev = res["t0"]
        for name, t in res["marks"]:
            steps.setdefault(name, []).append(t - prev)
            prev = t
        load_s, load_mods = res["load"]
        rest = res["t_app"] - prev - load_s
        steps.setdefault("ServedModel.load() (card, sha256, unpickle + imports)", []).append(load_s)
        steps.setdefault("rest of import app (Chalice app, routes)", []).append(rest)
        steps.setdefault("first request app.app()", []).append(res["t"] - res["t_req"])
        steps.setdefault("total", []).append(res["t"] - res["t0"])
    first = runs[0]
    return {"steps": {k: statistics.median(v) for k, v in steps.items()},
            "modules_imports": first["modules_imports"], "modules_app": first["modules_app"],
            "modules_model_load": first["load"][1]}


# --------------------------------------------------------------------------
# Warm latency and batch (in the isolated production package process).


def batch_rows(n, seed=0):
    rng = random.Random(seed)
    lows, highs = (4.3, 2.0, 1.0, 0.1), (7.9, 4.4, 6.9, 2.5)
    return [[round(rng.uniform(lo, hi), 1) for lo, hi in zip(lows, highs)] for _ in range(n)]


def warm(model, prod, stage_env, memory, quick, profile, tmp):
    heavy = model.key == "rf200"
    # >= 2,000 requests each; the forest (~20 ms a prediction here) gets fewer
    # to stay within the time budget, and says so in its line.
    n = (300 if quick else 400) if heavy else (2000 if quick else 3000)
    rows = batch_rows(1000)
    spec = {"single_event": ev.post_model(json.dumps({"instances": [IRIS_ROW]})),
            "batch_event": ev.post_model(json.dumps({"instances": rows})),
            "row": IRIS_ROW, "batch_rows": len(rows), "batch_instances": rows,
            "n_requests": n, "block": 50 if heavy else 100,
            "stage_rounds": 20 if heavy else (400 if quick else 800),
            "batch_reps": 10 if heavy else (20 if quick else 40),
            "batch_stage_rounds": 5 if heavy else (10 if quick else 20),
            "profile": profile, "profile_single": 100 if heavy else 2000,
            "profile_batch": 5 if heavy else 20}
    spec_file = os.path.join(tmp, "spec-%s.json" % model.key)
    out_file = os.path.join(tmp, "warm-%s.json" % model.key)
    with open(spec_file, "w") as f:
        json.dump(spec, f)
    env = child_env(prod["task"], stage_env, memory)
    proc = subprocess.run([PYTHON, "-I", "-S", "-B", CHILD, prod["task"], spec_file, out_file],
                          cwd=prod["task"], env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, timeout=900)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-5000:])
        raise SystemExit("bench: warm run for %s failed" % model.key)
    with open(out_file) as f:
        return json.load(f)


# --------------------------------------------------------------------------
# Paper figures.


def lambda_memory(rss_mib):
    need = max(128, int(math.ceil(rss_mib * HEADROOM)))
    if need > 10240:
        return None, None
    common = next(m for m in COMMON_MEMORY_MB if m >= need)
    return need, common


def cost(duration_ms, memory_mb):
    billed_ms = max(1, math.ceil(duration_ms))
    compute = 1e6 * (memory_mb / 1024.0) * (billed_ms / 1000.0) * LAMBDA_GB_S
    return {"memory_mb": memory_mb, "billed_ms": billed_ms, "lambda_compute": compute,
            "lambda_requests": LAMBDA_PER_M, "api_gateway": APIGW_REST_PER_M,
            "total": compute + LAMBDA_PER_M + APIGW_REST_PER_M}


# --------------------------------------------------------------------------
# Report.


def ms(seconds):
    return "%.0f ms" % (seconds * 1000)


def us(ns):
    return "%.1f us" % (ns / 1000.0) if ns < 1e7 else "%.2f ms" % (ns / 1e6)


def report_model(model, prod, naive, cold, bd, warm_out, memory):
    fig = {"model": model.key, "title": model.title, "model_sha256": model.sha256}
    say("== %s (sha256 %s...)" % (model.title, model.sha256[:12]))
    # cold start
    c = {k: summary([r["seconds"] for r in v]) for k, v in cold.items()}
    ratio = [p["seconds"] / f["seconds"] for p, f in zip(cold["prod"], cold["floor"])]
    naive_ratio = [n_["seconds"] / f["seconds"] for n_, f in zip(cold["naive"], cold["floor"])]
    fig["cold_start_s"] = c
    fig["cold_start_ratio_prod_floor"] = c["prod"]["median"] / c["floor"]["median"]
    fig["cold_start_ratio_naive_floor"] = c["naive"]["median"] / c["floor"]["median"]
    fig["cold_start_ratio_prod_floor_paired"] = summary(ratio)
    fig["cold_start_ratio_naive_floor_paired"] = summary(naive_ratio)

    def line(label, s):
        return "%s median %s (min %s, max %s, n=%d)" % (label, ms(s["median"]), ms(s["min"]),
                                                       ms(s["max"]), s["n"])
    say("cold start   " + line("production package:", c["prod"])
        + "  = %.2fx floor" % fig["cold_start_ratio_prod_floor"])
    say("cold start   " + line("floor (venv, warm .pyc):", c["floor"]))
    say("cold start   " + line("naive chalice package:", c["naive"])
        + "  = %.2fx floor, %.2fx production"
        % (fig["cold_start_ratio_naive_floor"], c["naive"]["median"] / c["prod"]["median"]))
    say("cold start   paired ratio production/floor per round: median %.2fx (min %.2f, max %.2f)"
        % (fig["cold_start_ratio_prod_floor_paired"]["median"], min(ratio), max(ratio)))
    # init breakdown
    fig["init_breakdown_s"] = bd
    steps = bd["steps"]
    say("init         (production package, instrumented run, median of %d; total %s)"
        % (len(cold["breakdown"]), ms(steps["total"])))
    for name, seconds in steps.items():
        if name == "total":
            continue
        extra = ""
        if name.startswith("ServedModel.load"):
            extra = "  (%d modules imported by unpickling)" % bd["modules_model_load"]
        say("init           %-46s %7s  %4.0f%%%s"
            % (name, ms(seconds), 100 * seconds / steps["total"], extra))
    # warm
    w = warm_out["warm"]
    h, p = w["handler_ns"], w["predict_ns"]
    fig["warm"] = w
    fig["warm_ratio_p50"] = h["p50"] / p["p50"]
    say("warm         handler app.app() 1 row: p50 %s p99 %s; bare predict: p50 %s p99 %s; "
        "p50 ratio %.2fx (n=%d each, interleaved blocks of %d; isolated package process)"
        % (us(h["p50"]), us(h["p99"]), us(p["p50"]), us(p["p99"]), fig["warm_ratio_p50"],
           w["n"], w["block"]))
    say("warm         overhead of the handler over predict at p50: %s" % us(h["p50"] - p["p50"]))
    fig["single_stages_ns"] = warm_out["single_stages"]
    say("warm stages  (median ns each, round-robin) " + ", ".join(
        "%s %s" % (name.strip(), us(v)) for name, v in warm_out["single_stages"]))
    # batch
    b = warm_out["batch"]
    bh, bf = b["handler_ns"]["p50"], b["floor_ns"]["p50"]
    fig["batch"] = b
    fig["batch_ratio"] = bh / bf
    fig["batch_rows_per_s"] = {"handler": b["rows"] / (bh / 1e9), "floor": b["rows"] / (bf / 1e9)}
    say("batch        %d rows/request: handler %s = %.0f rows/s; stdlib floor %s = %.0f rows/s; "
        "ratio %.2fx (median of %d, interleaved)"
        % (b["rows"], us(bh), fig["batch_rows_per_s"]["handler"], us(bf),
           fig["batch_rows_per_s"]["floor"], fig["batch_ratio"], b["reps"]))
    fig["batch_stages_ns"] = warm_out["batch_stages"]
    say("batch stages " + ", ".join("%s %s" % (name.strip(), us(v))
                                     for name, v in warm_out["batch_stages"]))
    # package
    pk = {}
    for label, meta in (("production", prod), ("naive", naive)):
        pk[label] = {k: meta[k] for k in ("zipped", "unzipped", "files", "pyc", "zip_sha256")}
        say("package      %-10s %6.2f MiB zipped (limit %d: %s), %6.2f MiB unzipped (limit %d: "
            "%s), %d files (%d .pyc)"
            % (label, meta["zipped"] / MiB, ZIP_LIMIT_MIB,
               "ok" if meta["zipped"] <= ZIP_LIMIT_MIB * MiB else "OVER",
               meta["unzipped"] / MiB, UNZIPPED_LIMIT_MIB,
               "ok" if meta["unzipped"] <= UNZIPPED_LIMIT_MIB * MiB else "OVER",
               meta["files"], meta["pyc"]))
    fig["package"] = pk
    # memory
    rss = {k: max(r["rss_kib"] for r in v) / 1024.0 for k, v in cold.items()}
    fig["peak_rss_mib"] = rss
    need, common = lambda_memory(rss["prod"])
    fig["lambda_memory_mb"] = {"min_with_headroom": need, "common": common}
    say("memory       peak RSS of the cold-start process (max over runs): production %.1f MiB, "
        "floor %.1f MiB, naive %.1f MiB; warm process after the run %.1f MiB"
        % (rss["prod"], rss["floor"], rss["naive"], warm_out["rss_kib"] / 1024.0))
    say("memory       smallest Lambda memory with 30%% headroom: %s MB (nearest common size %s MB)"
        % (need, common))
    # cost
    duration_ms = h["p50"] / 1e6
    costs = [cost(duration_ms, m) for m in sorted({need, common, memory})]
    fig["cost_per_million"] = costs
    for cst in costs:
        say("cost         at %d MB, billed %d ms (p50 %.3f ms, full core): $%.2f per 1M predictions"
            " = Lambda compute $%.4f + Lambda requests $%.2f + API Gateway REST $%.2f"
            % (cst["memory_mb"], cst["billed_ms"], duration_ms, cst["total"],
               cst["lambda_compute"], cst["lambda_requests"], cst["api_gateway"]))
    per_container = 1e3 / duration_ms
    fig["capacity"] = {"requests_per_s_per_container": per_container,
                       "requests_per_s_1000_concurrent": 1000 * per_container}
    say("capacity     one warm container: %.0f requests/s (1/p50); 1,000 concurrent executions: "
        "%.0f requests/s (%.1fM/hour), before API Gateway's 10,000 rps default account quota"
        % (per_container, 1000 * per_container, 1000 * per_container * 3600 / 1e6))
    share = min(1.0, need / float(FULL_CORE_MB))
    fig["capacity"]["cpu_share_at_min_memory"] = share
    say("capacity     measured on a full core; Lambda gives %d MB about %.0f%% of a vCPU (full "
        "vCPU at %d MB), so CPU-bound work there may take up to %.1fx longer (%.2f ms)"
        % (need, 100 * share, FULL_CORE_MB, 1 / share, duration_ms / share))
    # targets
    t = [("cold start <= 1.0x floor (median ratio)", fig["cold_start_ratio_prod_floor"] <= 1.0,
          "%.3fx" % fig["cold_start_ratio_prod_floor"]),
         ("warm single-row p50 <= 1.2x bare predict", fig["warm_ratio_p50"] <= 1.2,
          "%.3fx" % fig["warm_ratio_p50"]),
         ("batch handler <= 1.0x stdlib floor", fig["batch_ratio"] <= 1.0,
          "%.3fx" % fig["batch_ratio"]),
         ("package <= %d MiB zipped" % TARGET_ZIP_MIB, prod["zipped"] <= TARGET_ZIP_MIB * MiB,
          "%.2f MiB" % (prod["zipped"] / MiB)),
         ("peak RSS fits 256 MB with 30% headroom", rss["prod"] * HEADROOM <= 256,
          "%.1f MiB x1.3 = %.0f" % (rss["prod"], rss["prod"] * HEADROOM)),
         ("stretch: fits 128 MB with 30% headroom", rss["prod"] * HEADROOM <= 128,
          "%.1f MiB x1.3 = %.0f" % (rss["prod"], rss["prod"] * HEADROOM))]
    fig["targets"] = [{"target": name, "pass": ok, "figure": figure} for name, ok, figure in t]
    for name, ok, figure in t:
        say("target       %-4s %-42s %s" % ("PASS" if ok else "MISS", name, figure))
    if warm_out.get("profiles"):
        for label, text in warm_out["profiles"].items():
            say("-- cProfile of the handler, %s request(s), by tottime:" % label)
            say(text)
    say()
    return fig


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tools.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs (caches reused anyway)")
    parser.add_argument("--json", help="write the figures to this JSON file")
    parser.add_argument("--models", default="iris,rf200", help="comma-separated: iris,rf200")
    parser.add_argument("--rounds", type=int, help="cold-start runs per variant (default 3 "
                        "with --quick, else 5)")
    parser.add_argument("--profile", action="store_true",
                        help="also print a cProfile of the handler (1 row and 1,000 rows)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    os.makedirs(BENCH_DIR, exist_ok=True)
    rounds = args.rounds or (3 if args.quick else 5)
    stage_env, memory = stage_environment()
    src = sources_digest()
    chosen = models(args.models.split(","))
    pkgs = {}
    for model in chosen:
        pkgs[model.key] = (package(model, "prod", src), package(model, "naive", src))
    tmp = os.path.join(BENCH_DIR, "tmp")
    os.makedirs(tmp, exist_ok=True)
    say("tools.bench: %s; Python %s; %d CPUs (%s); %s"
        % (platform.platform(), platform.python_version(), os.cpu_count(),
           _cpu_model(), datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")))
    say("prices: Lambda x86 $%.10f per GB-s (per 1 ms), $%.2f per 1M requests; API Gateway REST "
        "$%.2f per 1M requests (first 333M): %s" % (LAMBDA_GB_S, LAMBDA_PER_M,
                                                    APIGW_REST_PER_M, PRICE_DATE))
    say("stage prod env: %s; lambda_memory_size %d MB\n"
        % (", ".join("%s=%s" % kv for kv in sorted(stage_env.items())), memory))
    figures = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                           "cpu": _cpu_model(), "python": platform.python_version()},
               "prices": {"source": PRICE_DATE, "lambda_gb_s": LAMBDA_GB_S,
                          "lambda_per_million": LAMBDA_PER_M,
                          "api_gateway_rest_per_million": APIGW_REST_PER_M},
               "quick": args.quick, "rounds": rounds, "models": []}
    for model in chosen:
        prod, naive = pkgs[model.key]
        cold = cold_starts(model, prod, naive, stage_env, memory, rounds)
        bd = breakdown(cold["breakdown"])
        warm_out = warm(model, prod, stage_env, memory, args.quick, args.profile, tmp)
        figures["models"].append(report_model(model, prod, naive, cold, bd, warm_out, memory))
    figures["seconds"] = round(time.perf_counter() - started, 1)
    say("tools.bench: done in %.0f s" % figures["seconds"])
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=1)
        say("figures written to %s" % args.json)
    return 0


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    sys.exit(main())
