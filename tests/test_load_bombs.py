"""CPU and memory bombs built from allowed constructors, through the app's
init phase in a child process: a 503 naming the reason, fast, small."""
import json
import struct
import subprocess
import sys

import pytest

from tests.conftest import PROJECT_DIR

_CHILD = r"""
import json, os, shutil, sys, tempfile, time
from chalicelib.schema.card import sha256_of
d = tempfile.mkdtemp()
shutil.copy(os.path.join(sys.argv[1], "model", "iris", "model.json"), d)
open(os.path.join(d, "model.joblib"), "wb").write(sys.stdin.buffer.read())
card = json.load(open(os.path.join(d, "model.json")))
card.update(sha256=sha256_of(os.path.join(d, "model.joblib")), runtime="scikit-learn",
            onnx={"not_used": "a test"})
json.dump(card, open(os.path.join(d, "model.json"), "w"))
os.environ["MODEL_DIR"] = d
from chalicelib.protocols.service import from_environment
import sklearn.tree  # the imports any model needs, before the clock starts


def peak_mib():
    # VmHWM, not ru_maxrss: the latter survives exec and would report the
    # peak of the pytest process that started this one.
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmHWM")) / 1024


started = time.perf_counter()
from chalicelib.http.errors import ServiceError
try:
    from_environment().model.ready()
    status, message = 200, ""
except ServiceError as exc:
    status, message = exc.status, exc.message
print(json.dumps({"status": status, "message": message,
                  "seconds": time.perf_counter() - started,
                  "rss_mib": peak_mib()}))
"""


def seed_sequence_of_a_1_400_000_bit_integer():
    n = 1 << 1_400_000
    raw = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
    return (b"\x80\x02cnumpy.random.bit_generator\nSeedSequence\n\x8b"
            + struct.pack("<i", len(raw)) + raw + b"\x85R.")


def frozenset_of_range_4_000_000():
    return b"cbuiltins\nfrozenset\n(cbuiltins\nrange\n(I0\nI4000000\ntRtR."


def tree_of_a_2_to_the_200_outputs():
    return (b"\x80\x02csklearn.tree._tree\nTree\nI4\nI1\n\x8a\x1a" + (1 << 200).to_bytes(26, "little") + b"\x87R.")


@pytest.mark.parametrize("build, says", [
    (seed_sequence_of_a_1_400_000_bit_integer, "an integer of 1400001 bits"),
    (frozenset_of_range_4_000_000, "past its load budget"),
    (tree_of_a_2_to_the_200_outputs, "an integer of 201 bits"),
])
def test_bombs_from_allowed_constructors_are_503_within_budget(build, says):
    artifact = build()
    child = subprocess.run([sys.executable, "-c", _CHILD, PROJECT_DIR], input=artifact,
                           cwd=PROJECT_DIR, capture_output=True, timeout=120)
    assert child.returncode == 0, child.stderr[-2000:]
    result = json.loads(child.stdout.decode().strip().splitlines()[-1])
    assert result["status"] == 503 and says in result["message"], result
    assert result["seconds"] < 2, result
    assert result["rss_mib"] < 400, result
