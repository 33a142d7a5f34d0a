"""The hardening figures: ``.venv/bin/python -m tools.harden``.

Runs, with their full counts,

* the fuzz (``tests/test_fuzz.py``, ``FUZZ_EXAMPLES=12000``) and the named
  hostile inputs (``tests/test_hostile_inputs.py``), in one pytest process;
* the soak (``tests/test_soak.py``, ``SOAK_REQUESTS=100000``) in another, at
  the same time (the soak's memory figure is then its own process's);
* the typed fuzz (``tests/test_fuzz_typed.py``: a DataFrame pipeline and a
  text model, each case checked against ``predict()``), the longest step,
  in a third process from the start: the steps below share the other core
  with it;
* the malicious-artifact corpus (``tools/fixtures/malicious.py``): every
  name-based payload through the app's loader in a child process, then a
  check that no payload's marker file exists; every technique that uses
  allowlisted names only (``TECHNIQUES``) through the app's init phase, each in its own child (a
  crash costs one row, not the table); then ``tests/test_safe_loading.py``
  and ``tests/test_hostile_artifacts.py`` (controls included); then the
  attacks that are not artifacts (``tools/harden/attack_rows.py``: a looping
  graph, a 128-byte NPY body, policy bypasses, a wildcard upload, an S3
  outage, native-state mutations), each by the tests that replay it. It
  prints the table of attacks tried and attacks held, one row each,

* the worst-case request bodies at the size limit
  (``tools/harden/hostile_bodies.py``) against a normal body of the same type,
* coverage-guided fuzzing (atheris) of the body parsers and the guarded
  unpickler, ``--coverage-seconds`` each (``tools/harden/coverage_fuzz.py``),

then prints one line per category and exits non-zero if any check failed.
The tests write their figures to ``build/harden/*.json``; pytest's output
goes to ``build/harden/*.log`` (its tail is printed on failure).
"""
import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from tools.harden import attack_rows, coverage_fuzz

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(PROJECT_DIR, "build", "harden")
FUZZ_EXAMPLES = 12_000
SOAK_REQUESTS = 100_000
MIN_FUZZ_CASES = 10_000
COVERAGE_SECONDS = 50      # per target; the two targets run at once, one core each

# Runs in a child process: loads every malicious artifact with the app's
# loader and reports which were refused and which left a marker file.
_MALICIOUS_SCRIPT = r"""
import json, os, sys, tempfile, time, warnings
warnings.simplefilter("ignore")
from tools.fixtures import malicious
from chalicelib.safeload.loading import load_artifact
root = tempfile.mkdtemp(prefix="harden-malicious-")
refused, loaded, other = [], [], []
built = malicious.build_all(root)
for name, d, marker, _ in built:
    try:
        load_artifact(os.path.join(d, "model.joblib"))
    except Exception as exc:
        (refused if type(exc).__name__ == "ModelLoadError" else other).append(name)
    else:
        loaded.append(name)
time.sleep(0.5)  # payloads that start a child process land a moment later
side_effects = [name for name, d, marker, _ in built if os.path.exists(marker)]
print(json.dumps({"cases": len(built), "refused": len(refused), "loaded": loaded,
                  "other_errors": other, "side_effects": side_effects}))
"""


# One allowlisted-names technique through the app's init phase; held = 503 naming the
# expected reason, exit code 0 (no crash), no secret in the output.
_TECHNIQUE_SCRIPT = r"""
import json, os, sys, tempfile, warnings
warnings.simplefilter("ignore")
from tools.fixtures import malicious
d = tempfile.mkdtemp(prefix="harden-technique-")
malicious.build_technique(sys.argv[1], d)
malicious.write_card(d, malicious.CARD_WIDTHS[sys.argv[1]])
os.environ["MODEL_DIR"] = d
os.environ.update(malicious.TECHNIQUE_ENV.get(sys.argv[1], {}))
from chalicelib.protocols import model_api
from chalicelib.protocols.service import from_environment
reply = model_api.health(from_environment(), None)
print(json.dumps({"status": reply.status, "message": json.loads(reply.body).get("Message", "")}))
"""


def _techniques():
    """[(technique, held)] for every allowlisted-names technique, each in a child."""
    from tools.fixtures import malicious
    rows = []
    for name, (_, refuses, _) in malicious.TECHNIQUES.items():
        try:
            child = subprocess.run([sys.executable, "-c", _TECHNIQUE_SCRIPT, name],
                                   cwd=PROJECT_DIR, capture_output=True, text=True, timeout=120,
                                   env=dict(os.environ, AWS_SECRET_ACCESS_KEY=malicious.SECRET))
            result = json.loads(child.stdout.strip().splitlines()[-1])
            held = (child.returncode == 0 and result["status"] == 503
                    and refuses in result["message"]
                    and malicious.SECRET not in child.stdout + child.stderr)
        except (subprocess.TimeoutExpired, ValueError, IndexError, KeyError):
            held = False
        rows.append((name, held))
    return rows


