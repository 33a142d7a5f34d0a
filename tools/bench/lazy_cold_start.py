"""Cold start by hand: the built package with its lazy imports, the same
package with every import eager (``LAZY_IMPORTS=off``), and the floor.

    .venv/bin/python -m tools.bench.lazy_cold_start [--project-dir .] [--package DIR] [--rounds 7]

Run ``make build`` first (``PROJECT/build/package`` is the tree the zip
was made from; the package runs with the prod stage's environment of
``PROJECT/.chalice/config.json``, ``MODEL_RUNTIME`` included). Each round starts, in turn, three fresh processes and times each
whole process (start to exit):

* floor: the venv (bytecode cache warm) importing numpy, scikit-learn and
  joblib, ``joblib.load`` of the artifact and one ``predict`` (what
  ``make bench`` calls the floor);
* lazy / eager: ``python -I -S -B`` on the package, ``import app`` (the
  model loads) and one ``POST /model`` API Gateway event (the card's
  example, with probabilities), with the stage's thread settings.

Prints each round, the medians and their ratios to the floor, the median
of each round's own ratio (paired) and peak RSS.
``make bench`` remains the measurement of record (side by side, more
figures); this is the quick check of what lazy imports change.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

FLOOR = """import sys, numpy, sklearn, joblib
m = joblib.load(sys.argv[1])
m.predict(numpy.asarray([[float(v) for v in sys.argv[2].split(",")]]))
"""

PACKAGE = """import sys
sys.path[:0] = [sys.argv[1]]
import app
sys.path.append(sys.argv[3])
import json, lambda_events as ev
r = app.app(ev.post_model(sys.argv[2]), ev.LambdaContext())
assert r["statusCode"] == 200, r
import resource
print("RSS_KIB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def timed(cmd, env, cwd):
    """Wall seconds of one child process, and its peak RSS in MiB (the
    package runs print theirs; None for the floor)."""
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit("%s failed:\n%s" % (cmd[:4], proc.stdout[-3000:]))
    rss = [line.split()[1] for line in proc.stdout.splitlines() if line.startswith("RSS_KIB ")]
    return seconds, (int(rss[-1]) / 1024 if rss else None)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tools.bench.lazy_cold_start")
    parser.add_argument("--project-dir", default=REPO)
    parser.add_argument("--package", help="default: PROJECT/build/package")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    package = os.path.abspath(args.package or os.path.join(args.project_dir, "build", "package"))
    with open(os.path.join(args.project_dir, ".chalice", "config.json")) as f:
        config = json.load(f)
    stage_env = dict(config.get("environment_variables", {}),
                     **config["stages"]["prod"].get("environment_variables", {}))
    with open(os.path.join(package, "model", "model.json")) as f:
        card = json.load(f)
    names = [feature["name"] for feature in card["features"]]
    example = card.get("example", {}).get("instances", [[0.0] * len(names)])[0]
    row = [example[n] for n in names] if isinstance(example, dict) else example
    artifact = os.path.join(package, "model", card.get("artifact", "model.joblib"))
    threads = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", **stage_env,
            "LOG_REQUESTS": "false", "LAMBDA_TASK_ROOT": package, **threads}
    body = json.dumps({"instances": [row]})
    kinds = {
        "floor": ([sys.executable, "-c", FLOOR, artifact, ",".join(map(str, row))],
                  dict(os.environ, **threads), REPO),
        "lazy": ([sys.executable, "-I", "-S", "-B", "-c", PACKAGE, package, body,
                  os.path.join(REPO, "tools", "ops")], base, package),
        "eager": ([sys.executable, "-I", "-S", "-B", "-c", PACKAGE, package, body,
                   os.path.join(REPO, "tools", "ops")], dict(base, LAZY_IMPORTS="off"), package),
    }
    if not os.path.isfile(os.path.join(package, "chalicelib", "_lazy_modules.json")):
        print("note: %s has no lazy list (lazy = eager)" % package)
    runs = {kind: [] for kind in kinds}
    rss = {kind: [] for kind in kinds}
    for r in range(args.rounds + 1):  # round 0 warms the page cache
        order = list(kinds)[r % 3:] + list(kinds)[:r % 3]
        line = []
        for kind in order:
            seconds, peak = timed(*kinds[kind])
            if r:
                runs[kind].append(seconds)
                rss[kind].append(peak)
            line.append("%s %.3f" % (kind, seconds))
        if r:
            print("round %d: %s" % (r, ", ".join(line)), flush=True)
    floor = statistics.median(runs["floor"])
    for kind in kinds:
        median = statistics.median(runs[kind])
        # paired: each round's ratio to that round's floor (a shared machine's
        # load changes between rounds more than within one)
        paired = statistics.median(t / f for t, f in zip(runs[kind], runs["floor"]))
        print("%-5s median %.3f s = %.2fx the floor (paired %.2fx)%s"
              % (kind, median, median / floor, paired,
                 ", peak RSS %.0f MiB" % max(rss[kind]) if rss[kind][0] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
