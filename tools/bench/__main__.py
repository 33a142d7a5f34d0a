"""The performance figures: ``.venv/bin/python -m tools.bench [--quick] [--json FILE]``.

For each model (the bundled iris pipeline and a 200-tree random forest on the
same four features; ``--models ...,tabular`` adds a DataFrame pipeline, which
compiles to ONNX with one input per column, and whose scikit-learn path ships
pandas), everything measured side by side in one run, as ratios:

* **cold start** of a fresh ``python -I -S -B`` on an unzipped package
  (read-only, the package's prod stage environment) to the first 200 of
  ``app.app(event, context)``, for: the *new* package (``make build`` of this
  project; the model card's runtime serves: the **ONNX path** when the card
  says ``onnxruntime``), the **scikit-learn path** (the same project with
  ``MODEL_RUNTIME=scikit-learn`` in the prod stage), with ``--against REF``
  the *old* package (the project at git REF, built with its own tools), the
  *floor* (a fresh process in the venv, bytecode cache warm: import
  numpy/sklearn/joblib (and pandas), ``joblib.load``, ``predict`` one row)
  and, with ``--naive``, plain ``chalice package``. Interleaved round after
  round (the order rotates), after one discarded warm-up round; median, min,
  max, and the ratio to the floor paired per round. Which heavy modules each
  process imported is recorded (the ONNX path must not import scikit-learn).
* **init breakdown** per path (instrumented run) and **per-module import
  time** (``-X importtime`` on the same cold start): top modules by self and
  cumulative time, self time per top-level package;
* **estimated init on Lambda** at 512 MB and 1,769 MB from the single-core
  cold start (``tools/bench/static.lambda_estimate``: an estimate);
* **warm latency** and **batch** per path, in the isolated package process
  (``tools/bench/child.py``): the handler against bare predict (1 row), and
  against the stdlib floor (1,000 rows: ``json.loads``, ``numpy.asarray``,
  predict, ``json.dumps``), with where the handler's time goes;
* **package**: sizes, zipped size per top-level package and the room left
  for the model under the 50 MiB direct upload; **memory** (peak RSS of the
  cold-start process), cost and capacity on paper;
* **targets** with PASS/MISS (``tools/bench/report.targets``);
* **batch transform** (``--batch-mb N``, ``make bench`` gives 64; 0 skips it):
  a generated CSV of N MB through the real batch job on moto, N worker
  processes, checked row by row, rows per second per worker against the
  ``pandas.read_csv`` + ``predict`` floor, and the 1 GB / 10 GB estimates
  (``tools/bench/batch_gb.py``).

Packages are cached in ``build/bench/`` (``tools/bench/packages.py``); the
first run builds them (a minute or two each), later runs reuse them.
``--quick`` makes fewer runs. Timings on a shared machine are noisy: read the
ratios, which are measured side by side.
"""
import argparse
import datetime
import inspect
import json
import os
import platform
import statistics
import subprocess
import sys
import time

BENCH_TOOLS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(BENCH_TOOLS))
sys.path.insert(0, REPO) if REPO not in sys.path else None

from tools.ops import lambda_events as ev  # noqa: E402
from tools.ops.lambda_context import Context  # noqa: E402
from tools.bench.models import BENCH_DIR, PYTHON, models, say  # noqa: E402
from tools.bench.packages import model_rel, package, resolve_ref, sources_digest  # noqa: E402
from tools.bench.report import (APIGW_REST_PER_M, LAMBDA_GB_S, LAMBDA_PER_M,  # noqa: E402
                                PRICE_DATE, report_model, report_targets)
from tools.bench.static import import_times, summarize_imports, zip_sizes  # noqa: E402

CHILD = os.path.join(BENCH_TOOLS, "child.py")
ONNX, SKLEARN = "onnxruntime", "scikit-learn"
# What each path's init imports before the app's own graph (the breakdown
# times them one by one; only those the package ships).
PATH_IMPORTS = {ONNX: ["numpy", "onnxruntime"], SKLEARN: ["numpy", "pandas", "sklearn", "joblib"]}
HEAVY = ("sklearn", "scipy", "onnxruntime", "pandas", "joblib")


