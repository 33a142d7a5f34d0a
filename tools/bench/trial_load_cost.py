"""What trying each load first in a child process costs at cold start.

    python -m tools.bench.trial_load_cost [--runs N]

For the bundled model and a DataFrame pipeline (published to a temporary
directory, served by scikit-learn), and for the bundled model's ONNX graph,
each run is a fresh interpreter that imports the app's stack, then times
``load_model_dir`` with ``MODEL_LOAD_ISOLATED`` on and off. Printed: the
median load time of each, the added cost, the parent's peak RSS and the
child's (``ru_maxrss`` of the reaped child, which counts the pages it shares
with the parent too: an upper bound on what it added).
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import warnings

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_RUN = r"""
import json, resource, sys, time
from chalicelib.runtimes.choice import load_model_dir
import sklearn.base, numpy
started = time.perf_counter()
load_model_dir(sys.argv[1], sys.argv[2] or None)
seconds = time.perf_counter() - started
with open("/proc/self/status") as f:
    hwm = next(int(l.split()[1]) for l in f if l.startswith("VmHWM"))
print(json.dumps({"seconds": seconds, "parent_mib": hwm / 1024,
                  "child_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""


def _one(model_dir, runtime, isolated):
    env = dict(os.environ, MODEL_LOAD_ISOLATED="true" if isolated else "false",
               PYTHONPATH=PROJECT_DIR)
    out = subprocess.run([sys.executable, "-c", _RUN, model_dir, runtime or ""], env=env,
                         cwd=PROJECT_DIR, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _dataframe_model(root):
    import joblib
    from publisher.publish import publish
    from tools.fixtures.fixtures_families import tabular_pipeline
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, rows = tabular_pipeline()
    artifact = os.path.join(root, "frame.joblib")
    joblib.dump(model, artifact)
    out = os.path.join(root, "frame")
    publish(artifact, name="frame", version="1", out_dir=out, sample=rows, onnx=False)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    root = tempfile.mkdtemp(prefix="trial-load-")
    try:
        bundled = os.path.join(PROJECT_DIR, "model", "iris")
        cases = [("bundled (scikit-learn)", bundled, "scikit-learn"),
                 ("DataFrame pipeline (scikit-learn)", _dataframe_model(root), "scikit-learn")]
        with open(os.path.join(bundled, "model.json")) as f:
            if json.load(f).get("runtime") == "onnxruntime":
                cases.append(("bundled (onnxruntime)", bundled, "onnxruntime"))
        print("%-36s %10s %10s %8s %11s %10s" % ("model", "off ms", "on ms", "+ms",
                                                "parent MiB", "child MiB"))
        for label, model_dir, runtime in cases:
            off, on = [], []
            for _ in range(args.runs):
                off.append(_one(model_dir, runtime, False))
                on.append(_one(model_dir, runtime, True))
            off_ms = statistics.median(r["seconds"] for r in off) * 1000
            on_ms = statistics.median(r["seconds"] for r in on) * 1000
            print("%-36s %10.1f %10.1f %8.1f %11.0f %10.0f"
                  % (label, off_ms, on_ms, on_ms - off_ms,
                     max(r["parent_mib"] for r in on), max(r["child_mib"] for r in on)))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