def _pytest(args, env_extra, log_name):
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", **env_extra)
    log = open(os.path.join(OUT, log_name), "w")
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             "--no-header", "-rfE"] + args,
                            cwd=PROJECT_DIR, env=env, stdout=log, stderr=subprocess.STDOUT)
    return proc, log


def _read(name):
    try:
        with open(os.path.join(OUT, name)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _tail(log_name, lines=25):
    try:
        with open(os.path.join(OUT, log_name)) as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


def _malicious():
    """(line, ok) for the malicious-artifact corpus."""
    direct = subprocess.run([sys.executable, "-c", _MALICIOUS_SCRIPT], cwd=PROJECT_DIR,
                            capture_output=True, text=True, timeout=300)
    try:
        figures = json.loads(direct.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return ("malicious artifacts: corpus did not run: %s"
                % (direct.stderr.strip().splitlines() or ["?"])[-1]), False
    techniques = _techniques()
    tests = ["tests/test_safe_loading.py", "tests/test_hostile_artifacts.py"]
    proc, log = _pytest(tests, {}, "safe_loading.log")
    rc = proc.wait()
    log.close()
    held_techniques = sum(1 for _, held in techniques if held)
    ok = (rc == 0 and figures["refused"] == figures["cases"] and not figures["side_effects"]
          and held_techniques == len(techniques))
    line = ("malicious artifacts: %d refused of %d, %d side effects; %s %s"
            % (figures["refused"], figures["cases"], len(figures["side_effects"]),
               " and ".join(tests),
               "passed" if rc == 0 else "FAILED (build/harden/safe_loading.log)"))
    if figures["loaded"] or figures["other_errors"]:
        line += " (loaded: %s; other errors: %s)" % (figures["loaded"], figures["other_errors"])
    held_payloads = figures["refused"] - len(set(figures["side_effects"]))
    rows = attack_rows.run(OUT)
    held_rows = sum(1 for _, _, held in rows if held)
    ok = ok and held_rows == len(rows)
    table = ["", "| attack | tried | held |", "|---|---|---|",
             "| name-based payloads (os.system, eval, pickle.loads, ...; malicious.py) | %d | %d |"
             % (figures["cases"], max(held_payloads, 0))]
    table += ["| artifact: %s | 1 | %s |" % (name, "held" if held else "NOT HELD")
              for name, held in techniques]
    table += ["| %s | %d tests | %s |" % (attack, count, "held" if held else "NOT HELD")
              for attack, count, held in rows]
    table.append("| **attacks tried / attacks held** | **%d** | **%d** |"
                 % (figures["cases"] + len(techniques) + len(rows),
                    max(held_payloads, 0) + held_techniques + held_rows))
    return line + "\n".join(table), ok


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tools.harden",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--fuzz-examples", type=int, default=FUZZ_EXAMPLES)
    parser.add_argument("--soak-requests", type=int, default=SOAK_REQUESTS)
    parser.add_argument("--coverage-seconds", type=int, default=COVERAGE_SECONDS,
                        help="coverage-guided fuzzing, per target")
    args = parser.parse_args(argv)
    os.makedirs(OUT, exist_ok=True)
    for stale in ("fuzz.json", "fuzz-scikit-learn.json", "fuzz_typed.json", "hostile.json",
                  "soak.json"):
        if os.path.exists(os.path.join(OUT, stale)):
            os.remove(os.path.join(OUT, stale))
    started = time.perf_counter()
    took = {}  # step -> seconds, printed last: where the run's time went

    def timed(step, since):
        took[step] = time.perf_counter() - since
        return time.perf_counter()

    typed_proc, typed_log = _pytest(["tests/test_fuzz_typed.py"],
                                    {"FUZZ_EXAMPLES": str(args.fuzz_examples)}, "fuzz_typed.log")
    fuzz_proc, fuzz_log = _pytest(["tests/test_hostile_inputs.py", "tests/test_fuzz.py"],
                                  {"FUZZ_EXAMPLES": str(args.fuzz_examples)}, "fuzz.log")
    soak_proc, soak_log = _pytest(["tests/test_soak.py"],
                                  {"SOAK_REQUESTS": str(args.soak_requests)}, "soak.log")
    fuzz_rc = fuzz_proc.wait()
    fuzz_log.close()
    mark = timed("fuzz", started)
    # the bundled model through its other runtime: the pickle, by scikit-learn
    pickled_proc, pickled_log = _pytest(
        ["tests/test_fuzz.py"], {"FUZZ_EXAMPLES": str(args.fuzz_examples // 4),
                                 "FUZZ_RUNTIME": "scikit-learn"}, "fuzz-scikit-learn.log")
    fuzz_rc = pickled_proc.wait() or fuzz_rc
    pickled_log.close()
    mark = timed("fuzz on the pickle", mark)
    malicious_line, malicious_ok = _malicious()
    mark = timed("malicious artifacts and attack rows", mark)
    soak_rc = soak_proc.wait()
    soak_log.close()
    mark = timed("rest of the soak", mark)
    bodies_proc = subprocess.run([sys.executable, "-m", "tools.harden.hostile_bodies", "--json",
                                  os.path.join(OUT, "bodies.json")], cwd=PROJECT_DIR,
                                 capture_output=True, text=True)
    mark = timed("worst-case bodies", mark)
    with ThreadPoolExecutor(len(coverage_fuzz.TARGETS)) as pool:  # one child process each
        fuzzed = list(pool.map(lambda target: coverage_fuzz.run(target, args.coverage_seconds),
                               coverage_fuzz.TARGETS))
    mark = timed("coverage fuzz (targets at once)", mark)
    typed_rc = typed_proc.wait()
    typed_log.close()
    timed("rest of the typed fuzz", mark)

    ok = True
    lines = []
    fuzz = _read("fuzz.json")
    hostile = _read("hostile.json")
    soak = _read("soak.json")

    if fuzz is None:
        lines.append("fuzz: no figures (see build/harden/fuzz.log)")
        ok = False
    else:
        good = fuzz["server_errors"] == 0 and fuzz["requests"] >= min(
            MIN_FUZZ_CASES, 0.9 * args.fuzz_examples)
        lines.append("fuzz: %d cases tried, %d 5xx (%d valid answers equal to the served "
                     "runtime's bare predict())"
                     % (fuzz["requests"], fuzz["server_errors"], fuzz["valid_checked"]))
        pickled = _read("fuzz-scikit-learn.json")
        if pickled is None:
            lines.append("fuzz (MODEL_RUNTIME=scikit-learn): no figures "
                         "(see build/harden/fuzz-scikit-learn.log)")
            ok = False
        else:
            good = good and pickled["server_errors"] == 0
            lines.append("fuzz (MODEL_RUNTIME=scikit-learn): %d cases, %d 5xx (%d valid answers "
                         "equal to the pickle's predict())" % (
                             pickled["requests"], pickled["server_errors"],
                             pickled["valid_checked"]))
        ok &= good
    typed = _read("fuzz_typed.json")
    if typed is None:
        lines.append("typed fuzz: no figures (see build/harden/fuzz_typed.log)")
        ok = False
    else:
        lines.append("typed fuzz (DataFrame pipeline, text model): %d cases, %d 5xx (%d valid "
                     "answers equal to predict())"
                     % (typed["requests"], typed["server_errors"], typed["valid_checked"]))
        ok &= typed["server_errors"] == 0
    if typed_rc != 0:
        lines.append("  typed fuzz tests FAILED (build/harden/fuzz_typed.log):\n"
                     + _tail("fuzz_typed.log"))
        ok = False
    if hostile is None:
        lines.append("hostile inputs: no figures (see build/harden/fuzz.log)")
        ok = False
    else:
        lines.append("hostile inputs: %d named cases, %d 5xx"
                     % (hostile["cases"], hostile["server_errors"]))
        ok &= hostile["server_errors"] == 0
    if fuzz_rc != 0:
        lines.append("  fuzz/hostile tests FAILED (build/harden/fuzz.log):\n"
                     + _tail("fuzz.log"))
        ok = False

    if soak is None:
        lines.append("soak: no figures (see build/harden/soak.log)")
        ok = False
    else:
        lines.append("soak: %d requests, RSS growth %.1f MiB (%.1f -> %.1f MiB after warm-up), "
                     "predictions %s, %d 5xx, %.0f s"
                     % (soak["requests"], soak["rss_growth_mib"], soak["rss_after_warmup_mib"],
                        soak["rss_end_mib"],
                        "unchanged" if soak["predictions_unchanged"] else "CHANGED",
                        soak["server_errors"], soak["seconds"]))
        ok &= soak["predictions_unchanged"] and soak["server_errors"] == 0
    if soak_rc != 0:
        lines.append("  soak test FAILED (build/harden/soak.log):\n" + _tail("soak.log"))
        ok = False

    bodies = _read("bodies.json") or []
    hostile_bodies = [b for b in bodies if not b["normal"]]
    lines.append("worst-case bodies at the 6 MiB limit: %d shapes, %d within 2x the time and "
                 "memory of a normal 6 MiB body of the same type\n%s"
                 % (len(hostile_bodies), sum(b["held"] for b in hostile_bodies),
                    bodies_proc.stdout.rstrip() or bodies_proc.stderr[-1000:]))
    ok &= bodies_proc.returncode == 0 and bool(hostile_bodies)
    lines.append(malicious_line)
    ok &= malicious_ok

    lines.append("coverage-guided fuzz (atheris; seeds tools/harden/corpus/, found inputs "
                 "build/harden/corpus-*/):")
    lines += ["  " + coverage_fuzz.line(result) for result in fuzzed]
    ok &= all(r["crashes"] == 0 and r["executions"] > 0 for r in fuzzed)

    for line in lines:
        print(line)
    print("steps (the soak and the typed fuzz run beside the others): "
          + ", ".join("%s %.0f s" % (step, seconds) for step, seconds in took.items()))
    print("harden: %s in %.0f s" % ("ok" if ok else "FAILED", time.perf_counter() - started))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
