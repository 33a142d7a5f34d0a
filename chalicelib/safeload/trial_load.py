"""A model's first load, in a forked child under limits the kernel enforces.

The load budget of :mod:`chalicelib.safeload.load_budget` is checked between
pickle opcodes and reads: C code that one opcode starts (a quadratic
big-integer conversion, a huge allocation in a constructor) and everything
after unpickling (native-state validation, the audit, building an ONNX
Runtime session) runs past it. Only the kernel can stop C code, and only in
another process, so the whole load is first *tried* in a child made by
``os.fork()`` (cheap: the scientific stack is already imported and its
pages are shared copy-on-write), under

* ``RLIMIT_AS``: the child's address space at the fork plus the load's byte
  budget (``MODEL_LOAD_MAX_MB``, or by artifact size) and
  :data:`HEADROOM_BYTES` for the modules a load imports, and in a Lambda
  never more than its memory (``AWS_LAMBDA_FUNCTION_MEMORY_SIZE``) less the
  parent's resident set and :data:`RESERVE_BYTES`; an allocation past it
  fails as ``MemoryError`` in the child;
* ``RLIMIT_CPU``: the time budget (``MODEL_LOAD_TIMEOUT_S``) plus a second;
* a wall-clock deadline kept by the parent, which ``SIGKILL``s the child at
  ``MODEL_LOAD_TIMEOUT_S`` (a child asleep or blocked uses no CPU).

The child reports over a pipe (one JSON line: loaded, or the refusal with
its reason) and ends with ``os._exit`` (no atexit handler, no flush of the
parent's buffers, no logging: the parent logs once). A child that dies
instead (a segfault in native code, a limit's signal) is a refusal naming
the signal. Only after the child loaded the same files does the parent load
them itself, with the in-process budget still on; no signal handler, alarm
or limit is ever set in the parent.

Where ``os.fork`` does not exist, or ``MODEL_LOAD_ISOLATED=false``, the load
runs in process under the opcode-level budget only.
"""
import contextlib
import json
import logging
import math
import os
import resource
import select
import signal
import time
import warnings

from chalicelib.http import config
from chalicelib.http.errors import ModelLoadError
from chalicelib.safeload.load_budget import MAX_MB_ENV, TIMEOUT_ENV, Budget, vm_size

log = logging.getLogger(__name__)

# Address space a legitimate load needs beyond its byte budget: extension
# modules it imports (mapped, mostly never resident) and allocator slack.
HEADROOM_BYTES = 64 * 1024 * 1024
# What a Lambda keeps free beside the parent and the child's new mappings:
# pages the child copies on write, the runtime's own.
RESERVE_BYTES = 128 * 1024 * 1024
_MIN_CHILD_BYTES = 64 * 1024 * 1024
LAMBDA_MEMORY_ENV = "AWS_LAMBDA_FUNCTION_MEMORY_SIZE"
_MAX_REPORT_BYTES = 16 * 1024


def enabled():
    return config.model_setting(config.MODEL_LOAD_ISOLATED) and hasattr(os, "fork")


def trial(load, artifact_path):
    """Run ``load()`` in a forked child under hard limits sized for the file
    ``artifact_path``; return if it loaded, raise ModelLoadError saying why
    not. The child's result is discarded: the caller then loads for real."""
    budget = Budget.for_artifact(os.path.getsize(artifact_path))
    limit_bytes = child_limit(budget.max_bytes)
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        # A multi-threaded parent (chalice local's server, ONNX Runtime's
        # deadline timers) makes 3.12 warn; the child only loads and exits.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:
        os.close(read_end)
        _child(load, write_end, limit_bytes, budget.timeout_s)
    os.close(write_end)
    try:
        report, timed_out = _read_report(read_end, budget.timeout_s)
    finally:
        os.close(read_end)
    if timed_out:
        _kill(pid)
    status = _reap(pid)
    if timed_out:
        raise ModelLoadError("artifact load exceeded its time budget of %g s (%s); the trial "
                             "load in a child process was stopped" % (budget.timeout_s,
                                                                      TIMEOUT_ENV))
    if report is not None and report.get("loaded"):
        return
    if report is not None and "message" in report:
        raise ModelLoadError(report["message"], public=report.get("public"),
                             retryable=bool(report.get("retryable")))
    raise _death(status, limit_bytes, budget.timeout_s)


