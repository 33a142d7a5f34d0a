"""X-Ray: each prediction as a subsegment of Lambda's own trace, without the
X-Ray SDK.

With active tracing (the stage's ``xray`` setting) Lambda records the
function's segment itself, with the cold start's initialization (or restore)
as its own subsegment, and runs the X-Ray daemon beside the function
(``AWS_XRAY_DAEMON_ADDRESS``). For each invocation it puts the trace header
in ``_X_AMZN_TRACE_ID`` (``Root=...;Parent=...;Sampled=0|1``). When that
header says the request is sampled, this module sends one subsegment
document, ``POST /model``, covering the handler's work (reading the body,
parsing, the prediction, the answer), to the daemon over UDP: the documented
wire format (a JSON header line, then the document), which is all the SDK
would do here. Without the daemon address (tracing off, or not on Lambda) or
for an unsampled request, it does nothing but two dictionary lookups.
"""
import json
import os
import time

_HEADER = b'{"format": "json", "version": 1}\n'


def _daemon_address(env):
    raw = env.get("AWS_XRAY_DAEMON_ADDRESS")
    if not raw:
        return None
    # "host:port", or "tcp:host:port udp:host:port" (segments go over UDP)
    for part in raw.split():
        if part.startswith("udp:"):
            part = part[4:]
        elif part.startswith("tcp:"):
            continue
        host, _, port = part.rpartition(":")
        if host and port.isdigit():
            return host, int(port)
    return None


#: The daemon's (host, port), read once: Lambda sets it before init when
#: tracing is active, and it does not change for the process.
DAEMON = _daemon_address(os.environ)
_SOCKET = []


def _trace_header(raw):
    fields = dict(p.split("=", 1) for p in raw.split(";") if "=" in p)
    if fields.get("Sampled") != "1" or "Root" not in fields or "Parent" not in fields:
        return None
    return fields["Root"], fields["Parent"]


def record_request(route, status, seconds, model_name, model_version):
    """Send the request's subsegment when X-Ray sampled it; True if sent.
    Never raises: tracing must not cost a request its answer."""
    address = DAEMON
    raw = os.environ.get("_X_AMZN_TRACE_ID")  # set by the runtime per invocation
    if address is None or not raw:
        return False
    header = _trace_header(raw)
    if header is None:
        return False
    end = time.time()
    document = {
        "name": route, "id": os.urandom(8).hex(), "trace_id": header[0],
        "parent_id": header[1], "type": "subsegment",
        "start_time": end - seconds, "end_time": end,
        "annotations": {"model_name": model_name, "model_version": model_version,
                        "status": status},
    }
    if 400 <= status < 500:
        document["error"] = True
    elif status >= 500:
        document["fault"] = True
    try:
        if not _SOCKET:
            # imported here: ``socket`` is nothing the app otherwise loads,
            # and costs milliseconds of every cold start (tracing off too)
            import socket
            _SOCKET.append(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        _SOCKET[0].sendto(_HEADER + json.dumps(document).encode(), address)
    except OSError:
        return False
    return True
