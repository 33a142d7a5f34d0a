"""Trace and replay: run the app (:mod:`tools.build.exercise`) in an isolated
interpreter on the untrimmed dependencies (the trace) and on the unzipped
package (the replay), and compare what they answered and loaded."""
import json
import os
import subprocess
import sys

from tools.build.common import BuildError, _rel
from tools.build.trim import RUNTIME_LIB_DIR

EXERCISE_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "exercise.py")


def run_exercise(paths, environment, model_rel, out_file, cwd, timeout=300, lazy_file=None):
    """Run :func:`tools.build.exercise.exercise` in ``python -I -S -B`` with
    only ``paths`` (and the standard library) importable; return its JSON
    report."""
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
    cmd = [sys.executable, "-I", "-S", "-B", EXERCISE_FILE,
           "--paths", os.pathsep.join(paths), "--model-rel", model_rel, "--out", out_file]
    if lazy_file:
        cmd += ["--lazy", lazy_file]
    proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout)
    if proc.returncode != 0 or not os.path.isfile(out_file):
        sys.stderr.write(proc.stdout[-20000:])
        raise BuildError("running the app isolated from %s failed (exit %d); see above"
                         % (_rel(paths[0]), proc.returncode))
    with open(out_file) as f:
        return json.load(f)


def check_results(report, where):
    bad = [r for r in report["results"] if r["status"] not in r["expected"]]
    if bad:
        raise BuildError("the app %s answered unexpectedly: %s" % (where, "; ".join(
            "%s -> %s %s" % (r["name"], r["status"], (r["body"] or "")[:300]) for r in bad)))


def answer_differences(trace, other):
    """The requests ``other`` answered otherwise than ``trace`` (status,
    body, content type), described; empty when all are equal."""
    expected = {r["name"]: r for r in trace["results"]}
    diffs = []
    for r in other["results"]:
        e = expected.get(r["name"])
        if e is None or (e["status"], e["body"], e["content_type"]) != \
                (r["status"], r["body"], r["content_type"]):
            diffs.append("%s: %s %s (untrimmed: %s %s)" % (
                r["name"], r["status"], (r["body"] or "")[:200],
                e and e["status"], e and (e["body"] or "")[:200]))
    if len(other["results"]) != len(trace["results"]):
        diffs.append("%d answers, not %d" % (len(other["results"]), len(trace["results"])))
    return diffs


def compare_replay(trace, replay, package_dir):
    diffs = answer_differences(trace, replay)
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
