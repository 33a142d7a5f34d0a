"""Soak: many requests, valid and invalid mixed, through one warm handler, as
one long-lived Lambda container sees them.

Checks: no 5xx; one log line per request and no request body in the log;
resident memory (VmRSS) after the run within ``SOAK_RSS_LIMIT_MIB`` of the
level after warm-up; the same probe rows get the same predictions and
probabilities at the start, every tenth of the run, and the end.

``SOAK_REQUESTS`` sets the count (default 5,000, a few seconds);
``python -m tools.harden`` runs 100,000. The figures are written to
``build/harden/soak.json``.
"""
import collections
import contextlib
import gc
import json
import os
import random
import resource
import time
import warnings

import pytest

import app as app_module
from chalicelib.protocols import service
from tests.conftest import BUNDLED_MODEL, FEATURES, IRIS_ROWS
from tests.proxy_event import invoke, json_event, proxy_event

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIGURES = os.path.join(PROJECT_DIR, "build", "harden", "soak.json")
REQUESTS = int(os.environ.get("SOAK_REQUESTS", "5000"))
WARMUP = min(5000, max(500, REQUESTS // 20))
RSS_LIMIT_MIB = float(os.environ.get("SOAK_RSS_LIMIT_MIB", "16"))
SENTINEL = "soak-sentinel-7f3a"  # in request bodies; must never reach the log
CSV = "text/csv"


def rss_mib():
    """Current resident set size of this process, in MiB (Linux VmRSS)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # peak, not current


class LogSink:
    """Stands in for stdout: counts the log lines, keeps none of them."""

    def __init__(self):
        self.lines = 0
        self.leaked = 0
        self.bad = 0

    def write(self, text):
        self.lines += text.count("\n")
        if SENTINEL in text:
            self.leaked += 1
        for line in text.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            if type(record) is not dict or "status" not in record:
                self.bad += 1
        return len(text)

    def flush(self):
        pass


def _fixed_events():
    """The invalid (and a few valid) requests, each built once and replayed:
    ``(weight, event, logged)``. Heavy requests (10,000 rows, 6 MiB bodies)
    are rare, as in real traffic; ``logged`` is False where Chalice's router
    answers (415 for a media type the route does not list) before the view."""
    row = dict(zip(FEATURES, IRIS_ROWS[0]))
    light = [
        proxy_event('{"instances": [[5.1, 3.5, 1.4, "%s"]]}' % SENTINEL),          # 422
        proxy_event('{"instances": [[5.1, 3.5, 1.4'),                              # 400
        proxy_event(b'{"instances": [[5.1, \xff]]}'),                             # 400
        proxy_event("null"),                                                       # 400
        proxy_event(""),                                                           # 400
        proxy_event('{"%s": 1}' % SENTINEL),                                       # 400
        proxy_event('{"instances": [[NaN, 1, 2, 3]]}'),                            # 422
        proxy_event('{"instances": [[1e400, 1, 2, 3]]}'),                          # 422
        proxy_event('{"instances": [[%s, 1, 2, 3]]}' % ("9" * 5000)),              # 400
        proxy_event("[" * 20_000 + "]" * 20_000),                                  # 400
        proxy_event('{"instances": [[1, 2, 3, 4]], "instances": [[1, 2, 3, 4]]}'),  # 400
        json_event({"instances": [[1, 2, 3]]}),                                    # 422
        json_event({"instances": [[True, 2, 3, 4]]}),                              # 422
        json_event({"instances": "abc"}),                                          # 400
        json_event({"dataframe_split": {"columns": "x", "data": []}}),             # 400
        json_event({"dataframe_records": [dict(row, colour=SENTINEL)]}),           # 422
        json_event({"instances": IRIS_ROWS, "probabilities": "yes"}),              # 400
        proxy_event("!!not base64!!", base64_encoded=True),                        # 400
        proxy_event(",".join(FEATURES) + "\n", content_type=CSV),                 # 400
        proxy_event("5.1,3.5,1.4,0.2,9\n", content_type=CSV),                     # 422
        proxy_event('"5.1,3.5\n', content_type=CSV),                              # 400
        json_event({"instances": IRIS_ROWS}, content_type="application/json; charset=latin-1"),
        json_event({"instances": [[1e308, -1e308, 1e308, -1e308]], "probabilities": True}),
        json_event({"instances": IRIS_ROWS}, content_type="Application/JSON; Charset=UTF-8"),
    ]
    heavy = [
        json_event({"instances": [IRIS_ROWS[0]] * 10_001}),                        # 413
        proxy_event('{"instances": [' + " " * (6 * 1024 * 1024) + "]}"),           # 413
        proxy_event(json.dumps({"instances": [row] * 200}).encode()),              # 200, base64
        proxy_event("\r\n".join(["5.1,3.5,1.4,0.2"] * 500), content_type=CSV),   # 200
        json_event({"instances": [IRIS_ROWS[0]] * 10_000}),                        # 200, max rows
    ]
    events = [(1.0, e, True) for e in light] + [(0.04, e, True) for e in heavy]
    # The app's own 415 (every body reaches the view), logged like the rest.
    events.append((0.5, json_event({"instances": IRIS_ROWS}, content_type="application/xml"),
                   True))                                                          # 415
    return events


def _fresh_event(rng):
    """A valid request with new values, in a random format."""
    n = rng.choice((1, 1, 1, 1, 1, 1, 2, 3, 5, 20))
    rows = [[round(rng.uniform(0, 8), 2) for _ in FEATURES] for _ in range(n)]
    kind = rng.randrange(5)
    if kind == 0:
        return json_event({"instances": rows, "probabilities": rng.random() < 0.5})
    if kind == 1:
        return json_event({"instances": [dict(zip(FEATURES, r)) for r in rows]})
    if kind == 2:
        return json_event({"dataframe_split": {"columns": FEATURES, "data": rows}})
    if kind == 3:
        return json_event({"dataframe_records": [dict(zip(FEATURES, r)) for r in rows]})
    text = "\n".join(",".join(map(str, r)) for r in rows)
    return proxy_event(text, content_type=CSV, query={"probabilities": "true"})


def _probe_event():
    rng = random.Random(1)
    rows = [[round(rng.uniform(0, 8), 3) for _ in FEATURES] for _ in range(150)]
    return json_event({"instances": rows + IRIS_ROWS, "probabilities": True})


def run_soak(n_requests, seed=20261125):
    """Send ``n_requests`` through ``app.app``; return the figures."""
    saved = app_module.SERVICE
    app_module.SERVICE = service.from_environment(
        {"MODEL_DIR": BUNDLED_MODEL, "LOG_REQUESTS": "true"})
    rng = random.Random(seed)
    fixed = _fixed_events()
    cum_weights = []
    total = 0.0
    for weight, _, _ in fixed:
        total += weight
        cum_weights.append(total)
    not_logged = 0
    probe = _probe_event()
    sink = LogSink()
    statuses = collections.Counter()
    probes = []
    rss = {}
    rss_trend = []
    checkpoints = {max(1, n_requests * k // 10) for k in range(1, 11)}
    started = time.perf_counter()
    try:
        with contextlib.redirect_stdout(sink), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)

            def probe_now():
                status, _, text = invoke(app_module.app, probe)
                statuses[status] += 1
                probes.append((status, text))

            probe_now()
            sent = 1
            # every kind of request once, heavy ones included, so that the
            # baseline is taken after the allocator has seen the largest
            for _, event, logged in fixed:
                status, _, _ = invoke(app_module.app, event)
                statuses[status] += 1
                not_logged += not logged
                sent += 1
            for i in range(sent, n_requests - 1):
                if i in checkpoints:
                    probe_now()
                    gc.collect()
                    rss_trend.append(round(rss_mib(), 1))
                else:
                    if rng.random() < 0.5:
                        _, event, logged = rng.choices(fixed, cum_weights=cum_weights)[0]
                        not_logged += not logged
                    else:
                        event = _fresh_event(rng)
                    status, _, _ = invoke(app_module.app, event)
                    statuses[status] += 1
                sent += 1
                if sent == WARMUP:
                    gc.collect()
                    rss["after_warmup"] = rss_mib()
            probe_now()
            sent += 1
            gc.collect()
            rss["end"] = rss_mib()
    finally:
        app_module.SERVICE = saved
    elapsed = time.perf_counter() - started
    first = probes[0]
    figures = {
        "requests": sent,
        "seconds": round(elapsed, 1),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "server_errors": sum(v for k, v in statuses.items() if k >= 500),
        "log_lines": sink.lines,
        "answered_by_chalice_router": not_logged,
        "log_lines_with_a_body": sink.leaked,
        "log_lines_not_json": sink.bad,
        "rss_after_warmup_mib": round(rss["after_warmup"], 1),
        "rss_end_mib": round(rss["end"], 1),
        "rss_growth_mib": round(rss["end"] - rss["after_warmup"], 2),
        "rss_limit_mib": RSS_LIMIT_MIB,
        "rss_at_each_tenth_mib": rss_trend,
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "probes": len(probes),
        "predictions_unchanged": first[0] == 200 and all(p == first for p in probes),
    }
    os.makedirs(os.path.dirname(FIGURES), exist_ok=True)
    with open(FIGURES, "w") as f:
        json.dump(figures, f, indent=1)
    return figures


@pytest.mark.skipif(REQUESTS < 1000, reason="SOAK_REQUESTS below 1000 measures nothing")
def test_soak_one_warm_handler():
    figures = run_soak(REQUESTS)
    assert figures["requests"] == REQUESTS
    assert figures["server_errors"] == 0, figures["statuses"]
    assert figures["predictions_unchanged"], "the probe's answer changed during the soak"
    # One log line per request: every request reaches the view.
    assert figures["log_lines"] == REQUESTS - figures["answered_by_chalice_router"]
    assert figures["log_lines_with_a_body"] == 0
    assert figures["log_lines_not_json"] == 0
    assert figures["rss_growth_mib"] <= RSS_LIMIT_MIB, figures
    for status in ("200", "400", "413", "415", "422"):
        assert figures["statuses"].get(status), "the mix must include %s: %s" % (
            status, figures["statuses"])
