"""Hostile artifacts: techniques that name only allowlisted globals.

Each technique of ``tools/fixtures/malicious.py`` (``TECHNIQUES``: forged-dtype
pointers, stock estimators reading ``/proc/self/environ``, each segfault
primitive, each bomb, the hang, the post-unpickling surprises) is

* refused by the app at start in a **child process** (``import``-time path of
  ``service.from_environment``): 503 with the reason, exit code 0 (no crash),
  bounded peak memory and time;
* refused by ``publisher.publish`` (exit 2, nothing written);
* and, where that is safe to show, proved real: under plain ``joblib.load``
  (a child process, limits set) it fires, crashes, hangs or asks for GiBs.
"""
import json
import os
import subprocess
import sys
import textwrap

import pytest

from tools.fixtures import malicious
from tests.conftest import PROJECT_DIR

NAMES = list(malicious.TECHNIQUES)
# publish proves a prediction before it checks classes_: it refuses there.
PUBLISH_SAYS = {"classes_ is bytes": "fails to predict an example row",
                # publish has no card yet: the width the trees lack is the refusal
                "gradient boosting trees without n_features_in_ claiming 2**31-1 features":
                "nothing bounds its members"}
PEAK_RSS_MIB = 450          # importing the stack is ~150-250 MiB; a bomb would be GiBs
SECONDS = 90

_APP_CHILD = textwrap.dedent("""
    import json, os, sys, time, warnings
    warnings.simplefilter("ignore")
    from tools.fixtures import malicious
    d = sys.argv[1]
    malicious.build_technique(sys.argv[2], d)
    malicious.write_card(d, malicious.CARD_WIDTHS[sys.argv[2]])
    os.environ["MODEL_DIR"] = d
    os.environ.update(malicious.TECHNIQUE_ENV.get(sys.argv[2], {}))
    started = time.perf_counter()
    from chalicelib.protocols import model_api
    from chalicelib.protocols.service import from_environment
    service = from_environment()      # the Lambda's init phase
    reply = model_api.health(service, None)
    # VmHWM, not ru_maxrss: the latter survives exec and would report the
    # peak of the pytest process that forked this one.
    with open("/proc/self/status") as f:
        peak = [int(l.split()[1]) for l in f if l.startswith("VmHWM:")][0] / 1024
    print(json.dumps({"status": reply.status, "body": json.loads(reply.body),
                      "seconds": time.perf_counter() - started, "peak_rss_mib": peak}))
""")


@pytest.mark.parametrize("name", NAMES)
def test_app_refuses_in_a_child_process_with_503_and_the_reason(tmp_path, name):
    marker = tmp_path / "marker"
    result = subprocess.run([sys.executable, "-c", _APP_CHILD, str(tmp_path / "m"), name],
                            cwd=PROJECT_DIR, capture_output=True, text=True, timeout=SECONDS,
                            env=dict(os.environ, AWS_SECRET_ACCESS_KEY=malicious.SECRET + "rest"))
    assert result.returncode == 0, result.stderr[-2000:]          # no crash, no import error
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["status"] == 503
    assert report["body"]["Code"] == "ServiceUnavailable"
    assert malicious.TECHNIQUES[name][1] in report["body"]["Message"]
    assert malicious.SECRET not in result.stdout + result.stderr
    assert report["peak_rss_mib"] < PEAK_RSS_MIB, report
    assert report["seconds"] < 30, report
    assert not marker.exists()


@pytest.mark.parametrize("name", NAMES)
def test_publish_refuses(tmp_path, capsys, monkeypatch, name):
    from publisher.publish import main
    for key, value in malicious.TECHNIQUE_ENV.get(name, {}).items():
        monkeypatch.setenv(key, value)
    d = tmp_path / "m"
    malicious.build_technique(name, d)
    out = tmp_path / "out"
    code = main([str(d / "model.joblib"), "--name", "x", "--version", "1", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "publish: refused: " in err
    assert PUBLISH_SAYS.get(name, malicious.TECHNIQUES[name][1]) in err
    assert not out.exists()


_CONTROL_CHILD = textwrap.dedent("""
    import sys, warnings
    warnings.simplefilter("ignore")
    from tools.fixtures import malicious
    malicious.control(sys.argv[2], sys.argv[1])
""")

CONTROLLED = [n for n in NAMES if malicious.TECHNIQUES[n][2]]


@pytest.mark.parametrize("name", CONTROLLED)
def test_control_the_technique_is_real_under_plain_joblib_load(tmp_path, name):
    kind = malicious.TECHNIQUES[name][2]
    args = [sys.executable, "-c", _CONTROL_CHILD, str(tmp_path / "m"), name]
    env = dict(os.environ, AWS_SECRET_ACCESS_KEY=malicious.SECRET + "rest")
    if kind == "hang":
        proc = subprocess.Popen(args, cwd=PROJECT_DIR, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        try:
            proc.wait(timeout=15)       # imports, then the hang
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return
        pytest.fail("plain joblib.load finished: %r" % proc.stderr.read()[-500:])
    result = subprocess.run(args, cwd=PROJECT_DIR, env=env, capture_output=True, text=True,
                            timeout=SECONDS)
    if kind == "crash":
        assert result.returncode < 0, (result.returncode, result.stdout, result.stderr[-500:])
    elif kind == "memory":
        assert "FIRED: MemoryError" in result.stdout, result.stderr[-500:]
    elif name.startswith("forged object dtype"):
        assert "FIRED: element is True: True" in result.stdout, result.stderr[-500:]
    else:
        assert "FIRED: %s" % malicious.SECRET in result.stdout, result.stderr[-500:]


def test_every_issue_10_technique_class_is_in_the_corpus():
    kinds = {kind for _, _, kind in malicious.TECHNIQUES.values()}
    assert {"result", "crash", "hang", "memory"} <= kinds
    assert len(malicious.TECHNIQUES) >= 13