# --------------------------------------------------------------------------
# Cold start.


def child_env(task, stage_env, memory):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
           "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_LAMBDA_FUNCTION_NAME": "sklearn-serverless-prod",
           "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory)}
    env.update(stage_env)
    if task:
        env.update(LAMBDA_TASK_ROOT=task, PYTHONDONTWRITEBYTECODE="1")
    return env


# Source text rather than an import: importing anything of tools inside the
# timed child would count towards the cold start.
_CONTEXT = "\n" + inspect.getsource(Context)

# After the clock stops: which heavy packages the process ran (a module
# left lazy by chalicelib.ops.lazy_imports is in sys.modules with its code not
# run: its type says so without touching it) and which it left lazy.
_HEAVY_RAN = r"""
_lazy = [m for m in %r if type(sys.modules.get(m)).__name__ == "_LazyModule"]
heavy = sorted(m for m in %r if m in sys.modules and m not in _lazy)
_n_lazy = sum(type(m).__name__ == "_LazyModule" for m in list(sys.modules.values()))
_lazy += ["%%d modules in all" %% _n_lazy] if _n_lazy else []
""" % (HEAVY, HEAVY)
_REPORT = _HEAVY_RAN + r"""
import resource
print("BENCH " + json.dumps({"t": t, "status": STATUS, "heavy": heavy, "lazy": _lazy,
      "rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""

# What Lambda does on a cold start: import the handler's module, call it.
COLD_PACKAGE = r"""
import sys, time
sys.path[:] = [sys.argv[1]] + [p for p in sys.path if p]
import app
import json
""" + _CONTEXT + r"""
r = app.app(json.loads(sys.argv[2]), Context())
t = time.monotonic()
""" + _REPORT.replace("STATUS", 'r["statusCode"]')

# The floor: the venv (bytecode cache warm), the model, one prediction.
COLD_FLOOR = r"""
import sys, time
import numpy, sklearn, joblib
m = joblib.load(sys.argv[1])
p = m.predict(numpy.asarray([[float(v) for v in sys.argv[2].split(",")]]))
t = time.monotonic()
import json
""" + _REPORT.replace("STATUS", "200")

# The floor of a DataFrame model: the same, with pandas and the one-row
# DataFrame the notebook would pass (ROW: the record's columns, a literal).
COLD_FLOOR_DATAFRAME = r"""
import sys, time
import numpy, sklearn, joblib, pandas
m = joblib.load(sys.argv[1])
p = m.predict(pandas.DataFrame(ROW))
t = time.monotonic()
import json
""" + _REPORT.replace("STATUS", "200")

# A package again, timing each step of the init phase from the inside (the
# app itself is not modified: ServedModel.load is wrapped when it exists).
# argv[3]: the heavy modules this path imports, timed one by one first.
COLD_BREAKDOWN = r"""
import time
t_main = time.monotonic()
import sys
sys.path[:] = [sys.argv[1]] + [p for p in sys.path if p]
marks = [("interpreter start", t_main)]
n0 = len(sys.modules)
import os
if os.path.isfile(os.path.join(sys.argv[1], "chalicelib", "_lazy_modules.json")):
    # As app.py does first thing, so that the steps below are as lazy as
    # in the real cold start (app.py's own call then finds it installed).
    from chalicelib.ops import lazy_imports
    _finder = lazy_imports.install()
    lazy_imports.install = lambda *args, **kwargs: _finder
    marks.append(("install the lazy imports (chalicelib.ops.lazy_imports)", time.monotonic()))
for name in [m for m in sys.argv[3].split(",") if m]:
    __import__(name)
    marks.append(("import " + name, time.monotonic()))
