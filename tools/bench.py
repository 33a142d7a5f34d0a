"""The performance figures: ``.venv/bin/python -m tools.bench [--quick] [--json FILE]``.

For each model (the bundled iris pipeline, a 200-tree random forest on the
same four features, and a DataFrame pipeline: OneHotEncoder on two string
columns + StandardScaler on two numbers + LogisticRegression, fitted on a
pandas DataFrame, whose package ships pandas), everything measured side by
side in one run, as ratios:

* **cold start**: a fresh ``python -I -S -B`` on the unzipped production
  package (read-only, the prod stage's environment) to the first 200 of
  ``app.app(event, context)``; against the *floor* (a fresh process in the
  venv, bytecode cache warm: import numpy/sklearn/joblib (and pandas),
  ``joblib.load``, ``predict`` one row (a one-row DataFrame)) and the *naive*
  package (the same project packaged by plain ``chalice package --stage
  prod``, without ``tools.build_package``).
  The three variants run interleaved, round after round, after one discarded
  warm-up round; median, min and max.
* **init breakdown**, in the production package: interpreter start, imports,
  ``ServedModel.load()``, the rest of ``import app``, the first request.
* **warm latency** (in the isolated production package process): the whole
  handler with a 1-row request against bare ``estimator.predict`` of that row
  (a one-row DataFrame for the DataFrame model), interleaved blocks; p50/p99.
* **batch**: 1,000 rows in one request against the stdlib floor
  (``json.loads``, ``numpy.asarray``, ``predict``, ``json.dumps``); for the
  DataFrame model against bare ``predict`` on the 1,000-row DataFrame (and,
  for reference, the notebook's floor: ``json.loads``, ``pandas.DataFrame``
  of the records, ``predict``, ``json.dumps``).
* **package** sizes (a build over the 50 MiB direct upload only warns: such
  a package deploys through S3; the report repeats the warning), **memory**
  (peak RSS of the cold-start process) and the smallest Lambda memory size
  with 30% headroom, **cost and capacity** on paper.
* **targets**: PASS/MISS.

Packages are cached in ``build/bench/`` keyed by the model's sha256 and the
sources that go into the package (and unzipped per zip sha256); the first run
builds them (about a minute each), later runs reuse them. ``--quick`` makes
fewer runs. Timings on a shared machine are noisy: read the ratios, which are
measured side by side.
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time

TOOLS_DIR = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TOOLS_DIR)
sys.path.insert(0, REPO) if REPO not in sys.path else None

from tools import lambda_events as ev  # noqa: E402
from tools.bench_models import (BENCH_DIR, PYTHON, models, package,  # noqa: E402
                                say, sources_digest)
from tools.bench_report import (APIGW_REST_PER_M, LAMBDA_GB_S, LAMBDA_PER_M,  # noqa: E402
                                PRICE_DATE, report_model)

CHILD = os.path.join(TOOLS_DIR, "bench_child.py")


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

# The floor of a DataFrame model: the same, with pandas and the one-row
# DataFrame the notebook would pass (ROW: the record's columns, a literal).
COLD_FLOOR_DATAFRAME = r"""
import sys, time
import numpy, sklearn, joblib, pandas
m = joblib.load(sys.argv[1])
p = m.predict(pandas.DataFrame(ROW))
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
if sys.argv[3:] == ["dataframe"]:  # shipped: scikit-learn imports it anyway
    import pandas
    marks.append(("import pandas", time.monotonic()))
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
    if kind == "floor" and model.input_kind == "dataframe":
        code = COLD_FLOOR_DATAFRAME.replace("ROW", repr({k: [v] for k, v in model.single.items()}))
        cmd = [PYTHON, "-c", code, model.artifact]
    elif kind == "floor":
        cmd = [PYTHON, "-c", COLD_FLOOR, model.artifact, ",".join(map(str, model.single))]
    if kind == "floor":
        env = child_env(None, {k: v for k, v in stage_env.items()
                               if k.endswith("_NUM_THREADS")}, memory)
        cwd = REPO
    else:
        code = COLD_BREAKDOWN if kind == "breakdown" else COLD_PACKAGE
        cmd = [PYTHON, "-I", "-S", "-B", "-c", code, pkg["task"], event_json, model.input_kind]
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
    event_json = json.dumps(ev.post_model(json.dumps({"instances": [model.single]})))
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


def warm(model, prod, stage_env, memory, quick, profile, tmp):
    heavy = model.key == "rf200"
    # >= 2,000 requests each; the forest (~20 ms a prediction here) gets fewer
    # to stay within the time budget, and says so in its line.
    n = (300 if quick else 400) if heavy else (2000 if quick else 3000)
    rows = model.batch
    spec = {"single_event": ev.post_model(json.dumps({"instances": [model.single]})),
            "batch_event": ev.post_model(json.dumps({"instances": rows})),
            "row": model.single, "batch_rows": len(rows), "batch_instances": rows,
            "input": model.input_kind,
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



def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tools.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs (caches reused anyway)")
    parser.add_argument("--json", help="write the figures to this JSON file")
    parser.add_argument("--models", default="iris,rf200,tabular",
                        help="comma-separated: iris,rf200,tabular (the DataFrame pipeline)")
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
