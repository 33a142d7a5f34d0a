"""A model's load tried first in a forked child under kernel-enforced limits
(chalicelib/safeload/trial_load.py): C work no opcode check can interrupt,
and memory spent after unpickling (native-state validation, the audit), are
503s within the time budget and within a 512 MB Lambda, with no signal in
the serving process."""
import ctypes
import json
import math
import os
import subprocess
import sys
import time

import pytest

from chalicelib.http.errors import ModelLoadError
from chalicelib.safeload import trial_load
from tests.conftest import BUNDLED_MODEL, PROJECT_DIR
from tools.fixtures import malicious

ARTIFACT = os.path.join(BUNDLED_MODEL, "model.joblib")
MEMORY_BOMB = "lists 5,000 deep holding 200,000 items: GiBs after unpickling (210 KB)"
CPU_BOMB = "lists 300,000 deep: quadratic C work after unpickling (600 KB)"
LAMBDA_MIB = 512

_state = {"touched": False}


# --------------------------------------------------------------------------
# The mechanism, in this (pytest's) process.

def test_a_load_that_holds_returns_and_leaves_the_parent_untouched():
    def load():
        _state["touched"] = True
    trial_load.trial(load, ARTIFACT)
    assert _state["touched"] is False


def test_a_segfault_in_native_code_is_a_refusal_naming_the_signal():
    with pytest.raises(ModelLoadError, match="crashed the process that tried to load it "
                                             r"\(signal SIGSEGV\)"):
        trial_load.trial(lambda: ctypes.string_at(0), ARTIFACT)


def test_c_work_past_the_deadline_is_stopped_at_the_deadline(monkeypatch):
    monkeypatch.setenv("MODEL_LOAD_TIMEOUT_S", "0.5")
    started = time.monotonic()
    with pytest.raises(ModelLoadError, match="time budget of 0.5 s"):
        trial_load.trial(lambda: math.factorial(10 ** 8), ARTIFACT)   # minutes of C
    assert time.monotonic() - started < 2


def test_a_load_asleep_past_the_deadline_is_stopped_by_the_wall_clock(monkeypatch):
    monkeypatch.setenv("MODEL_LOAD_TIMEOUT_S", "0.5")
    started = time.monotonic()
    with pytest.raises(ModelLoadError, match="time budget"):
        trial_load.trial(lambda: time.sleep(60), ARTIFACT)      # no CPU: RLIMIT_CPU is blind
    assert time.monotonic() - started < 2


def test_an_allocation_past_the_childs_address_space_is_memory_error(monkeypatch):
    monkeypatch.setenv("MODEL_LOAD_MAX_MB", "64")
    with pytest.raises(ModelLoadError, match="memory budget of 128 MiB"):
        trial_load.trial(lambda: bytearray(1 << 30), ARTIFACT)


def test_a_lambdas_memory_bounds_the_child_beside_the_parent():
    rss = trial_load.resident_bytes()
    limit = trial_load.child_limit(256 << 20, {"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512"})
    assert limit <= max((512 << 20) - rss - trial_load.RESERVE_BYTES, 64 << 20)
    assert trial_load.child_limit(256 << 20, {}) == (256 << 20) + trial_load.HEADROOM_BYTES


def test_the_switch_turns_the_child_off(monkeypatch):
    monkeypatch.setenv("MODEL_LOAD_ISOLATED", "false")
    assert trial_load.enabled() is False
    monkeypatch.setenv("MODEL_LOAD_ISOLATED", "sometimes")
    with pytest.raises(ModelLoadError, match="MODEL_LOAD_ISOLATED must be true or false"):
        trial_load.enabled()


# --------------------------------------------------------------------------
# Bombs after unpickling, through the app's init phase in a child process
# whose memory (its own resident set plus its children's private pages) is
# sampled every 2 ms.

