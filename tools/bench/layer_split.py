"""What a function + layer split of a built package would weigh and cost.

    .venv/bin/python -m tools.bench.layer_split [--project-dir DIR] [--rounds 7]

Reads the package ``make build`` left in ``build/package`` (the stage's
model in it), splits it as a Lambda function zip (the app, the model and
the pandas group: what changes with the model) and a layer zip (numpy,
scipy, scikit-learn and the rest, under ``python/``), writes both zips
(deflate 9) into ``build/layer-split/`` and prints their sizes against the
50 MiB direct upload. Then it starts the app cold, alternately from the one
directory and from the split layout (``/var/task`` + ``/opt/python`` on
``sys.path``), each in a fresh isolated interpreter answering the card's
example, and prints the median of each and their ratio. Nothing is
deployed; the ratio, not the seconds, is the result (a loaded machine
moves the seconds)."""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import zipfile

from tools.build.common import REPO_DIR, MiB
from tools.build.layout import LAYER_PYTHON, in_function
from tools.build.model import model_dir_in_package
from tools.ops import lambda_events

RUNNER = r"""
import json, sys, time
sys.path[:] = sys.argv[1].split(":") + [p for p in sys.path if p]
import app
class Context:
    function_name = "f"; function_version = "1"; memory_limit_in_mb = "512"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:f"
    aws_request_id = "r"; log_group_name = "g"; log_stream_name = "s"
    def get_remaining_time_in_millis(self): return 10000
print(app.app(json.loads(sys.argv[2]), Context())["statusCode"])
"""


def split(package, out):
    task, layer = os.path.join(out, "task"), os.path.join(out, "opt", LAYER_PYTHON)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(task)
    os.makedirs(layer)
    for base, dirs, files in os.walk(package):
        for name in files:
            src = os.path.join(base, name)
            rel = os.path.relpath(src, package).replace(os.sep, "/")
            dest = os.path.join(task if in_function(rel) else layer, *rel.split("/"))
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            shutil.copy2(src, dest)
    sizes = {}
    for label, root in (("function", task), ("layer", os.path.dirname(layer))):
        path = os.path.join(out, label + ".zip")
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
            for base, dirs, files in os.walk(root):
                dirs.sort()
                for f in sorted(files):
                    full = os.path.join(base, f)
                    zf.write(full, os.path.relpath(full, root))
        sizes[label] = os.path.getsize(path)
    return task, layer, sizes


def cold_starts(layouts, event, model_rel, rounds):
    seconds = {name: [] for name in layouts}
    for _ in range(rounds):
        for name, paths in layouts.items():
            env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "LOG_REQUESTS": "false",
                   "MODEL_DIR": model_rel, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                   "LAMBDA_TASK_ROOT": paths[0],
                   "LD_LIBRARY_PATH": ":".join([os.path.join(os.path.dirname(p), "lib")
                                                for p in paths[1:]]
                                               + [os.path.join(paths[0], "lib"), paths[0]])}
            started = time.perf_counter()
            done = subprocess.run([sys.executable, "-I", "-S", "-B", "-c", RUNNER,
                                   ":".join(paths), event], cwd=paths[0], env=env,
                                  capture_output=True, text=True, timeout=600)
            if done.returncode != 0 or done.stdout.strip().splitlines()[-1:] != ["200"]:
                raise SystemExit("%s did not answer 200:\n%s" % (name, done.stderr[-3000:]))
            seconds[name].append(time.perf_counter() - started)
    return seconds


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tools.bench.layer_split",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--project-dir", default=REPO_DIR)
    parser.add_argument("--stage", default="prod")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    build = os.path.join(os.path.abspath(args.project_dir), "build")
    package = os.path.join(build, "package")
    with open(os.path.join(args.project_dir, ".chalice", "config.json")) as f:
        config = json.load(f)
    stage_env = dict(config.get("environment_variables", {}),
                     **config["stages"][args.stage].get("environment_variables", {}))
    model_rel = model_dir_in_package(stage_env)
    with open(os.path.join(package, *model_rel.split("/"), "model.json")) as f:
        card = json.load(f)
    task, layer, sizes = split(package, os.path.join(build, "layer-split"))
    for label, size in sizes.items():
        print("%-8s zip %6.2f MiB (%.2f MiB left under the 50 MiB direct upload)"
              % (label, size / MiB, 50 - size / MiB))
    event = json.dumps(lambda_events.post_model(json.dumps(card["example"])))
    seconds = cold_starts({"one directory": [package], "function + layer": [task, layer]},
                          event, model_rel, args.rounds)
    base = statistics.median(seconds["one directory"])
    for name, values in seconds.items():
        print("cold start, %-16s median %.2fs of %d, ratio %.2f (each: %s)"
              % (name, statistics.median(values), len(values), statistics.median(values) / base,
                 " ".join("%.2f" % v for v in values)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