import chalice.app
marks.append(("import chalice", time.monotonic()))
import chalicelib.protocols.service
marks.append(("import chalicelib.protocols.service (rest of the app's graph)", time.monotonic()))
n_imports = len(sys.modules)
from chalicelib.runtimes import served_model
loads = []
_load = getattr(getattr(served_model, "ServedModel", None), "load", None)
if _load is not None:
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
ctx = Context()
event = json.loads(sys.argv[2])
t_req = time.monotonic()
r = app.app(event, ctx)
t = t_first = time.monotonic()
n_first = len(sys.modules)
""" + _HEAVY_RAN + r"""
import resource
print("BENCH " + json.dumps({"marks": marks, "t_app": t_app, "t_req": t_req, "t": t_first,
      "load": loads[0] if loads else [0.0, 0], "status": r["statusCode"],
      "modules_imports": n_imports - n0, "modules_app": n_first - n_imports,
      "heavy": heavy, "lazy": _lazy,
      "rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


class Variant:
    """One kind of cold-start process: the floor, or a package (plain, or
    instrumented for the init breakdown)."""

    def __init__(self, name, pkg=None, breakdown_of=None):
        self.name = name
        self.pkg = pkg
        self.breakdown_of = breakdown_of  # the path whose init it times


def package_cmd(code, model, pkg, event_json, extra=(), options=()):
    """(cmd, cwd, env) of a cold start on the unzipped package ``pkg``."""
    cmd = [PYTHON, "-I", "-S", "-B"] + list(options) + ["-c", code, pkg["task"], event_json] \
        + list(extra)
    return cmd, pkg["task"], child_env(pkg["task"], pkg["stage_env"], pkg["memory"])


def path_imports(path, model, pkg):
    names = [n for n in PATH_IMPORTS[path] if n != "pandas" or model.input_kind == "dataframe"]
    return ",".join(n for n in names if os.path.isdir(os.path.join(pkg["task"], n)))


def spawn(variant, model, event_json, floor_env):
    """Start one cold process; return (start monotonic, Popen)."""
    if variant.name == "floor":
        if model.input_kind == "dataframe":
            code = COLD_FLOOR_DATAFRAME.replace(
                "ROW", repr({k: [v] for k, v in model.single.items()}))
            cmd = [PYTHON, "-c", code, model.artifact]
        else:
            cmd = [PYTHON, "-c", COLD_FLOOR, model.artifact, ",".join(map(str, model.single))]
        cwd, env = REPO, floor_env
    elif variant.breakdown_of:
        cmd, cwd, env = package_cmd(COLD_BREAKDOWN, model, variant.pkg, event_json,
                                    [path_imports(variant.breakdown_of, model, variant.pkg)])
    else:
        cmd, cwd, env = package_cmd(COLD_PACKAGE, model, variant.pkg, event_json)
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    return t0, proc


def cold_once(variant, model, event_json, floor_env):
    t0, proc = spawn(variant, model, event_json, floor_env)
    out, err = proc.communicate(timeout=120)
    lines = [l for l in out.splitlines() if l.startswith("BENCH ")]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(out[-3000:] + err[-3000:])
        raise SystemExit("bench: cold start (%s, %s) failed (exit %s)"
                         % (variant.name, model.key, proc.returncode))
    result = json.loads(lines[-1][6:])
    if result["status"] != 200:
        raise SystemExit("bench: cold start (%s, %s) answered %s"
                         % (variant.name, model.key, result["status"]))
    result["seconds"] = result["t"] - t0
    result["t0"] = t0
    return result


def cold_starts(model, variants, rounds, floor_env):
    """{variant name: [result per round]}, round 0 discarded (it warms the
    page cache and the floor's bytecode); the order rotates every round."""
    event_json = json.dumps(ev.post_model(json.dumps({"instances": [model.single]})))
    runs = {v.name: [] for v in variants}
    for r in range(rounds + 1):
        k = r % len(variants)
        for variant in variants[k:] + variants[:k]:
            result = cold_once(variant, model, event_json, floor_env)
            if r:
                runs[variant.name].append(result)
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
        steps.setdefault("ServedModel.load() (card, sha256, model + imports)", []).append(load_s)
        steps.setdefault("rest of import app (Chalice app, routes)", []).append(rest)
        steps.setdefault("first request app.app()", []).append(res["t"] - res["t_req"])
        steps.setdefault("total", []).append(res["t"] - res["t0"])
    first = runs[0]
    return {"steps": {k: statistics.median(v) for k, v in steps.items()},
            "modules_imports": first["modules_imports"], "modules_app": first["modules_app"],
            "modules_model_load": first["load"][1], "heavy": first["heavy"]}


def importtime(model, pkg):
    """Per-module import time of one cold start of ``pkg`` (-X importtime)."""
    event_json = json.dumps(ev.post_model(json.dumps({"instances": [model.single]})))
    cmd, cwd, env = package_cmd(COLD_PACKAGE, model, pkg, event_json,
                                options=["-X", "importtime"])
    return summarize_imports(import_times(cmd, cwd, env))


# --------------------------------------------------------------------------
# Warm latency and batch (in the isolated package process).


def warm(model, pkg, quick, profile, tmp):
    heavy = model.key == "rf200" and pkg["runtime"] != ONNX
    # >= 2,000 requests each; the forest through scikit-learn (~20 ms a
    # prediction here) gets fewer to stay within the time budget, and says
    # so in its line.
    n = (300 if quick else 400) if heavy else (1000 if quick else 3000)
    rows = model.batch
    spec = {"single_event": ev.post_model(json.dumps({"instances": [model.single]})),
            "batch_event": ev.post_model(json.dumps({"instances": rows})),
            "row": model.single, "batch_rows": len(rows), "batch_instances": rows,
            "input": model.input_kind,
            "n_requests": n, "block": 50 if heavy else 100,
            "stage_rounds": 20 if heavy else (200 if quick else 800),
            "batch_reps": 10 if heavy else (20 if quick else 40),
            "batch_stage_rounds": 5 if heavy else (10 if quick else 20),
            "profile": profile, "profile_single": 100 if heavy else 2000,
            "profile_batch": 5 if heavy else 20}
    name = "%s-%s" % (model.key, pkg["variant"])
    spec_file = os.path.join(tmp, "spec-%s.json" % name)
    out_file = os.path.join(tmp, "warm-%s.json" % name)
    with open(spec_file, "w") as f:
        json.dump(spec, f)
    env = child_env(pkg["task"], pkg["stage_env"], pkg["memory"])
    proc = subprocess.run([PYTHON, "-I", "-S", "-B", CHILD, pkg["task"], spec_file, out_file],
                          cwd=pkg["task"], env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, timeout=900)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-5000:])
        raise SystemExit("bench: warm run for %s failed" % name)
    with open(out_file) as f:
        return json.load(f)


# --------------------------------------------------------------------------


def bench_model(model, pkgs, args, rounds, floor_env, tmp):
    """Every figure of one model; ``pkgs``: {variant: package meta}."""
    # The serving paths: the new package serves the card's runtime; when
    # that is ONNX Runtime, the sklearn variant is its scikit-learn path.
    paths = {pkgs["new"]["runtime"]: pkgs["new"]}
    if "sklearn" in pkgs:
        paths[SKLEARN] = pkgs["sklearn"]
    variants = [Variant("floor")]
    variants += [Variant(v, pkgs[v]) for v in ("old", "new", "sklearn", "naive") if v in pkgs]
    variants += [Variant("breakdown " + path, pkg, breakdown_of=path)
                 for path, pkg in paths.items()]
    cold = cold_starts(model, variants, rounds, floor_env)
    bds = {path: breakdown(cold.pop("breakdown " + path)) for path in paths}
    imports = {path: importtime(model, pkg) for path, pkg in paths.items()}
    if "old" in pkgs:
        imports["old"] = importtime(model, pkgs["old"])
    sizes = {v: zip_sizes(pkg["zip"], model_rel(pkg["stage_env"])) for v, pkg in pkgs.items()}
    warms = {path: warm(model, pkg, args.quick, args.profile, tmp) for path, pkg in paths.items()}
    return report_model(model, pkgs, paths, cold, bds, imports, sizes, warms)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tools.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs (caches reused anyway)")
    parser.add_argument("--json", help="write the figures to this JSON file")
    parser.add_argument("--models", default="iris,rf200",
                        help="comma-separated: iris,rf200,tabular (the DataFrame pipeline)")
    parser.add_argument("--rounds", type=int, help="cold-start runs per variant (default 3 "
                        "with --quick, else 5)")
    parser.add_argument("--naive", action="store_true",
                        help="also the naive package (plain `chalice package`; pip downloads)")
    parser.add_argument("--against", metavar="REF",
                        help="also build the project at git REF (a tag, branch or commit) with "
                        "its own publisher and build tool, and compare against it")
    parser.add_argument("--profile", action="store_true",
                        help="also print a cProfile of the handler (1 row and 1,000 rows)")
    parser.add_argument("--batch-mb", type=float, default=0.0,
                        help="also the batch transform on a generated CSV of this many MB "
                        "(0: not)")
    parser.add_argument("--batch-model", choices=("iris", "dataframe"), default="iris")
    parser.add_argument("--batch-workers", type=int, default=2)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    os.makedirs(BENCH_DIR, exist_ok=True)
    rounds = args.rounds or (3 if args.quick else 5)
    src = sources_digest()
    against = resolve_ref(args.against) if args.against else None
    chosen = models(args.models.split(","))
    all_pkgs = {}
    for model in chosen:
        pkgs = {"new": package(model, "new", src)}
        if against:
            pkgs["old"] = package(model, "old", src, against)
        if pkgs["new"]["runtime"] == ONNX:
            pkgs["sklearn"] = package(model, "sklearn", src)
        if args.naive:
            pkgs["naive"] = package(model, "naive", src)
        all_pkgs[model.key] = pkgs
    tmp = os.path.join(BENCH_DIR, "tmp")
    os.makedirs(tmp, exist_ok=True)
    new_env = all_pkgs[chosen[0].key]["new"]["stage_env"]
    # The floor runs in the venv with the stage's thread pinning only.
    floor_env = child_env(None, {k: v for k, v in new_env.items() if k.endswith("_NUM_THREADS")},
                          all_pkgs[chosen[0].key]["new"]["memory"])
    say("tools.bench: %s; Python %s; %d CPUs (%s); %s"
        % (platform.platform(), platform.python_version(), os.cpu_count(),
           _cpu_model(), datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")))
    say("prices: Lambda x86 $%.10f per GB-s (per 1 ms), $%.2f per 1M requests; API Gateway REST "
        "$%.2f per 1M requests (first 333M): %s" % (LAMBDA_GB_S, LAMBDA_PER_M,
                                                    APIGW_REST_PER_M, PRICE_DATE))
    say("stage prod env (new package): %s; lambda_memory_size %d MB"
        % (", ".join("%s=%s" % kv for kv in sorted(new_env.items())),
           all_pkgs[chosen[0].key]["new"]["memory"]))
    say("%scold-start rounds: %d (+1 discarded)%s\n"
        % ("old = git %s (--against %s), built with its own tools; " % (against[:12], args.against)
           if against else "", rounds, "; QUICK" if args.quick else ""))
    figures = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                           "cpu": _cpu_model(), "python": platform.python_version()},
               "prices": {"source": PRICE_DATE, "lambda_gb_s": LAMBDA_GB_S,
                          "lambda_per_million": LAMBDA_PER_M,
                          "api_gateway_rest_per_million": APIGW_REST_PER_M},
               "against": against, "quick": args.quick, "rounds": rounds, "models": []}
    for model in chosen:
        figures["models"].append(bench_model(model, all_pkgs[model.key], args, rounds,
                                             floor_env, tmp))
    figures["targets"] = report_targets(figures["models"])
    if args.batch_mb:
        from tools.bench import batch_gb
        say("\n== batch transform: %g MB, %d workers, %s model ==" % (
            args.batch_mb, args.batch_workers, args.batch_model))
        result = batch_gb.bench(args.batch_mb, args.batch_workers, args.batch_model)
        figures["batch"] = {result["model"]: result}
        if not result["ok"]:
            figures["targets"].append({"target": "batch job complete and exact", "pass": False,
                                       "figure": "; ".join(result["problems"])})
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
