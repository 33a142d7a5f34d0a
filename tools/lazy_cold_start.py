"""Cold start by hand: the built package with its lazy imports, the same
package with every import eager (``LAZY_IMPORTS=off``), and the floor.

    .venv/bin/python -m tools.lazy_cold_start [--package build/package] [--rounds 7]

Run ``make build`` first (``build/package`` is the tree the zip was made
from). Each round starts, in turn, three fresh processes and times each
whole process (start to exit):

* floor: the venv (bytecode cache warm) importing numpy, scikit-learn and
  joblib, ``joblib.load`` of the artifact and one ``predict`` (what
  ``make bench`` calls the floor);
* lazy / eager: ``python -I -S -B`` on the package, ``import app`` (the
  model loads) and one ``POST /model`` API Gateway event (the card's
  example, with probabilities), with the stage's thread settings.

Prints each round and the medians, the ratios to the floor and peak RSS.
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

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

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
    parser = argparse.ArgumentParser(prog="python -m tools.lazy_cold_start")
    parser.add_argument("--package", default=os.path.join(REPO, "build", "package"))
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    package = os.path.abspath(args.package)
    with open(os.path.join(package, "model", "model.json")) as f:
        card = json.load(f)
    names = [feature["name"] for feature in card["features"]]
    example = card.get("example", {}).get("instances", [[0.0] * len(names)])[0]
    row = [example[n] for n in names] if isinstance(example, dict) else example
    artifact = os.path.join(package, "model", card.get("artifact", "model.joblib"))
    threads = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
            "LOG_REQUESTS": "false", "LAMBDA_TASK_ROOT": package, **threads}
    body = json.dumps({"instances": [row]})
    kinds = {
        "floor": ([sys.executable, "-c", FLOOR, artifact, ",".join(map(str, row))],
                  dict(os.environ, **threads), REPO),
        "lazy": ([sys.executable, "-I", "-S", "-B", "-c", PACKAGE, package, body,
                  os.path.join(REPO, "tools")], base, package),
        "eager": ([sys.executable, "-I", "-S", "-B", "-c", PACKAGE, package, body,
                   os.path.join(REPO, "tools")], dict(base, LAZY_IMPORTS="off"), package),
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
        print("%-5s median %.3f s = %.2fx the floor%s"
              % (kind, median, median / floor,
                 ", peak RSS %.0f MiB" % max(rss[kind]) if rss[kind][0] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