_APP = r"""
import json, os, sys, threading, time, warnings
warnings.simplefilter("ignore")
from tools.fixtures import malicious
d, name = sys.argv[1], sys.argv[2]
malicious.build_technique(name, d)
malicious.write_card(d, malicious.CARD_WIDTHS[name])
os.environ["MODEL_DIR"] = d
from chalicelib.protocols import model_api
from chalicelib.protocols.service import from_environment
import sklearn.tree, sklearn.base


def kib(path, keys):
    try:
        with open(path) as f:
            return sum(int(l.split()[1]) for l in f if l.split(":")[0] in keys)
    except OSError:
        return 0


def children():
    pids = []
    for tid in os.listdir("/proc/self/task"):
        try:
            with open("/proc/self/task/%s/children" % tid) as f:
                pids += f.read().split()
        except OSError:
            pass
    return pids


peak = [0]
done = threading.Event()


def sample():
    while not done.is_set():
        tree = kib("/proc/self/status", ("VmRSS",)) + sum(
            kib("/proc/%s/smaps_rollup" % pid, ("Private_Clean", "Private_Dirty"))
            for pid in children())
        peak[0] = max(peak[0], tree)
        time.sleep(0.002)


sampler = threading.Thread(target=sample, daemon=True)
sampler.start()
started = time.perf_counter()
reply = model_api.health(from_environment(), None)
seconds = time.perf_counter() - started
done.set()
sampler.join()
print(json.dumps({"status": reply.status, "message": json.loads(reply.body).get("Message", ""),
                  "seconds": seconds, "tree_peak_mib": peak[0] / 1024,
                  "parent_hwm_mib": kib("/proc/self/status", ("VmHWM",)) / 1024}))
"""


def _app_init(tmp_path, name, **env):
    env = dict(os.environ, AWS_LAMBDA_FUNCTION_MEMORY_SIZE=str(LAMBDA_MIB),
               **malicious.TECHNIQUE_ENV.get(name, {}), **env)
    child = subprocess.run([sys.executable, "-c", _APP, str(tmp_path / "m"), name],
                           cwd=PROJECT_DIR, capture_output=True, text=True, timeout=120, env=env)
    assert child.returncode == 0, child.stderr[-2000:]          # no signal, no traceback
    return json.loads(child.stdout.strip().splitlines()[-1])


def test_memory_spent_after_unpickling_is_a_503_within_a_512_mb_lambda(tmp_path):
    result = _app_init(tmp_path, MEMORY_BOMB)
    assert result["status"] == 503 and "MemoryError" in result["message"], result
    assert result["tree_peak_mib"] < LAMBDA_MIB, result
    assert result["seconds"] < 10, result


def test_control_in_process_the_same_artifact_passes_a_512_mb_lambda(tmp_path):
    result = _app_init(tmp_path, MEMORY_BOMB, MODEL_LOAD_ISOLATED="false")
    assert result["status"] == 503, result                # the in-process cap catches it...
    assert result["parent_hwm_mib"] > LAMBDA_MIB, result  # ...only after the Lambda is gone


def test_quadratic_c_work_after_unpickling_is_a_503_at_the_deadline(tmp_path):
    budget = float(malicious.TECHNIQUE_ENV[CPU_BOMB]["MODEL_LOAD_TIMEOUT_S"])
    result = _app_init(tmp_path, CPU_BOMB)
    assert result["status"] == 503 and "time budget of 3 s" in result["message"], result
    assert budget <= result["seconds"] < budget + 1.5, result
    assert result["tree_peak_mib"] < LAMBDA_MIB, result


def test_control_in_process_the_same_artifact_outruns_its_budget(tmp_path):
    budget = float(malicious.TECHNIQUE_ENV[CPU_BOMB]["MODEL_LOAD_TIMEOUT_S"])
    try:
        result = _app_init_limited(tmp_path, CPU_BOMB, seconds=4 * budget)
    except subprocess.TimeoutExpired:
        return                                            # still busy at 4x its budget
    assert result["seconds"] > 2 * budget, result


def _app_init_limited(tmp_path, name, seconds):
    env = dict(os.environ, MODEL_LOAD_ISOLATED="false", **malicious.TECHNIQUE_ENV[name])
    child = subprocess.run([sys.executable, "-c", _APP, str(tmp_path / "m"), name],
                           cwd=PROJECT_DIR, capture_output=True, text=True, timeout=seconds + 8,
                           env=env)
    return json.loads(child.stdout.strip().splitlines()[-1])


def test_the_chalice_test_client_answers_503_with_the_reason(tmp_path, serve):
    malicious.build_technique(MEMORY_BOMB, tmp_path)
    malicious.write_card(tmp_path, malicious.CARD_WIDTHS[MEMORY_BOMB])
    reply = serve(MODEL_DIR=str(tmp_path)).post({"rows": [[1, 2, 3, 4]]})
    assert reply.status_code == 503
    assert "MemoryError" in json.loads(reply.body)["Message"]
