"""Coverage-guided fuzzing (atheris, libFuzzer) of the body parsers and the
guarded unpickler.

    python -m tools.harden.coverage_fuzz [--seconds N] [--target parsing|unpickler]

Each target runs in its own process for ``--seconds``, starting from the
committed seeds in ``tools/harden/corpus/<target>/`` and keeping what it
finds in ``build/harden/corpus-<target>/`` (pass that directory back in for a
longer run: ``--seconds 3600``). Only this project's modules are
instrumented, so coverage counts their branches.

* ``parsing``: ``parse_request`` (JSON, CSV with and without a header,
  odd media types) against the bundled model's numeric schema and a typed
  DataFrame schema (strings, categories, integers, booleans, missing
  values). Anything but a :class:`~chalicelib.http.errors.ServiceError`
  (a 4xx in the protocol's shape) is a crash.
* ``unpickler``: the bytes as a model artifact through the app's
  restricted, validating loader (``load_artifact`` with the card's width),
  then, if a model comes out, one prediction. The loader's refusals and any
  exception the app turns into a 503 are expected; a signal, a hang past
  ``-timeout`` or memory past ``-rss_limit_mb`` is a crash.

Printed per target: executions, coverage (libFuzzer's ``cov`` edges and
``ft`` features) and crashes; a crash's input lands in
``build/harden/fuzz-crashes/``, to become a named test.
"""
import argparse
import os
import re
import resource
import subprocess
import sys

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CORPUS = os.path.join(PROJECT_DIR, "tools", "harden", "corpus")
OUT = os.path.join(PROJECT_DIR, "build", "harden")
TARGETS = ("parsing", "unpickler")
N_FEATURES = 4

_TYPED_FEATURES = [
    {"name": "color", "type": "string", "categories": ["blue", "green", "red"]},
    {"name": "city", "type": "string", "accepts_missing_values": True},
    {"name": "age", "type": "integer"},
    {"name": "member", "type": "boolean"},
    {"name": "income", "type": "number"},
]
_CONTENT_TYPES = ["application/json", "text/csv", "text/csv; header=present",
                  "text/csv; header=absent", "application/json; charset=utf-8",
                  "text/plain", ""]


def _parsing_target():
    import atheris
    with atheris.instrument_imports(include=["chalicelib"]):
        from chalicelib.http.errors import ServiceError
        from chalicelib.schema.card import ModelCard
        from chalicelib.schema.features import Schema
        from chalicelib.schema.parsing import parse_request
    schemas = [ModelCard.read(os.path.join(PROJECT_DIR, "model", "iris")).schema,
               Schema(_TYPED_FEATURES, accepts_missing=False, input_kind="dataframe")]

    def one(data):
        if len(data) < 2:
            return
        schema = schemas[data[0] % len(schemas)]
        content_type = _CONTENT_TYPES[data[1] % len(_CONTENT_TYPES)]
        try:
            parse_request(data[2:], content_type, schema, max_rows=50)
        except ServiceError:
            pass
    return one


def _unpickler_target():
    import tempfile
    import warnings
    import atheris
    with atheris.instrument_imports(include=["chalicelib"]):
        import numpy as np
        from chalicelib.http.errors import ModelLoadError
        from chalicelib.safeload.loading import load_artifact
    warnings.simplefilter("ignore")
    fd, path = tempfile.mkstemp(prefix="fuzz-artifact-", suffix=".joblib")
    os.close(fd)
    row = np.ones((1, N_FEATURES))

    def one(data):
        with open(path, "wb") as f:
            f.write(data)
        try:
            model = load_artifact(path, trust=False, n_features=N_FEATURES)
        except (ModelLoadError, MemoryError):
            return
        except Exception:  # the app's load_pickled answers these with a 503 too
            return
        predict = getattr(model, "predict", None)
        if callable(predict):
            try:
                predict(row)
            except Exception:  # a 500 the request path catches; a signal would not be
                pass
    return one


def _child(target, libfuzzer_args):
    import atheris
    one = _parsing_target() if target == "parsing" else _unpickler_target()
    atheris.Setup([sys.argv[0]] + libfuzzer_args, one)
    atheris.Fuzz()


_STATUS = re.compile(r"#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+)")


RSS_LIMIT_MB = 2048  # memory a run may use before it counts as a crash


def run(target, seconds):
    """``{"target", "executions", "edges", "features", "crashes", "seconds"}``
    for one bounded run of ``target``."""
    found = os.path.join(OUT, "corpus-" + target)
    crashes = os.path.join(OUT, "fuzz-crashes", target)
    os.makedirs(found, exist_ok=True)
    os.makedirs(crashes, exist_ok=True)
    before = set(os.listdir(crashes))
    # libFuzzer reads its peak RSS from getrusage, and Linux hands a child its
    # parent's high-water mark across fork and exec: a child of a large
    # process (a pytest worker late in a run) would start "over" the limit.
    # The limit is RSS_LIMIT_MB above what the child inherits.
    inherited_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    args = ["-max_total_time=%d" % seconds, "-timeout=10",
            "-rss_limit_mb=%d" % (RSS_LIMIT_MB + inherited_mb),
            "-max_len=65536", "-print_final_stats=1",
            "-artifact_prefix=%s/" % crashes, found, os.path.join(CORPUS, target)]
    env = dict(os.environ, PYTHONPATH=PROJECT_DIR, PYTHONDONTWRITEBYTECODE="1",
               MODEL_LOAD_TIMEOUT_S="5")
    proc = subprocess.run([sys.executable, "-m", "tools.harden.coverage_fuzz", "--child",
                           target, "--"] + args, cwd=PROJECT_DIR, env=env,
                          capture_output=True, text=True, timeout=seconds + 120)
    log = proc.stderr
    with open(os.path.join(OUT, "coverage-fuzz-%s.log" % target), "w") as f:
        f.write(log[-200_000:])
    statuses = _STATUS.findall(log)
    executed = re.search(r"stat::number_of_executed_units: (\d+)", log)
    new_crashes = sorted(set(os.listdir(crashes)) - before)
    return {"target": target, "seconds": seconds,
            "executions": int(executed.group(1)) if executed else
            (int(statuses[-1][0]) if statuses else 0),
            "edges": int(statuses[-1][1]) if statuses else 0,
            "features": int(statuses[-1][2]) if statuses else 0,
            "crashes": len(new_crashes) + (0 if proc.returncode == 0 or new_crashes else 1),
            "crash_files": new_crashes, "returncode": proc.returncode}


def line(result):
    return ("%s: %d executions in %d s, coverage %d edges / %d features, %d crashes%s"
            % (result["target"], result["executions"], result["seconds"], result["edges"],
               result["features"], result["crashes"],
               " (build/harden/fuzz-crashes/%s/)" % result["target"] if result["crashes"]
               else ""))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        _child(argv[1], argv[3:] if argv[2:3] == ["--"] else argv[2:])
        return 0
    parser = argparse.ArgumentParser(prog="python -m tools.harden.coverage_fuzz",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=45, help="per target")
    parser.add_argument("--target", choices=TARGETS, action="append")
    args = parser.parse_args(argv)
    results = [run(target, args.seconds) for target in (args.target or TARGETS)]
    for result in results:
        print(line(result))
    return 0 if all(r["crashes"] == 0 and r["executions"] > 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
