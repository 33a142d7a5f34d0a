"""X-Ray subsegments without the SDK (chalicelib/ops/tracing.py): with a daemon
address and a sampled trace header, each POST /model sends one subsegment
document to the daemon over UDP; here the "daemon" is a real UDP socket on
127.0.0.1 and the request goes through the real app. Only AWS can prove that
X-Ray accepts and shows it."""
import json
import re
import socket

import pytest

from chalicelib.ops import tracing
from tests.conftest import IRIS_ROWS

ROOT = "1-5759e988-bd862e3fe1be46a994272793"
PARENT = "53995c3f42cd8ad8"


@pytest.fixture
def daemon(monkeypatch):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)
    monkeypatch.setattr(tracing, "DAEMON", sock.getsockname())
    yield sock
    sock.close()


def _received(sock):
    data, _ = sock.recvfrom(65536)
    header, _, body = data.partition(b"\n")
    assert json.loads(header) == {"format": "json", "version": 1}
    return json.loads(body)


def test_a_sampled_request_sends_its_subsegment(serve, daemon, monkeypatch):
    monkeypatch.setenv("_X_AMZN_TRACE_ID", f"Root={ROOT};Parent={PARENT};Sampled=1")
    api = serve(LOG_REQUESTS="true")
    api.post({"instances": IRIS_ROWS})
    doc = _received(daemon)
    assert (doc["type"], doc["trace_id"], doc["parent_id"], doc["name"]) == (
        "subsegment", ROOT, PARENT, "POST /model")
    assert re.fullmatch(r"[0-9a-f]{16}", doc["id"])
    assert 0 <= doc["end_time"] - doc["start_time"] < 60
    assert doc["annotations"] == {"model_name": "iris-classifier", "model_version": "1.0.0",
                                  "status": 200}
    assert "error" not in doc and "fault" not in doc
    api.post("{broken")
    assert _received(daemon)["error"] is True


def test_unsampled_or_untraced_requests_send_nothing(serve, daemon, monkeypatch):
    api = serve(LOG_REQUESTS="true")
    daemon.settimeout(0.3)
    for header in (f"Root={ROOT};Parent={PARENT};Sampled=0", None):
        if header:
            monkeypatch.setenv("_X_AMZN_TRACE_ID", header)
        else:
            monkeypatch.delenv("_X_AMZN_TRACE_ID", raising=False)
        api.post({"instances": IRIS_ROWS})
        with pytest.raises(socket.timeout):
            daemon.recvfrom(65536)


def test_the_daemon_address_forms_lambda_uses():
    assert tracing._daemon_address({"AWS_XRAY_DAEMON_ADDRESS": "169.254.79.129:2000"}) == (
        "169.254.79.129", 2000)
    assert tracing._daemon_address(
        {"AWS_XRAY_DAEMON_ADDRESS": "tcp:127.0.0.1:2000 udp:127.0.0.2:2001"}) == ("127.0.0.2", 2001)
    assert tracing._daemon_address({}) is None