def child_limit(budget_bytes, env=None):
    """Bytes of new address space the child may map: the load's budget and
    headroom, within what the Lambda's memory leaves beside the parent."""
    limit = budget_bytes + HEADROOM_BYTES
    raw = (os.environ if env is None else env).get(LAMBDA_MEMORY_ENV, "")
    if raw.strip().isdigit():
        room = (int(raw) << 20) - (resident_bytes() or 0) - RESERVE_BYTES
        limit = min(limit, max(room, _MIN_CHILD_BYTES))
    return limit


def resident_bytes():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _child(load, write_end, limit_bytes, timeout_s):
    """Never returns: the child must not run on into the parent's code."""
    code = 1
    try:
        logging.disable(logging.CRITICAL)
        import faulthandler
        faulthandler.disable()  # a crash here is the parent's report, not a dump in its log
        _limit_child(limit_bytes, timeout_s)
        try:
            load()
            report = {"loaded": True}
        except ModelLoadError as exc:
            report = {"message": str(exc), "public": exc.public, "retryable": exc.retryable}
        except MemoryError:
            report = {"message": "artifact does not load within its memory budget of %d MiB "
                                 "(MemoryError; %s)" % (limit_bytes >> 20, MAX_MB_ENV)}
        except Exception as exc:  # an artifact can raise anything
            report = {"message": "artifact does not load: %s: %s"
                                 % (type(exc).__name__, str(exc)[:300]),
                      "public": "artifact does not load (%s)" % type(exc).__name__}
        data = json.dumps(report).encode()[:_MAX_REPORT_BYTES]
        os.write(write_end, data + b"\n")
        code = 0
    except BaseException:  # noqa: BLE001  (nothing may escape into the parent's stack)
        pass
    finally:
        os._exit(code)


_in_child = False


@contextlib.contextmanager
def importing():
    """In the trial child, lift the address-space limit while an allowed
    module is imported: mapping a library (xgboost's is ~200 MiB) is not the
    artifact's doing, and the parent maps it too. The soft limit comes back
    before anything the artifact chose runs; elsewhere a no-op."""
    if not _in_child:
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (hard, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _limit_child(limit_bytes, timeout_s):
    global _in_child
    _in_child = True
    vm = vm_size()
    if vm is not None:
        _lower(resource.RLIMIT_AS, vm + limit_bytes, keep_hard=True)
    cpu = int(math.ceil(timeout_s)) + 1
    _lower(resource.RLIMIT_CPU, cpu, cpu + 1)
    _lower(resource.RLIMIT_CORE, 0)


def _lower(which, soft, hard=None, keep_hard=False):
    old_soft, old_hard = resource.getrlimit(which)
    hard = old_hard if keep_hard else soft if hard is None else hard
    if old_hard != resource.RLIM_INFINITY:
        hard = min(hard, old_hard)
        soft = min(soft, hard)
    resource.setrlimit(which, (soft, hard))


def _read_report(fd, timeout_s):
    """``(report or None, timed_out)``: the child's JSON line, read until
    end of file or the wall-clock deadline."""
    deadline = time.monotonic() + timeout_s
    chunks, size = [], 0
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLHUP)
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None, True
        if not poller.poll(max(1, int(left * 1000))):
            continue
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        if size < _MAX_REPORT_BYTES:
            chunks.append(chunk)
            size += len(chunk)
    try:
        return json.loads(b"".join(chunks).decode()), False
    except ValueError:
        return None, False


def _kill(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _reap(pid):
    """The child's wait status, or None when it cannot be known (SIGCHLD
    ignored by the embedding process reaps children itself)."""
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            return status
        except InterruptedError:
            continue
        except ChildProcessError:
            return None


def _death(status, limit_bytes, timeout_s):
    if status is not None and os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig == signal.SIGXCPU:
            return ModelLoadError("artifact load exceeded its CPU budget of %d s (%s)"
                                  % (math.ceil(timeout_s) + 1, TIMEOUT_ENV))
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else sig
        if sig == signal.SIGKILL:
            return ModelLoadError(
                "the trial load of the artifact was killed (SIGKILL: out of memory, or past "
                "its CPU budget of %d s)" % (math.ceil(timeout_s) + 1))
        return ModelLoadError("the artifact crashed the process that tried to load it "
                              "(signal %s)" % name)
    code = os.WEXITSTATUS(status) if status is not None and os.WIFEXITED(status) else "unknown"
    return ModelLoadError("the trial load of the artifact ended without a report (exit status "
                          "%s, within %d MiB and %g s)" % (code, limit_bytes >> 20, timeout_s))
